"""Receipts (webstomp.md 2.11): RECEIPT receipt-id:X, each frame its own WS message
with the trailing LF; SEND receipts are publisher confirms; CONNECT receipts ignored."""

from __future__ import annotations

import pytest

from tests.interop.helpers import assert_receipt

pytestmark = pytest.mark.interop


def receipt_bytes(receipt_id: str) -> bytes:
    return f"RECEIPT\nreceipt-id:{receipt_id}\n\n\x00\n".encode()


async def test_subscribe_unsubscribe_send_receipts(target, stomp, unique):
    ws = await stomp(target.url)
    await ws.send_frame(
        "SUBSCRIBE", {"destination": f"/topic/{unique}", "id": "s1", "receipt": "sub-1"}
    )
    assert_receipt(await ws.recv_frame(), "sub-1")
    assert ws.raw_messages[-1] == receipt_bytes("sub-1")

    await ws.send_frame("SEND", {"destination": f"/topic/{unique}.other", "receipt": "send-1"})
    assert_receipt(await ws.recv_frame(), "send-1")
    assert ws.raw_messages[-1] == receipt_bytes("send-1")

    await ws.send_frame("UNSUBSCRIBE", {"id": "s1", "receipt": "unsub-1"})
    assert_receipt(await ws.recv_frame(), "unsub-1")
    assert ws.raw_messages[-1] == receipt_bytes("unsub-1")
    await ws.expect_no_frame(0.2)


async def test_receipt_id_is_escaped(target, stomp, unique):
    ws = await stomp(target.url)
    receipt = "a:b\\c\nd"
    await ws.send_frame("SEND", {"destination": f"/topic/{unique}", "receipt": receipt})
    assert_receipt(await ws.recv_frame(), receipt)
    assert ws.raw_messages[-1] == b"RECEIPT\nreceipt-id:a\\cb\\\\c\\nd\n\n\x00\n"


async def test_unroutable_send_still_gets_receipt(target, stomp, unique):
    ws = await stomp(target.url)
    await ws.send(f"/exchange/amq.direct/{unique}-nobody", "x", receipt="r-unroutable")


async def test_interleaved_send_receipts(target, stomp, amqp, unique):
    amqp.track_queue(unique)
    ws = await stomp(target.url)
    wanted = []
    for i in range(20):
        headers = {"destination": f"/queue/{unique}"}
        if i % 3 == 0:
            headers["receipt"] = f"r-{i}"
            wanted.append(f"r-{i}")
        await ws.send_frame("SEND", headers, f"m{i}")
    got = [await ws.recv_frame() for _ in wanted]
    for frame, receipt in zip(got, wanted, strict=True):
        assert_receipt(frame, receipt)
    await ws.expect_no_frame(0.3)
    assert await amqp.message_count(unique) == 20


async def test_receipt_after_message_to_self(target, stomp, unique):
    # Subscribed to what it sends: both the MESSAGE and the RECEIPT arrive (the MESSAGE
    # may come first: the receipt waits for the publisher confirm).
    ws = await stomp(target.url)
    await ws.subscribe(f"/topic/{unique}", id="s")
    await ws.send_frame("SEND", {"destination": f"/topic/{unique}", "receipt": "r"}, "b")
    frames = [await ws.recv_frame(), await ws.recv_frame()]
    assert sorted(f.command for f in frames) == ["MESSAGE", "RECEIPT"]


async def test_connect_receipt_is_ignored(target, stomp):
    ws = await stomp(target.url, connect=False)
    await ws.connect_stomp(extra={"receipt": "r-connect"})
    await ws.expect_no_frame(0.3)


async def test_error_frame_has_no_receipt(target, stomp):
    ws = await stomp(target.url)
    await ws.send_frame("SEND", {"destination": "/nope/x", "receipt": "r-err"})
    frame = await ws.recv_frame()
    assert frame.command == "ERROR"
    assert frame.header("receipt-id") is None
    await ws.expect_no_frame(0.3)
