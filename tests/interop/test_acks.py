"""ACK / NACK (webstomp.md 2.9; RabbitMQ main system_SUITE).

Message ids are ``<consumer tag>@@<session>@@<delivery tag>``; 1.2 acks with ``id``
(the MESSAGE's ``ack`` header), 1.0/1.1 with ``message-id``. ``client`` acks are
cumulative across the session's subscriptions on both targets.

Where 3.10.8 lets the broker judge an ack (an unknown, repeated or ``auto`` delivery
closes the AMQP channel and the session dies without an ERROR; a forged id settles
whatever delivery tag it names) the gateway follows RabbitMQ main: ERROR "Message
not found" and the session goes on. Those tests end in ``_in_gateway`` and assert
both behaviours.
"""

from __future__ import annotations

import pytest

from tests.interop.helpers import assert_error, assert_headers, assert_receipt
from tests.interop.semantics import (
    ack_header,
    close_session,
    messages,
    publish,
    ready_after_consumers_left,
)

pytestmark = pytest.mark.interop

INVALID_ID = b'"ACK" must include a valid "id" header\n'


async def queue(amqp, unique, suffix=""):
    name = f"{unique}{suffix}"
    await amqp.declare_queue(name, durable=False, auto_delete=False)
    return name


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
@pytest.mark.parametrize("mode", ["auto", "client", "client-individual"])
async def test_message_id_and_ack_header(target, stomp, amqp, unique, version, mode):
    q = await queue(amqp, unique)
    ws = await stomp(target.url, version=version)
    await ws.subscribe(f"/amq/queue/{q}", id="s", extra={"ack": mode})
    await publish(await stomp(target.url), f"/amq/queue/{q}", "m")
    [msg] = await messages(ws, 1)
    message_id = f"T_s@@{ws.session}@@1"
    # The ack header is there only for STOMP 1.2 client modes, with the message-id.
    extra = [("ack", message_id)] if version == "1.2" and mode != "auto" else []
    assert_headers(
        msg,
        [
            ("subscription", "s"),
            ("destination", f"/queue/{q}"),
            ("message-id", message_id),
            ("redelivered", "false"),
            *extra,
            ("receipt", "p-last"),  # the SEND's headers travel along
            ("content-length", "1"),
        ],
    )
    if mode != "auto":
        await ws.send_frame("ACK", {**ack_header(msg, version), "receipt": "a"})
        assert_receipt(await ws.recv_frame(), "a")
    await close_session(ws)
    assert await ready_after_consumers_left(amqp, q) == 0


async def test_ack_header_missing_for_the_version(target, stomp, amqp, unique):
    # 1.2 wants "id"; "message-id" alone is not enough (TestAck12AckHeader).
    q = await queue(amqp, unique)
    ws = await stomp(target.url)
    await ws.subscribe(f"/amq/queue/{q}", id="s", extra={"ack": "client"})
    await publish(await stomp(target.url), f"/amq/queue/{q}", "m")
    [msg] = await messages(ws, 1)
    await ws.send_frame("ACK", {"message-id": msg.header("message-id"), "receipt": "a"})
    assert_error(await ws.recv_frame(), "Missing header", b'"ACK" must include the "id" header\n')
    old = await stomp(target.url, version="1.1")
    await old.send_frame("NACK", {"id": msg.header("ack")})
    assert_error(
        await old.recv_frame(), "Missing header", b'"NACK" must include the "message-id" header\n'
    )


@pytest.mark.parametrize(
    ("value", "message", "body"),
    [
        ("foo", "Invalid header", INVALID_ID),
        ("a@@b@@1@@2", "Invalid header", INVALID_ID),
        ("a@@b@@c", "Processing error", b"Processing error"),
    ],
)
async def test_malformed_ack_id(target, stomp, value, message, body):
    ws = await stomp(target.url)
    await ws.send_frame("ACK", {"id": value, "receipt": "a"})
    assert_error(await ws.recv_frame(), message, body)
    await ws.expect_no_frame(0.1)
    assert await ws.is_open()


async def test_client_ack_is_cumulative_across_subscriptions(target, stomp, amqp, unique):
    # multiack_prune_is_connection_wide: ACK of a "client" delivery also settles older
    # deliveries of other subscriptions, client-individual ones included.
    qa, qb = await queue(amqp, unique, "-a"), await queue(amqp, unique, "-b")
    ws = await stomp(target.url)
    pub = await stomp(target.url)
    await ws.subscribe(f"/amq/queue/{qb}", id="b", extra={"ack": "client-individual"})
    await ws.subscribe(f"/amq/queue/{qa}", id="a", extra={"ack": "client"})
    await publish(pub, f"/amq/queue/{qb}", "one")
    [one] = await messages(ws, 1)
    await publish(pub, f"/amq/queue/{qa}", "two", "three")
    two, three = await messages(ws, 2)
    assert [one.body, two.body, three.body] == [b"one", b"two", b"three"]
    await ws.send_frame("ACK", {**ack_header(two), "receipt": "r"})
    assert_receipt(await ws.recv_frame(), "r")
    await close_session(ws)
    assert await ready_after_consumers_left(amqp, qb) == 0  # settled by the ACK of "two"
    assert await ready_after_consumers_left(amqp, qa) == 1  # "three" came back


async def test_client_individual_ack_settles_one(target, stomp, amqp, unique):
    q = await queue(amqp, unique)
    ws = await stomp(target.url)
    await ws.subscribe(f"/amq/queue/{q}", id="s", extra={"ack": "client-individual"})
    await publish(await stomp(target.url), f"/amq/queue/{q}", "one", "two")
    one, two = await messages(ws, 2)
    assert [one.body, two.body] == [b"one", b"two"]
    await ws.send_frame("ACK", {**ack_header(two), "receipt": "r"})
    assert_receipt(await ws.recv_frame(), "r")
    await close_session(ws)
    # "one" comes back, redelivered.
    again = await stomp(target.url)
    await again.subscribe(f"/amq/queue/{q}", id="s", extra={"ack": "client"})
    [msg] = await messages(again, 1)
    assert (msg.body, msg.header("redelivered")) == (b"one", "true")


async def test_unacked_deliveries_come_back_redelivered(target, stomp, amqp, unique):
    q = await queue(amqp, unique)
    ws = await stomp(target.url)
    await ws.subscribe(f"/amq/queue/{q}", id="s", extra={"ack": "client", "prefetch-count": "10"})
    await publish(await stomp(target.url), f"/amq/queue/{q}", "one", "two")
    first = await messages(ws, 2)
    assert [m.header("redelivered") for m in first] == ["false", "false"]
    await ws.close()  # the client goes away without DISCONNECT
    again = await stomp(target.url)
    await again.subscribe(f"/amq/queue/{q}", id="s", extra={"ack": "client"})
    second = await messages(again, 2)
    assert [(m.body, m.header("redelivered")) for m in second] == [
        (b"one", "true"),
        (b"two", "true"),
    ]
    assert second[0].header("message-id") == f"T_s@@{again.session}@@1"


@pytest.mark.parametrize(
    ("headers", "comes_back"),
    [({}, True), ({"requeue": "true"}, True), ({"requeue": "False"}, False)],
    ids=["default", "requeue-true", "requeue-False"],
)
async def test_nack(target, stomp, amqp, unique, headers, comes_back):
    q = await queue(amqp, unique)
    ws = await stomp(target.url)
    await ws.subscribe(f"/amq/queue/{q}", id="s", extra={"ack": "client-individual"})
    await publish(await stomp(target.url), f"/amq/queue/{q}", "m")
    [msg] = await messages(ws, 1)
    await ws.send_frame("NACK", {**ack_header(msg), **headers, "receipt": "n"})
    assert_receipt(await ws.recv_frame(), "n")
    if comes_back:
        [again] = await messages(ws, 1)
        assert (again.body, again.header("redelivered")) == (b"m", "true")
        assert again.header("message-id") == f"T_s@@{ws.session}@@2"
    else:
        await ws.expect_no_frame(0.3)
        await close_session(ws)
        assert await ready_after_consumers_left(amqp, q) == 0


async def test_nack_in_client_mode_is_cumulative(target, stomp, amqp, unique):
    # test_nack_multi: NACK of the 2nd message in client mode requeues both.
    q = await queue(amqp, unique)
    ws = await stomp(target.url)
    await ws.subscribe(f"/amq/queue/{q}", id="s", extra={"ack": "client"})
    await publish(await stomp(target.url), f"/amq/queue/{q}", "one", "two")
    _, two = await messages(ws, 2)
    await ws.send_frame("NACK", {**ack_header(two), "requeue": "false", "receipt": "n"})
    assert_receipt(await ws.recv_frame(), "n")
    await close_session(ws)
    assert await ready_after_consumers_left(amqp, q) == 0


async def test_repeated_ack__message_not_found_in_gateway(target, stomp, amqp, unique):
    q = await queue(amqp, unique)
    ws = await stomp(target.url)
    await ws.subscribe(f"/amq/queue/{q}", id="s", extra={"ack": "client-individual"})
    await publish(await stomp(target.url), f"/amq/queue/{q}", "m")
    [msg] = await messages(ws, 1)
    await ws.send_frame("ACK", {**ack_header(msg), "receipt": "a1"})
    await ws.send_frame("ACK", {**ack_header(msg), "receipt": "a2"})
    assert_receipt(await ws.recv_frame(), "a1")
    if target.is_plugin:
        # 3.10.8: basic.ack of an unknown tag closes the channel: RECEIPT, then the
        # session dies without an ERROR.
        assert_receipt(await ws.recv_frame(), "a2")
        code, _ = await ws.recv_close()
        assert (code, ws.drained_frames) == (1000, [])
    else:
        assert_error(await ws.recv_frame(), "Message not found", b"unknown delivery tag 1\n")
        await ws.send(f"/topic/{unique}.alive", "still here", receipt="r")


async def test_ack_of_auto_delivery__message_not_found_in_gateway(target, stomp, amqp, unique):
    # ack_auto_delivery_errors (main)
    q = await queue(amqp, unique)
    ws = await stomp(target.url)
    await ws.subscribe(f"/amq/queue/{q}", id="s")
    await publish(await stomp(target.url), f"/amq/queue/{q}", "m")
    [msg] = await messages(ws, 1)
    await ws.send_frame("ACK", {"id": msg.header("message-id"), "receipt": "a"})
    if target.is_plugin:
        assert_receipt(await ws.recv_frame(), "a")
        code, _ = await ws.recv_close()
        assert (code, ws.drained_frames) == (1000, [])
    else:
        assert_error(await ws.recv_frame(), "Message not found", b"unknown delivery tag 1\n")
        await ws.subscribe(f"/amq/queue/{q}", id="roundtrip")


async def test_ack_unknown_subscription__message_not_found_in_gateway(target, stomp):
    ws = await stomp(target.url)
    value = f"T_nosub@@{ws.session}@@1"
    await ws.send_frame("ACK", {"id": value, "receipt": "a"})
    if target.is_plugin:
        body = f'Message with id "{value}" has no subscription'.encode()
        assert_error(await ws.recv_frame(), "Subscription not found", body)
    else:
        assert_error(await ws.recv_frame(), "Message not found", b"unknown delivery tag 1\n")
    assert await ws.is_open()


async def test_ack_after_unsubscribe__settles_in_gateway(target, stomp, amqp, unique):
    # unsubscribe_ack (main): the delivery outlives its subscription and can be acked.
    q = await queue(amqp, unique)
    ws = await stomp(target.url)
    await ws.subscribe(f"/amq/queue/{q}", id="s", extra={"ack": "client", "prefetch-count": "1"})
    await publish(await stomp(target.url), f"/amq/queue/{q}", "hello", "goodbye")
    [msg] = await messages(ws, 1)
    await ws.send_frame("UNSUBSCRIBE", {"id": "s", "receipt": "u"})
    assert_receipt(await ws.recv_frame(), "u")
    await ws.send_frame("ACK", {**ack_header(msg), "receipt": "a"})
    if target.is_plugin:
        body = f'Message with id "{msg.header("ack")}" has no subscription'.encode()
        assert_error(await ws.recv_frame(), "Subscription not found", body)
    else:
        assert_receipt(await ws.recv_frame(), "a")
    await close_session(ws)
    assert await ready_after_consumers_left(amqp, q) == (2 if target.is_plugin else 1)


async def test_forged_ack_across_subscriptions__rejected_in_gateway(target, stomp, amqp, unique):
    # reused_subscription_id_keeps_ack_mode: an id pairing subscription a's tag with
    # subscription b's delivery. 3.10.8 settles b's delivery; main refuses.
    qa, qb = await queue(amqp, unique, "-a"), await queue(amqp, unique, "-b")
    ws = await stomp(target.url)
    pub = await stomp(target.url)
    await ws.subscribe(f"/amq/queue/{qb}", id="b", extra={"ack": "client-individual"})
    await ws.subscribe(f"/amq/queue/{qa}", id="a", extra={"ack": "client-individual"})
    await publish(pub, f"/amq/queue/{qb}", "one")
    [one] = await messages(ws, 1)
    forged = f"T_a@@{ws.session}@@1"
    assert one.header("ack") == f"T_b@@{ws.session}@@1"
    await ws.send_frame("ACK", {"id": forged, "receipt": "f"})
    if target.is_plugin:
        assert_receipt(await ws.recv_frame(), "f")
    else:
        assert_error(await ws.recv_frame(), "Message not found", b"unknown delivery tag 1\n")
    await close_session(ws)
    assert await ready_after_consumers_left(amqp, qb) == (0 if target.is_plugin else 1)


async def test_ack_with_another_session_id__rejected_in_gateway(target, stomp, amqp, unique):
    # publisher_cannot_forge_ack_headers (main): the session id must be this session's.
    q = await queue(amqp, unique)
    ws = await stomp(target.url)
    await ws.subscribe(f"/amq/queue/{q}", id="s", extra={"ack": "client-individual"})
    await publish(await stomp(target.url), f"/amq/queue/{q}", "m")
    [msg] = await messages(ws, 1)
    await ws.send_frame("ACK", {"id": "T_s@@wrong-session@@1", "receipt": "f"})
    if target.is_plugin:
        assert_receipt(await ws.recv_frame(), "f")
    else:
        assert_error(await ws.recv_frame(), "Invalid header", INVALID_ID)
        await ws.send_frame("ACK", {**ack_header(msg), "receipt": "a"})  # the real one works
        assert_receipt(await ws.recv_frame(), "a")
    await close_session(ws)
    assert await ready_after_consumers_left(amqp, q) == 0
