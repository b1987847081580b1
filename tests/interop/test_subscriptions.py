"""Subscriptions and the queues behind them (webstomp.md 2.8, 2.10, 3), checked through
the management API where AMQP cannot see (consumer prefetch, queue type, arguments).

Where the gateway follows RabbitMQ main instead of 3.10.8 (prefetch-count no longer
leaks into later subscriptions; a durable UNSUBSCRIBE deletes the queue the
subscription used, not one the frame names; the ERROR before a fatal close) the
test name ends in ``_in_gateway`` and both behaviours are asserted.
"""

from __future__ import annotations

import pytest

from tests.interop.helpers import assert_error, assert_headers, assert_receipt
from tests.interop.semantics import ack_header, close_session, messages, publish

pytestmark = pytest.mark.interop


def shape(info):
    assert info is not None, "queue not found"
    return {k: info[k] for k in ("durable", "auto_delete", "exclusive", "type", "arguments")}


async def test_prefetch_count_per_subscription__no_leak_in_gateway(
    target, stomp, amqp, management, unique
):
    # 3.10.8 issues basic.qos(prefetch) before the consume, and AMQP qos is the
    # channel default for later consumers: sub b inherits sub a's 7. RabbitMQ main
    # gives each subscription its own prefetch (default 0 = unlimited).
    qa, qb, qc = (f"{unique}-{x}" for x in "abc")
    for q in (qa, qb, qc):
        await amqp.declare_queue(q, durable=False)
    ws = await stomp(target.url)
    await ws.subscribe(f"/amq/queue/{qa}", id="a", extra={"ack": "client", "prefetch-count": "7"})
    await ws.subscribe(f"/amq/queue/{qb}", id="b", extra={"ack": "client"})
    await ws.subscribe(f"/amq/queue/{qc}", id="c", extra={"ack": "client", "prefetch-count": "0"})
    found = await management.wait_consumers(qa, qb, qc, count=3)
    inherited = 7 if target.is_plugin else 0
    assert [(c["queue"], c["consumer_tag"], c["prefetch_count"]) for c in found] == [
        (qa, "T_a", 7),
        (qb, "T_b", inherited),
        (qc, "T_c", 0),
    ]
    assert all(c["ack_required"] for c in found)


async def test_prefetch_count_limits_unacked_deliveries(target, stomp, unique):
    # test_topic_prefetch: 10 sent, 5 delivered until something is acked.
    dest = f"/topic/{unique}"
    ws = await stomp(target.url)
    await ws.subscribe(dest, id="s", extra={"ack": "client", "prefetch-count": "5"})
    await publish(await stomp(target.url), dest, *(f"m{i}" for i in range(10)))
    first = await messages(ws, 5)
    await ws.expect_no_frame(0.3)
    await ws.send_frame("ACK", ack_header(first[-1]))  # cumulative: frees all 5
    assert [m.body for m in await messages(ws, 5)] == [f"m{i}".encode() for i in range(5, 10)]


async def test_subscribe_and_unsubscribe_without_id(target, stomp, amqp, unique):
    # No id: tag Q_<destination>; UNSUBSCRIBE by destination; a second id-less
    # SUBSCRIBE to the same destination is a duplicate.
    amqp.track_queue(unique)
    dest = f"/queue/{unique}"
    ws = await stomp(target.url)
    await ws.subscribe(dest, id=None)
    await ws.send_frame("UNSUBSCRIBE", {"destination": dest, "receipt": "u"})
    assert_receipt(await ws.recv_frame(), "u")
    await publish(await stomp(target.url), dest, "after")
    await ws.expect_no_frame(0.3)
    await ws.subscribe(dest, id=None)
    [msg] = await messages(ws, 1)
    assert msg.header("message-id") == f"Q_{dest}@@{ws.session}@@1"
    await ws.send_frame("SUBSCRIBE", {"destination": dest})
    code, _ = await ws.recv_close()
    assert code == 1000
    if target.is_plugin:
        assert ws.drained_frames == []  # 3.10.8 loses the ERROR
    else:
        [err] = ws.drained_frames
        assert_error(
            err,
            "Duplicated subscription identifier",
            f"A subscription identified by 'Q_{dest}' already exists.".encode(),
        )


async def test_queue_arguments_from_subscribe_and_send(target, stomp, management, amqp, unique):
    # build_arguments/1: these x-* headers become queue.declare arguments (integers as
    # AMQP long); others (x-overflow, x-foo) are ignored.
    headers = {
        "x-message-ttl": "60000",
        "x-max-length": "100",
        "x-dead-letter-exchange": "amq.fanout",
        "x-dead-letter-routing-key": "dead",
        "x-max-priority": "5",
        "x-expires": "600000",
        "x-overflow": "reject-publish",
        "x-foo": "bar",
    }
    expected = {
        "x-message-ttl": 60000,
        "x-max-length": 100,
        "x-dead-letter-exchange": "amq.fanout",
        "x-dead-letter-routing-key": "dead",
        "x-max-priority": 5,
        "x-expires": 600000,
    }
    by_sub, by_send = amqp.track_queue(f"{unique}-sub"), amqp.track_queue(f"{unique}-send")
    ws = await stomp(target.url)
    await ws.subscribe(f"/queue/{by_sub}", id="s", extra=headers)
    await ws.send(f"/queue/{by_send}", "x", extra=headers, receipt="r")
    for name in (by_sub, by_send):
        assert shape(await management.queue(name)) == {
            "durable": True,
            "auto_delete": False,
            "exclusive": False,
            "type": "classic",
            "arguments": expected,
        }


async def test_quorum_queue_from_headers(target, stomp, management, amqp, unique):
    # x_queue_type_quorum.py: a durable /topic subscription on a quorum queue.
    name = amqp.track_queue(f"{unique}-qq")
    ws = await stomp(target.url)
    headers = {
        "x-queue-type": "quorum",
        "x-queue-name": name,
        "durable": "true",
        "auto-delete": "false",
        "ack": "client",
    }
    await ws.subscribe(f"/topic/{unique}", id="q", extra=headers)
    assert shape(await management.queue(name)) == {
        "durable": True,
        "auto_delete": False,
        "exclusive": False,
        "type": "quorum",
        "arguments": {"x-queue-type": "quorum"},
    }
    await publish(await stomp(target.url), f"/topic/{unique}", "to quorum")
    [msg] = await messages(ws, 1)
    assert msg.body == b"to quorum"
    await ws.send_frame("ACK", {**ack_header(msg), "receipt": "a"})
    assert_receipt(await ws.recv_frame(), "a")


async def test_stream_from_the_first_offset(target, stomp, management, amqp, unique):
    # x_queue_type_stream.py: a stream needs ack client + prefetch-count;
    # x-stream-offset:first reads what was there before the SUBSCRIBE.
    name = amqp.track_queue(f"{unique}-stream")
    dest = f"/queue/{name}"
    stream = {"x-queue-type": "stream"}
    pub = await stomp(target.url)
    await pub.send(dest, "old", extra=stream, receipt="r")  # declares the stream
    assert shape(await management.queue(name)) == {
        "durable": True,
        "auto_delete": False,
        "exclusive": False,
        "type": "stream",
        "arguments": stream,
    }
    ws = await stomp(target.url)
    sub_headers = {
        **stream,
        "ack": "client",
        "prefetch-count": "10",
        "x-stream-offset": "first",
    }
    await ws.subscribe(dest, id="s", extra=sub_headers)
    [msg] = await messages(ws, 1)
    message_id = f"T_s@@{ws.session}@@1"
    assert_headers(
        msg,
        [
            ("subscription", "s"),
            ("destination", dest),
            ("message-id", message_id),
            ("redelivered", "false"),
            ("ack", message_id),
            ("x-queue-type", "stream"),  # the SEND's headers travel along
            ("receipt", "r"),
            ("x-stream-offset", "0"),  # added by the stream
            ("content-length", "3"),
        ],
    )
    assert msg.body == b"old"
    await ws.send_frame("ACK", {**ack_header(msg), "receipt": "a"})
    assert_receipt(await ws.recv_frame(), "a")
    await pub.send(dest, "new")
    [new] = await messages(ws, 1)
    assert (new.body, new.header("x-stream-offset")) == (b"new", "1")


async def test_stream_without_prefetch__error_fixed_in_gateway(target, stomp, amqp, unique):
    # A stream consumer needs a prefetch count: the consume fails, the session dies.
    name = f"{unique}-stream"
    await amqp.declare_queue(name, durable=True, arguments={"x-queue-type": "stream"})
    ws = await stomp(target.url)
    await ws.send_frame(
        "SUBSCRIBE", {"destination": f"/amq/queue/{name}", "id": "s", "ack": "client"}
    )
    code, _ = await ws.recv_close()
    assert code == 1000
    if target.is_plugin:
        assert ws.drained_frames == []
    else:
        [err] = ws.drained_frames
        assert_error(
            err,
            "precondition_failed",
            b"PRECONDITION_FAILED - consumer prefetch count is not set for "
            + f"'queue '{name}' in vhost '/''".encode(),
        )


async def test_inequivalent_queue_arguments__error_fixed_in_gateway(target, stomp, amqp, unique):
    await amqp.declare_queue(unique, durable=True)
    ws = await stomp(target.url)
    await ws.send_frame("SUBSCRIBE", {"destination": f"/queue/{unique}", "auto-delete": "true"})
    code, _ = await ws.recv_close()
    assert code == 1000
    if target.is_plugin:
        assert ws.drained_frames == []  # 3.10.8 loses the ERROR
    else:
        [err] = ws.drained_frames
        body = (
            f"PRECONDITION_FAILED - inequivalent arg 'auto_delete' for queue '{unique}' in "
            "vhost '/': received 'true' but current is 'false'"
        )
        assert_error(err, "precondition_failed", body.encode())
    assert await amqp.queue_exists(unique)


async def test_durable_unsubscribe_deletes_the_subscription_queue__fixed_in_gateway(
    target, stomp, amqp, unique
):
    # durable_unsubscribe_ignores_frame_queue_name (main): 3.10.8 recomputes the
    # queue from the UNSUBSCRIBE frame, so x-queue-name there deletes any queue.
    sub_queue = amqp.track_queue(f"{unique}-mine")
    bystander = f"{unique}-bystander"
    await amqp.declare_queue(bystander, durable=True)
    ws = await stomp(target.url)
    await ws.subscribe(
        f"/topic/{unique}",
        id="d",
        extra={"durable": "true", "auto-delete": "false", "x-queue-name": sub_queue},
    )
    await ws.send_frame(
        "UNSUBSCRIBE",
        {"id": "d", "durable": "true", "x-queue-name": bystander, "receipt": "u"},
    )
    assert_receipt(await ws.recv_frame(), "u")
    if target.is_plugin:
        await amqp.wait_queue(bystander, exists=False)
        assert await amqp.queue_exists(sub_queue)
    else:
        await amqp.wait_queue(sub_queue, exists=False)
        assert await amqp.queue_exists(bystander)


async def test_one_channel_error_ends_every_subscription(target, stomp, amqp, unique):
    # One AMQP channel per session (3.x-4.3): a failing SUBSCRIBE takes the others down.
    amqp.track_queue(unique)
    ws = await stomp(target.url)
    await ws.subscribe(f"/queue/{unique}", id="ok", extra={"ack": "client"})
    await publish(await stomp(target.url), f"/queue/{unique}", "m")
    [msg] = await messages(ws, 1)
    await ws.send_frame("SUBSCRIBE", {"destination": f"/amq/queue/{unique}-missing", "id": "x"})
    code, _ = await ws.recv_close()
    assert code == 1000
    if target.is_gateway:
        [err] = ws.drained_frames
        body = f"NOT_FOUND - no queue '{unique}-missing' in vhost '/'".encode()
        assert_error(err, "not_found", body)
    # the first subscription's unacked delivery went back to its queue
    again = await stomp(target.url)
    await again.subscribe(f"/queue/{unique}", id="s")
    [back] = await messages(again, 1)
    assert (back.body, back.header("redelivered")) == (msg.body, "true")
    await close_session(again)


@pytest.mark.parametrize("sub_id", ["s1", None], ids=["with-id", "without-id"])
async def test_queue_deleted_under_a_subscription__late_ack_settles_in_gateway(
    target, stomp, amqp, unique, sub_id
):
    # delete_queue_subscribe: ERROR "Server cancelled subscription" (with a
    # subscription header: the id, else the destination) and the session stays open.
    # RabbitMQ main lets the delivery still be acked; 3.10.8 has forgotten it.
    dest = f"/amq/queue/{unique}"
    await amqp.declare_queue(unique, durable=False)
    ws = await stomp(target.url)
    await ws.subscribe(dest, id=sub_id, extra={"ack": "client-individual"})
    await publish(await stomp(target.url), dest, "m")
    [msg] = await messages(ws, 1)
    await amqp.channel.queue_delete(unique)
    label = f"id='{sub_id}'" if sub_id else f"destination='{dest}'"
    assert_error(
        await ws.recv_frame(),
        "Server cancelled subscription",
        b"The server has canceled a subscription.\n"
        + f'No more messages will be delivered for "{label}".\n'.encode(),
        ("subscription", sub_id or dest),
    )
    await ws.send_frame("ACK", {**ack_header(msg), "receipt": "a"})
    if target.is_plugin:
        body = f'Message with id "{msg.header("ack")}" has no subscription'.encode()
        assert_error(await ws.recv_frame(), "Subscription not found", body)
    else:
        assert_receipt(await ws.recv_frame(), "a")
    await ws.send(f"/topic/{unique}", "still open", receipt="r")


@pytest.mark.parametrize(
    "headers",
    [{"ack": "bogus"}, {"ack": "Client"}, {"prefetch-count": "many"}, {"x-max-length": "5x"}],
    ids=["ack-bogus", "ack-case", "prefetch", "x-int"],
)
async def test_bad_subscribe_values_are_processing_errors(target, stomp, amqp, unique, headers):
    amqp.track_queue(unique)
    ws = await stomp(target.url)
    await ws.send_frame(
        "SUBSCRIBE", {"destination": f"/queue/{unique}", "id": "s", "receipt": "r", **headers}
    )
    assert_error(await ws.recv_frame(), "Processing error", b"Processing error")
    await ws.expect_no_frame(0.1)
    await ws.subscribe(f"/queue/{unique}", id="s")  # the id was not taken
