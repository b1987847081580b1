"""BEGIN / COMMIT / ABORT (webstomp.md 2.8, 2.12; transactions.py, system_SUITE).

Transactions are emulated: SEND/ACK/NACK naming one are checked at once and run at
COMMIT. RabbitMQ main adds limits that 3.10.8 lacks (16 open transactions, 1024
actions each) and lets a COMMIT go on past an action that fails with "Message not
found"; the gateway follows main, and those tests end in ``_in_gateway``.
"""

from __future__ import annotations

import pytest

from tests.interop.helpers import assert_error, assert_receipt
from tests.interop.semantics import ack_header, close_session, messages, publish
from tests.interop.semantics import ready_after_consumers_left as ready

pytestmark = pytest.mark.interop


async def test_commit_sends_in_order_and_receipts_follow(target, stomp, unique):
    # test_tx_commit + test_send_with_receipt_tx: transactional SENDs wait for COMMIT,
    # a plain SEND does not; the SEND receipts come after the COMMIT.
    dest = f"/topic/{unique}"
    sub = await stomp(target.url)
    await sub.subscribe(dest, id="s")
    ws = await stomp(target.url)
    await ws.send_frame("BEGIN", {"transaction": "tx", "receipt": "b"})
    assert_receipt(await ws.recv_frame(), "b")
    for i in range(3):
        await ws.send_frame(
            "SEND", {"destination": dest, "transaction": "tx", "receipt": f"s{i}"}, f"tx{i}"
        )
    await ws.send(dest, "plain", receipt="plain")
    [plain] = await messages(sub, 1)
    assert plain.body == b"plain"
    await sub.expect_no_frame(0.2)
    await ws.send_frame("COMMIT", {"transaction": "tx", "receipt": "c"})
    receipts = await ws.recv_frames(4)
    assert sorted(f.header("receipt-id") for f in receipts) == ["c", "s0", "s1", "s2"]
    assert [f.command for f in receipts] == ["RECEIPT"] * 4
    assert [m.body for m in await messages(sub, 3)] == [b"tx0", b"tx1", b"tx2"]
    # the transaction header travels with the message, as any other SEND header
    await ws.expect_no_frame(0.1)


async def test_abort_discards(target, stomp, unique):
    dest = f"/topic/{unique}"
    sub = await stomp(target.url)
    await sub.subscribe(dest, id="s")
    ws = await stomp(target.url)
    await ws.send_frame("BEGIN", {"transaction": "tx"})
    await ws.send_frame("SEND", {"destination": dest, "transaction": "tx", "receipt": "s"}, "x")
    await ws.send_frame("ABORT", {"transaction": "tx", "receipt": "a"})
    assert_receipt(await ws.recv_frame(), "a")
    await ws.send_frame("COMMIT", {"transaction": "tx"})  # it is gone
    assert_error(
        await ws.recv_frame(), "Bad transaction", b'Invalid transaction identifier: "tx"\n'
    )
    await sub.expect_no_frame(0.3)


async def test_begin_again_restarts_the_transaction(target, stomp, unique):
    dest = f"/topic/{unique}"
    sub = await stomp(target.url)
    await sub.subscribe(dest, id="s")
    ws = await stomp(target.url)
    await ws.send_frame("BEGIN", {"transaction": "tx"})
    await ws.send_frame("SEND", {"destination": dest, "transaction": "tx"}, "dropped")
    await ws.send_frame("BEGIN", {"transaction": "tx"})
    await ws.send_frame("SEND", {"destination": dest, "transaction": "tx"}, "kept")
    await ws.send_frame("COMMIT", {"transaction": "tx", "receipt": "c"})
    assert_receipt(await ws.recv_frame(), "c")
    [msg] = await messages(sub, 1)
    assert msg.body == b"kept"
    await sub.expect_no_frame(0.2)


async def test_ack_and_nack_in_transaction(target, stomp, amqp, unique):
    # test_ack_client_tx: the ACK/NACK receipts come at once, the settling at COMMIT.
    q = unique
    await amqp.declare_queue(q, durable=False)
    ws = await stomp(target.url)
    await ws.subscribe(f"/amq/queue/{q}", id="s", extra={"ack": "client-individual"})
    await publish(await stomp(target.url), f"/amq/queue/{q}", "one", "two", "three")
    one, two, three = await messages(ws, 3)
    assert [one.body, two.body, three.body] == [b"one", b"two", b"three"]
    await ws.send_frame("BEGIN", {"transaction": "tx"})
    await ws.send_frame("ACK", {**ack_header(one), "transaction": "tx", "receipt": "a"})
    await ws.send_frame(
        "NACK", {**ack_header(two), "transaction": "tx", "requeue": "false", "receipt": "n"}
    )
    assert [f.header("receipt-id") for f in await ws.recv_frames(2)] == ["a", "n"]
    await ws.send_frame("COMMIT", {"transaction": "tx", "receipt": "c"})
    assert_receipt(await ws.recv_frame(), "c")
    await close_session(ws)
    assert await ready(amqp, q) == 1  # only "three" comes back


async def test_abort_leaves_deliveries_unacked(target, stomp, amqp, unique):
    q = unique
    await amqp.declare_queue(q, durable=False)
    ws = await stomp(target.url)
    await ws.subscribe(f"/amq/queue/{q}", id="s", extra={"ack": "client"})
    await publish(await stomp(target.url), f"/amq/queue/{q}", "one")
    [one] = await messages(ws, 1)
    await ws.send_frame("BEGIN", {"transaction": "tx"})
    await ws.send_frame("ACK", {**ack_header(one), "transaction": "tx"})
    await ws.send_frame("ABORT", {"transaction": "tx", "receipt": "a"})
    assert_receipt(await ws.recv_frame(), "a")
    await close_session(ws)
    assert await ready(amqp, q) == 1


@pytest.mark.parametrize("command", ["BEGIN", "COMMIT", "ABORT"])
async def test_missing_transaction_header(target, stomp, command):
    ws = await stomp(target.url)
    await ws.send_frame(command, {"receipt": "r"})
    body = f"\"{command}\" must include a 'transaction' header\n".encode()
    assert_error(await ws.recv_frame(), "Missing transaction", body)
    await ws.expect_no_frame(0.1)


@pytest.mark.parametrize("command", ["COMMIT", "ABORT", "SEND", "ACK", "NACK"])
async def test_unknown_transaction(target, stomp, amqp, unique, command):
    ws = await stomp(target.url)
    headers = {"transaction": "nope", "receipt": "r"}
    if command == "SEND":
        headers["destination"] = f"/topic/{unique}"
    elif command in ("ACK", "NACK"):
        await amqp.declare_queue(unique, durable=False)
        await ws.subscribe(f"/amq/queue/{unique}", id="s", extra={"ack": "client"})
        await publish(await stomp(target.url), f"/amq/queue/{unique}", "m")
        [msg] = await messages(ws, 1)
        headers.update(ack_header(msg))
    await ws.send_frame(command, headers)
    assert_error(
        await ws.recv_frame(), "Bad transaction", b'Invalid transaction identifier: "nope"\n'
    )
    await ws.expect_no_frame(0.1)
    assert await ws.is_open()


async def test_send_in_transaction_is_checked_at_once(target, stomp, unique):
    ws = await stomp(target.url)
    await ws.send_frame("BEGIN", {"transaction": "tx"})
    await ws.send_frame("SEND", {"transaction": "tx", "receipt": "s1"})
    assert_error(
        await ws.recv_frame(),
        "Missing destination",
        b"\"SEND\" must include a 'destination' header\n",
    )
    await ws.send_frame("SEND", {"transaction": "tx", "destination": "/topic/a/b"})
    assert_error(
        await ws.recv_frame(), "Invalid destination", b"'/a/b' is not a valid topic destination\n"
    )
    await ws.send_frame("COMMIT", {"transaction": "tx", "receipt": "c"})
    assert_receipt(await ws.recv_frame(), "c")


async def test_transaction_limit__enforced_in_gateway(target, stomp):
    # RabbitMQ main: at most 16 open transactions per session (3.10.8: no limit).
    ws = await stomp(target.url)
    data = b"".join(f"BEGIN\ntransaction:t{i}\n\n\x00".encode() for i in range(16))
    await ws.send_raw(data + b"BEGIN\ntransaction:t16\nreceipt:b16\n\n\x00")
    if target.is_plugin:
        assert_receipt(await ws.recv_frame(), "b16")
    else:
        assert_error(
            await ws.recv_frame(),
            "Transaction limit exceeded",
            b"Too many concurrent transactions (limit 16)",
        )
        await ws.send_frame("COMMIT", {"transaction": "t0"})
        await ws.send_frame("BEGIN", {"transaction": "t16", "receipt": "b16"})
        assert_receipt(await ws.recv_frame(), "b16")


async def test_transaction_too_large__enforced_in_gateway(target, stomp, unique):
    # RabbitMQ main: at most 1024 actions per transaction (3.10.8: no limit).
    ws = await stomp(target.url)
    send = f"SEND\ndestination:/topic/{unique}\ntransaction:tx\n\nx\x00".encode()
    await ws.send_raw(b"BEGIN\ntransaction:tx\n\n\x00" + send * 1025)
    await ws.send_frame("ABORT", {"transaction": "tx", "receipt": "a"})
    if target.is_gateway:
        assert_error(
            await ws.recv_frame(),
            "Transaction too large",
            b"Too many actions in transaction (limit 1024)",
        )
    assert_receipt(await ws.recv_frame(), "a")


async def test_commit_goes_on_after_a_failed_ack__in_gateway(target, stomp, amqp, unique):
    # transaction_ack_then_nack_same_delivery (main): the NACK finds the delivery
    # settled, gets "Message not found", and the COMMIT completes. 3.10.8 sends the
    # second basic.nack to the broker, which closes the channel: the session dies.
    q = unique
    await amqp.declare_queue(q, durable=False)
    ws = await stomp(target.url)
    await ws.subscribe(f"/amq/queue/{q}", id="s", extra={"ack": "client-individual"})
    await publish(await stomp(target.url), f"/amq/queue/{q}", "hello")
    [msg] = await messages(ws, 1)
    await ws.send_frame("BEGIN", {"transaction": "tx"})
    await ws.send_frame("ACK", {**ack_header(msg), "transaction": "tx"})
    await ws.send_frame("NACK", {**ack_header(msg), "transaction": "tx"})
    await ws.send_frame("COMMIT", {"transaction": "tx", "receipt": "c"})
    if target.is_plugin:
        code, _ = await ws.recv_close()
        assert code == 1000
        # the COMMIT's RECEIPT, then the socket closes: no ERROR
        assert len(ws.drained_frames) == 1
        assert_receipt(ws.drained_frames[0], "c")
    else:
        assert_error(await ws.recv_frame(), "Message not found", b"unknown delivery tag 1\n")
        assert_receipt(await ws.recv_frame(), "c")
        await close_session(ws)
    assert await ready(amqp, q) == 0  # the ACK went through on both
