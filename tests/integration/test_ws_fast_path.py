"""The gateway's own reader of client WebSocket frames (GatewayConnection's fast path),
driven byte for byte through a raw socket against real RabbitMQ: fragments with control
frames between them, every length encoding, frames pipelined with the upgrade request,
the login cap applied to the very next message, and every refusal's close code and
reason (websockets' own, as before the fast path)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

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


async def test_permessage_deflate_keeps_websockets_reader(gateway_factory, unique) -> None:
    handle = await gateway_factory(compress=True)
    ws = await connect_ws(handle.url)  # offers permessage-deflate
    try:
        [connection] = list(handle.server._ws.connections)
        assert connection.protocol.extensions and not connection.fast
        await ws.connect_stomp()
        await ws.subscribe(f"/queue/{unique}", id="s")
        await ws.send(f"/queue/{unique}", "z" * 10_000)
        message = await ws.recv_frame()
        assert (message.command, message.body) == ("MESSAGE", b"z" * 10_000)
        await ws.ws.send(b"SEND\ndestination:/queue/x\n\n\xff\xfe\x00", text=True)
        code, _ = await ws.recv_close()
        assert code == 1007
    finally:
        await ws.close()
