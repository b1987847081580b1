"""WebSocket layer (webstomp.md 2.1): subprotocol negotiation, text and binary inbound
messages, frames split over messages and several frames per message, outbound framing."""

from __future__ import annotations

import pytest

from tests.interop.helpers import assert_connected, assert_receipt

pytestmark = pytest.mark.interop

CONNECT = b"CONNECT\naccept-version:1.2\nlogin:guest\npasscode:guest\nheart-beat:0,0\n\n\x00"


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (("v10.stomp", "v11.stomp", "v12.stomp"), "v12.stomp"),
        (("v12.stomp", "v11.stomp", "v10.stomp"), "v12.stomp"),
        (("v11.stomp", "v10.stomp"), "v11.stomp"),
        (("foo", "v10.stomp"), "v10.stomp"),
        (("foo",), None),
        (("stomp",), None),
        (("V12.STOMP",), None),
        (None, None),
    ],
)
async def test_subprotocol_negotiation(target, stomp, offered, chosen):
    # Unknown-only offers still get 101, just without Sec-WebSocket-Protocol.
    ws = await stomp(target.url, connect=False, subprotocols=offered)
    assert ws.subprotocol == chosen
    assert ("sec-websocket-protocol" in ws.response_headers) == (chosen is not None)
    assert_connected(await ws.connect_stomp(), target.name)


async def test_subprotocol_does_not_constrain_version(target, stomp):
    ws = await stomp(target.url, connect=False, subprotocols=("v10.stomp",))
    assert ws.subprotocol == "v10.stomp"
    assert_connected(await ws.connect_stomp(version="1.2"), target.name, version="1.2")


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
async def test_inbound_text_and_binary_messages(target, stomp, unique, binary):
    ws = await stomp(target.url, connect=False)
    await ws.send_raw(CONNECT, binary=binary)
    assert_connected(await ws.recv_frame(), target.name)
    await ws.send_frame(
        "SUBSCRIBE", {"destination": f"/topic/{unique}", "id": "s", "receipt": "r"}, binary=binary
    )
    assert_receipt(await ws.recv_frame(), "r")
    await ws.send_frame("SEND", {"destination": f"/topic/{unique}"}, "hi", binary=binary)
    frame = await ws.recv_frame()
    assert frame.command == "MESSAGE"
    assert frame.body == b"hi"


async def test_outbound_frames_are_text_messages_with_trailing_lf(target, stomp, unique):
    # Default ws_frame=text: one frame per WS message, NUL then LF.
    ws = await stomp(target.url)
    await ws.subscribe(f"/topic/{unique}", id="s")
    await ws.send(f"/topic/{unique}", "x")
    frame = await ws.recv_frame()
    assert ws.messages_received == 3  # CONNECTED, RECEIPT, MESSAGE
    assert ws.message_opcodes == ["text", "text", "text"]
    assert ws.raw_messages[-1] == frame.raw + b"\n"
    assert all(m.endswith(b"\x00\n") for m in ws.raw_messages)


async def test_frame_split_over_three_messages(target, stomp, unique):
    ws = await stomp(target.url, connect=False)
    await ws.send_split(CONNECT, 3)
    assert_connected(await ws.recv_frame(), target.name)
    send = (
        f"SUBSCRIBE\ndestination:/topic/{unique}\nid:s\nreceipt:r\n\n\x00"
        f"SEND\ndestination:/topic/{unique}\ncontent-length:5\n\na\x00b\x00c\x00"
    ).encode()
    # split mid-header, mid-body (between NULs of a content-length body)
    for cut in ([7, 40], [len(send) - 4, len(send) - 2]):
        parts = [send[: cut[0]], send[cut[0] : cut[1]], send[cut[1] :]]
        for part in parts:
            await ws.send_raw(part)
        assert_receipt(await ws.recv_frame(), "r")
        frame = await ws.recv_frame()
        assert frame.command == "MESSAGE"
        assert frame.body == b"a\x00b\x00c"
        await ws.send_frame("UNSUBSCRIBE", {"id": "s"})


async def test_three_frames_in_one_message(target, stomp, unique):
    ws = await stomp(target.url)
    data = (
        f"SUBSCRIBE\ndestination:/topic/{unique}\nid:s\nreceipt:r1\n\n\x00"
        f"SEND\ndestination:/topic/{unique}\n\none\x00\n"
        f"SEND\ndestination:/topic/{unique}\nreceipt:r2\n\ntwo\x00\r\n\n"
    ).encode()
    await ws.send_raw(data, binary=True)
    assert_receipt(await ws.recv_frame(), "r1")
    frames = [await ws.recv_frame() for _ in range(3)]
    messages = [f for f in frames if f.command == "MESSAGE"]
    assert [m.body for m in messages] == [b"one", b"two"]
    assert [f.command for f in frames if f.command != "MESSAGE"] == ["RECEIPT"]
    # each outbound frame is still its own WS message
    assert ws.messages_received == 5


async def test_crlf_line_endings_and_eols_between_frames(target, stomp, unique):
    ws = await stomp(target.url)
    await ws.send_raw(b"\n\r\n\n")  # client heart-beats: no answer
    await ws.send_raw(
        f"\r\nSUBSCRIBE\r\ndestination:/topic/{unique}\r\nid:s\r\nreceipt:r\r\n\r\n\x00".encode()
    )
    assert_receipt(await ws.recv_frame(), "r")
    await ws.expect_no_frame(0.2)


async def test_body_with_nul_needs_content_length(target, stomp, unique):
    ws = await stomp(target.url)
    await ws.subscribe(f"/topic/{unique}", id="s")
    await ws.send_frame("SEND", {"destination": f"/topic/{unique}"}, b"a\x00b", content_length=True)
    frame = await ws.recv_frame()
    assert frame.body == b"a\x00b"
    assert frame.header("content-length") == "3"


async def test_ws_ping_is_answered(target, stomp):
    ws = await stomp(target.url)
    assert await ws.is_open(timeout=2)
