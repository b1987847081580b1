"""Moving clients from the plugin to the gateway: queues the plugin created are found
again, unchanged, by the gateway (the durable subscription name formula of 3.x/4.3,
and queue arguments declared with the plugin's AMQP types)."""

from __future__ import annotations

import pytest

from tests.interop.helpers import assert_receipt, durable_subscription_queue
from tests.interop.semantics import ack_header, close_session, messages, publish

pytestmark = pytest.mark.interop


async def test_durable_topic_subscription_survives_the_move(
    plugin_url, gateway_url, stomp, amqp, management, unique
):
    key, sub_id = f"{unique}.orders", "orders-of-alice"
    name = amqp.track_queue(durable_subscription_queue(key, sub_id))
    headers = {"durable": "true", "auto-delete": "false", "ack": "client"}
    before = await stomp(plugin_url)
    await before.subscribe(f"/topic/{key}", id=sub_id, extra=headers)
    await close_session(before)
    # Messages published while nobody is subscribed wait in the plugin's queue.
    await publish(await stomp(plugin_url), f"/topic/{key}", "one", "two")

    after = await stomp(gateway_url)
    await after.subscribe(f"/topic/{key}", id=sub_id, extra=headers)
    one, two = await messages(after, 2)
    assert [one.body, two.body] == [b"one", b"two"]
    assert one.header("redelivered") == "false"
    await after.send_frame("ACK", {**ack_header(two), "receipt": "a"})
    assert_receipt(await after.recv_frame(), "a")
    [consumer] = await management.wait_consumers(name, count=1)
    assert consumer["consumer_tag"] == f"T_{sub_id}"
    info = await management.queue(name)
    assert info is not None
    assert (info["durable"], info["auto_delete"], info["exclusive"]) == (True, False, False)
    # and the gateway's durable UNSUBSCRIBE removes it, as the plugin's does
    await after.send_frame("UNSUBSCRIBE", {"id": sub_id, "durable": "true", "receipt": "u"})
    assert_receipt(await after.recv_frame(), "u")
    await amqp.wait_queue(name, exists=False)


async def test_queue_with_arguments_survives_the_move(plugin_url, gateway_url, stomp, amqp, unique):
    # Integer x-* arguments are AMQP longs on both sides, so the gateway's declare is
    # equivalent and does not fail with PRECONDITION_FAILED.
    amqp.track_queue(unique)
    args = {"x-max-length": "5", "x-message-ttl": "60000", "x-queue-type": "classic"}
    before = await stomp(plugin_url)
    await before.send(f"/queue/{unique}", "kept", extra=args, receipt="r")
    after = await stomp(gateway_url)
    await after.subscribe(f"/queue/{unique}", id="s", extra=args)
    [msg] = await messages(after, 1)
    assert msg.body == b"kept"
    await after.send(f"/queue/{unique}", "again", extra=args)
    [again] = await messages(after, 1)
    assert again.body == b"again"
