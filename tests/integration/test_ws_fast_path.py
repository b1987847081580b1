"""The gateway's own reader of client WebSocket frames (GatewayConnection's fast path),
driven byte for byte through a raw socket against real RabbitMQ: fragments with control
frames between them, every length encoding, frames pipelined with the upgrade request,
the login cap applied to the very next message, and every refusal's close code and
reason (websockets' own, as before the fast path). Then the same with permessage-deflate
(websockets' client, which offers it, writing frames through its own protocol object):
compressed and uncompressed messages, fragments, context takeover, zip bombs, invalid
UTF-8 and corrupt data."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from websockets.asyncio.messages import Assembler
from websockets.extensions.permessage_deflate import PerMessageDeflate

from gateway.transport.websocket import GatewayConnection
from tests.support.faultproxy import until
from tests.support.wsclient import connect_ws

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, masked: bool = True
) -> bytes:
    n = len(payload)
    first = (0x80 if fin else 0) | rsv | opcode
    bit = 0x80 if masked else 0
    if n < 126:
        head = struct.pack("!BB", first, bit | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, bit | 127, n)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return head + mask + (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode()


class RawWs:
    """A WebSocket client that writes exactly the bytes it is given."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, pipelined: bytes = b"") -> RawWs:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\n".encode()
            + pipelined
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101")
        return cls(reader, writer)

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def recv(self) -> tuple[int, bytes]:
        """The next server frame: (opcode, payload); server frames are never fragmented."""

        async def read() -> tuple[int, bytes]:
            first, second = await self.reader.readexactly(2)
            assert first & 0x80 and not second & 0x80  # final, unmasked
            n = second & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            return first & 0x0F, await self.reader.readexactly(n)

        return await asyncio.wait_for(read(), 5)

    async def recv_stomp(self) -> bytes:
        opcode, payload = await self.recv()
        assert opcode in (TEXT, BINARY), (opcode, payload)
        return payload

    async def recv_close(self) -> tuple[int, str]:
        """Skip data frames up to the close frame, echo it; the server ends the stream."""
        while True:
            opcode, payload = await self.recv()
            if opcode == CLOSE:
                self.writer.write(frame(CLOSE, payload))  # the client's echo
                assert await asyncio.wait_for(self.reader.read(), 5) == b""
                self.writer.close()
                (code,) = struct.unpack("!H", payload[:2])
                return code, payload[2:].decode()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


@pytest.fixture
async def raw() -> AsyncIterator[Callable[..., Awaitable[RawWs]]]:
    """``ws = await raw(port, pipelined=b"")``; closed at teardown."""
    opened: list[RawWs] = []

    async def open_(port: int, pipelined: bytes = b"") -> RawWs:
        ws = await RawWs.open(port, pipelined)
        opened.append(ws)
        return ws

    yield open_
    for ws in opened:
        await ws.close()


CONNECT = b"CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\n\n\x00\n"


def send(queue: str, body: bytes, receipt: str) -> bytes:
    return f"SEND\ndestination:/amq/queue/{queue}\nreceipt:{receipt}\n\n".encode() + body + b"\x00"


async def login(ws: RawWs) -> None:
    ws.write(frame(TEXT, CONNECT))
    assert (await ws.recv_stomp()).startswith(b"CONNECTED\n")


async def test_fragments_with_pings_and_pongs_between_them(
    gateway_factory, raw, amqp, unique
) -> None:
    port = (await gateway_factory()).port
    await amqp.declare_queue(unique, auto_delete=True)
    ws = await raw(port)
    ws.write(
        frame(TEXT, CONNECT[:10], fin=False)
        + frame(PING, b"one")
        + frame(CONT, CONNECT[10:30], fin=False)
        + frame(PONG, b"unsolicited")
        + frame(CONT, CONNECT[30:])
    )
    assert await ws.recv() == (PONG, b"one")
    assert (await ws.recv_stomp()).startswith(b"CONNECTED\n")
    body = bytes(range(256)) * 300  # 76,800 bytes: NULs, 16- and 64-bit fragments
    data = send(unique, b"", "r1").replace(b"\n\n", b"\ncontent-length:76800\n\n")
    data = data[:-1] + body + b"\x00"
    ws.write(
        frame(BINARY, data[:100], fin=False)
        + frame(CONT, data[100:70_100], fin=False)
        + frame(PING, b"")
        + frame(CONT, data[70_100:])
    )
    assert await ws.recv() == (PONG, b"")
    assert await ws.recv_stomp() == b"RECEIPT\nreceipt-id:r1\n\n\x00\n"
    message = await amqp.get(unique)
    assert message.body == body


async def test_frames_pipelined_with_the_upgrade_request(
    gateway_factory, raw, amqp, unique
) -> None:
    port = (await gateway_factory()).port
    await amqp.declare_queue(unique, auto_delete=True)
    ws = await raw(port, pipelined=frame(TEXT, CONNECT) + frame(TEXT, send(unique, b"early", "r1")))
    assert (await ws.recv_stomp()).startswith(b"CONNECTED\n")
    assert await ws.recv_stomp() == b"RECEIPT\nreceipt-id:r1\n\n\x00\n"
    assert (await amqp.get(unique)).body == b"early"


async def test_the_message_right_behind_connect_gets_the_login_cap(
    gateway_factory, raw, amqp, unique
) -> None:
    # Messages are parsed when the session takes them: the SEND written together with
    # the CONNECT is measured against the cap raised at login, not the 1000 + 4096 one.
    handle = await gateway_factory(max_frame_size_unauthenticated=1000)
    await amqp.declare_queue(unique, auto_delete=True)
    ws = await raw(handle.port)
    ws.write(frame(TEXT, CONNECT) + frame(TEXT, send(unique, b"b" * 6000, "big")))
    assert (await ws.recv_stomp()).startswith(b"CONNECTED\n")
    assert await ws.recv_stomp() == b"RECEIPT\nreceipt-id:big\n\n\x00\n"
    assert (await amqp.get(unique)).body == b"b" * 6000


async def test_size_limits_before_and_after_login(gateway_factory, raw) -> None:
    handle = await gateway_factory(max_frame_size_unauthenticated=1000, max_frame_size=10_000)
    before = await raw(handle.port)
    before.write(frame(TEXT, b"x" * 5097)[:8])  # the header alone is refused
    assert await before.recv_close() == (1009, "frame with 5097 bytes exceeds limit of 5096 bytes")
    after = await raw(handle.port)
    await login(after)
    after.write(frame(TEXT, b"\n" * 10_000, fin=False) + frame(CONT, b"\n" * 4097))
    assert await after.recv_close() == (
        1009,
        "frame with 4097 bytes after reading 10000 bytes exceeds limit of 14096 bytes",
    )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (frame(TEXT, b"\n", masked=False), (1002, "incorrect masking")),
        (frame(TEXT, b"\n", rsv=0x40), (1002, "reserved bits must be 0")),
        (frame(0x3, b"\n"), (1002, "invalid opcode")),
        (frame(CONT, b"\n"), (1002, "unexpected continuation frame")),
        (frame(PING, b"p" * 126), (1002, "control frame too long")),
        (
            frame(TEXT, b"SEND\n", fin=False) + frame(TEXT, b"x"),
            (1002, "expected a continuation frame"),
        ),
        (
            frame(TEXT, b"SEND\n", fin=False) + frame(CLOSE, close_payload(1000)),
            (1002, "incomplete fragmented message"),
        ),
        (frame(TEXT, b"SEND\n\n\xc3\x28\x00"), (1007, "invalid continuation byte at position 6")),
        (frame(CLOSE, close_payload(999)), (1002, "invalid status code")),
    ],
    ids=[
        "unmasked",
        "reserved-bit",
        "reserved-opcode",
        "orphan-continuation",
        "long-ping",
        "text-inside-fragments",
        "close-inside-fragments",
        "bad-utf8",
        "bad-close-code",
    ],
)
async def test_refusals_close_as_websockets_does(gateway_factory, raw, data, expected) -> None:
    port = (await gateway_factory()).port
    ws = await raw(port)
    await login(ws)
    ws.write(data)
    assert await ws.recv_close() == expected


async def test_client_close_is_echoed_and_the_session_ends(gateway_factory, raw) -> None:
    handle = await gateway_factory()
    ws = await raw(handle.port)
    await login(ws)
    [connection] = [c for c in handle.server._ws.connections if isinstance(c, GatewayConnection)]
    assert connection.fast
    ws.write(frame(CLOSE, close_payload(4000, "bye")) + frame(TEXT, b"ignored"))
    assert await ws.recv_close() == (4000, "bye")
    await until(lambda: not handle.server.sessions, within=5)


async def test_a_ping_is_answered_while_idle(gateway_factory, raw) -> None:
    port = (await gateway_factory()).port
    ws = await raw(port)
    await login(ws)
    ws.write(frame(PING, b"are you there"))
    assert await ws.recv() == (PONG, b"are you there")
    ws.write(frame(TEXT, b"DISCONNECT\nreceipt:bye\n\n\x00"))
    assert await ws.recv_stomp() == b"RECEIPT\nreceipt-id:bye\n\n\x00\n"
    assert await ws.recv_close() == (1000, "STOMP died")


# ------------------------------------------------------------------ permessage-deflate
def only_connection(handle) -> GatewayConnection:
    [connection] = list(handle.server._ws.connections)
    assert isinstance(connection, GatewayConnection)
    return connection


def write_frames(ws, *frames: tuple[str, bytes, bool]) -> None:
    """Write (kind, data, fin) frames with the client's own protocol object: "text",
    "binary" and "cont" are compressed by its negotiated extension, "ping" is not;
    "raw" bytes go as they are (they must not disturb the client's compression)."""
    protocol = ws.ws.protocol
    out: list[bytes] = []
    for kind, data, fin in frames:
        if kind == "raw":
            out.extend(protocol.data_to_send())
            out.append(data)
            continue
        if kind == "text":
            protocol.send_text(data, fin=fin)
        elif kind == "binary":
            protocol.send_binary(data, fin=fin)
        elif kind == "cont":
            protocol.send_continuation(data, fin=fin)
        else:
            protocol.send_ping(data)
    out.extend(protocol.data_to_send())
    ws.ws.transport.write(b"".join(out))


async def deflate_client(handle, *, login: bool = True):
    """A websockets client that negotiated permessage-deflate, on the fast path."""
    ws = await connect_ws(handle.url)  # offers permessage-deflate
    [extension] = ws.ws.protocol.extensions
    assert isinstance(extension, PerMessageDeflate)
    assert not extension.local_no_context_takeover  # messages share the context
    if login:
        await ws.connect_stomp()
    return ws


async def test_deflate_connections_take_the_fast_path(gateway_factory, unique) -> None:
    handle = await gateway_factory(compress=True)
    ws = await deflate_client(handle)
    try:
        connection = only_connection(handle)
        [extension] = connection.protocol.extensions
        assert isinstance(extension, PerMessageDeflate)
        assert connection.fast
        assert not isinstance(connection.recv_messages, Assembler)  # websockets reads nothing
        await ws.subscribe(f"/queue/{unique}", id="s")
        await ws.send(f"/queue/{unique}", "z" * 10_000)  # compressed both ways
        message = await ws.recv_frame()
        assert (message.command, message.body) == ("MESSAGE", b"z" * 10_000)
        assert connection.fast
        assert not isinstance(connection.recv_messages, Assembler)
    finally:
        await ws.close()


async def test_deflate_many_messages_share_the_compression_context(gateway_factory, unique) -> None:
    handle = await gateway_factory(compress=True)
    ws = await deflate_client(handle)
    try:
        await ws.subscribe(f"/queue/{unique}", id="s")
        bodies = [f'{{"seq":{i},"price":{i * 7 % 1000}.25,"user":"u{i % 13}"}}' for i in range(300)]
        for i, body in enumerate(bodies):
            await ws.send(f"/queue/{unique}", body, extra={"seq": str(i)})
        messages = await ws.recv_frames(len(bodies), timeout=20)
        assert [(m.command, m.header("seq"), m.body) for m in messages] == [
            ("MESSAGE", str(i), body.encode()) for i, body in enumerate(bodies)
        ]
        assert only_connection(handle).fast
    finally:
        await ws.close()


async def test_deflate_fragments_with_pings_between_them(gateway_factory, amqp, unique) -> None:
    handle = await gateway_factory(compress=True)
    await amqp.declare_queue(unique, auto_delete=True)
    ws = await deflate_client(handle)
    try:
        body = bytes(range(256)) * 300  # 76,800 bytes: NULs, long fragments
        head = f"SEND\ndestination:/amq/queue/{unique}\nreceipt:r1\ncontent-length:76800\n\n"
        data = head.encode() + body + b"\x00"
        # Each ping is answered while the compressed message is still incomplete.
        write_frames(ws, ("binary", data[:100], False))
        await asyncio.wait_for(await ws.ws.ping(b"one"), 5)
        write_frames(ws, ("cont", data[100:70_100], False), ("ping", b"untracked", True))
        await asyncio.wait_for(await ws.ws.ping(b"two"), 5)
        write_frames(ws, ("cont", b"", False), ("cont", data[70_100:], True))
        receipt = await ws.recv_frame()
        assert (receipt.command, receipt.header("receipt-id")) == ("RECEIPT", "r1")
        assert (await amqp.get(unique)).body == body
        # The compressed text message after it still decodes (the context carried on).
        write_frames(
            ws,
            ("text", f"SEND\ndestination:/amq/queue/{unique}\n".encode(), False),
            ("cont", b"receipt:r2\n\nafter\x00", True),
        )
        receipt = await ws.recv_frame()
        assert (receipt.command, receipt.header("receipt-id")) == ("RECEIPT", "r2")
        assert (await amqp.get(unique)).body == b"after"
        assert only_connection(handle).fast
    finally:
        await ws.close()


async def test_deflate_connection_takes_uncompressed_messages(
    gateway_factory, amqp, unique
) -> None:
    # rsv1 clear: a message sent uncompressed on a deflate connection (RFC 7692 allows
    # it), between compressed ones.
    handle = await gateway_factory(compress=True)
    await amqp.declare_queue(unique, auto_delete=True)
    ws = await deflate_client(handle)
    try:
        write_frames(
            ws,
            ("text", send(unique, b"one", "r1"), True),
            ("raw", frame(TEXT, send(unique, b"two", "r2")), True),
            ("raw", frame(BINARY, send(unique, b"three", "r3")[:20], fin=False), True),
            ("raw", frame(CONT, send(unique, b"three", "r3")[20:]), True),
            ("binary", send(unique, b"four", "r4"), True),
        )
        receipts = await ws.recv_frames(4)
        assert [r.header("receipt-id") for r in receipts] == ["r1", "r2", "r3", "r4"]
        assert [(await amqp.get(unique)).body for _ in range(4)] == [
            b"one",
            b"two",
            b"three",
            b"four",
        ]
    finally:
        await ws.close()


async def test_deflate_zip_bombs_before_and_after_login(gateway_factory) -> None:
    # Small on the wire, big inflated: refused while inflating, with the limit of the
    # moment (max_frame_size_unauthenticated + 4096, then max_frame_size + 4096).
    handle = await gateway_factory(
        compress=True, max_frame_size_unauthenticated=1000, max_frame_size=10_000
    )
    before = await deflate_client(handle, login=False)
    write_frames(before, ("text", b"\n" * 1_000_000, True))
    assert await before.recv_close() == (1009, "frame exceeds limit of 5096 bytes")
    after = await deflate_client(handle)
    write_frames(after, ("text", b"\n" * 10_000, False), ("cont", b"\n" * 500_000, True))
    assert await after.recv_close() == (
        1009,
        "frame after reading 10000 bytes exceeds limit of 14096 bytes",
    )


async def test_deflate_the_message_right_behind_connect_gets_the_login_cap(
    gateway_factory, amqp, unique
) -> None:
    handle = await gateway_factory(compress=True, max_frame_size_unauthenticated=1000)
    await amqp.declare_queue(unique, auto_delete=True)
    ws = await deflate_client(handle, login=False)
    try:
        body = os.urandom(3000).hex().encode()  # 6,000 bytes inflated, ~3,000 on the wire
        write_frames(ws, ("text", CONNECT, True), ("text", send(unique, body, "big"), True))
        assert (await ws.recv_frame()).command == "CONNECTED"
        receipt = await ws.recv_frame()
        assert (receipt.command, receipt.header("receipt-id")) == ("RECEIPT", "big")
        assert (await amqp.get(unique)).body == body
    finally:
        await ws.close()


async def test_deflate_invalid_utf8_is_1007(gateway_factory) -> None:
    handle = await gateway_factory(compress=True)
    ws = await deflate_client(handle)
    head = b"SEND\ndestination:/queue/x\n\n"
    write_frames(ws, ("text", head + b"\xff\xfe\x00", True))
    assert await ws.recv_close() == (1007, f"invalid start byte at position {len(head)}")


async def test_deflate_corrupt_data_closes_as_websockets_does(gateway_factory) -> None:
    handle = await gateway_factory(compress=True)
    ws = await deflate_client(handle)
    write_frames(ws, ("raw", frame(TEXT, b"garbage!", rsv=0x40), True))
    assert await ws.recv_close() == (1002, "decompression failed")


async def test_deflate_close_inside_compressed_fragments(gateway_factory) -> None:
    # The close frame goes to websockets with the message's decompressed size so far.
    handle = await gateway_factory(compress=True)
    ws = await deflate_client(handle)
    write_frames(
        ws,
        ("text", b"SEND\n" + b"\n" * 20_000, False),
        ("raw", frame(CLOSE, close_payload(1000)), True),
    )
    assert await ws.recv_close() == (1002, "incomplete fragmented message")
