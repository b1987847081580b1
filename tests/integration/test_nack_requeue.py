"""``default_nack_requeue`` (``stomp.default_nack_requeue``): what a NACK without a
``requeue`` header does, against the real broker."""

from __future__ import annotations

from tests.interop.helpers import assert_receipt
from tests.interop.semantics import ack_header, close_session, messages, publish
from tests.interop.semantics import ready_after_consumers_left as ready


async def test_default_nack_requeue_false_discards(gateway_factory, stomp, amqp, unique):
    gateway = await gateway_factory(default_nack_requeue=False)
    await amqp.declare_queue(unique, durable=False)
    ws = await stomp(gateway.url)
    await ws.subscribe(f"/amq/queue/{unique}", id="s", extra={"ack": "client-individual"})
    await publish(await stomp(gateway.url), f"/amq/queue/{unique}", "dropped", "requeued")
    dropped, requeued = await messages(ws, 2)
    await ws.send_frame("NACK", {**ack_header(dropped), "receipt": "n1"})
    assert_receipt(await ws.recv_frame(), "n1")
    await ws.expect_no_frame(0.3)  # not redelivered
    await ws.send_frame("NACK", {**ack_header(requeued), "requeue": "true", "receipt": "n2"})
    assert_receipt(await ws.recv_frame(), "n2")
    [again] = await messages(ws, 1)
    assert (again.body, again.header("redelivered")) == (b"requeued", "true")
    await close_session(ws)
    assert await ready(amqp, unique) == 1
