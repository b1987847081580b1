"""GatewayConnection's fast path in-process (loopback sockets, no broker): back-pressure
while the session is busy (also with permessage-deflate), and the hand-over to
websockets on a close."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.messages import Assembler
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from gateway.transport.websocket import READ_AHEAD, GatewayConnection, _receive_fast
from tests.support.faultproxy import until


def masked_text(payload: bytes) -> bytes:
    mask = os.urandom(4)
    n = len(payload)
    head = struct.pack("!BB", 0x81, 0x80 | n) if n < 126 else struct.pack("!BBH", 0x81, 0xFE, n)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return head + mask + (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")


class BlockingSession:
    """Records messages; the first one blocks until ``release`` is set."""

    state = None

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.release = asyncio.Event()
        self.busy = asyncio.Event()

    async def data_received(self, data: bytes) -> None:
        self.messages.append(data)
        if len(self.messages) == 1:
            self.busy.set()
            await self.release.wait()


Served = tuple[int, list[GatewayConnection], BlockingSession]


@pytest.fixture
async def server() -> AsyncIterator[Served]:
    async with serving(compression=None) as served:
        yield served


@pytest.fixture
async def deflate_server() -> AsyncIterator[Served]:
    async with serving(compression="deflate") as served:
        yield served


@contextlib.asynccontextmanager
async def serving(compression: str | None) -> AsyncIterator[Served]:
    connections: list[GatewayConnection] = []
    session = BlockingSession()

    async def handler(ws: Any) -> None:
        connections.append(ws)
        assert ws.fast
        await _receive_fast(ws, session, 10**6)  # type: ignore[arg-type]
        # Then, as serve_connection does, what websockets may still read.
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                session.messages.append(message)  # type: ignore[arg-type]

    async with serve(
        handler,
        "127.0.0.1",
        0,
        create_connection=GatewayConnection,
        ping_interval=None,
        compression=compression,
    ) as ws_server:
        port = next(iter(ws_server.sockets)).getsockname()[1]
        yield port, connections, session


async def open_client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return reader, writer


async def test_a_busy_session_stops_the_reading(server) -> None:
    port, connections, session = server
    _, writer = await open_client(port)
    messages = [f"SEND\n\n{i:06d}".encode() + b"x" * 200 + b"\x00" for i in range(20_000)]
    data = b"".join(masked_text(m) for m in messages)  # ~4.3 MB
    writer.write(data)
    await asyncio.wait_for(session.busy.wait(), 5)
    [connection] = connections
    # The session sits in its first message: the gateway reads a bounded amount more,
    # then stops reading the socket (the rest waits in the kernel and the client).
    await until(lambda: connection._rx_paused, within=5)
    frames = connection._frames
    assert frames is not None
    assert READ_AHEAD < frames.buffered() <= READ_AHEAD + 256 * 1024
    assert len(session.messages) == 1
    assert writer.transport.get_write_buffer_size() > 0  # the client cannot write it all
    session.release.set()
    await asyncio.wait_for(writer.drain(), 10)
    await until(lambda: len(session.messages) == len(messages), within=10)
    assert session.messages == messages
    assert not connection._rx_paused
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def test_a_busy_session_stops_the_reading_with_deflate(deflate_server) -> None:
    # The same bound with compressed frames: READ_AHEAD counts bytes on the wire.
    port, connections, session = deflate_server
    client = await connect(f"ws://127.0.0.1:{port}/", ping_interval=None, max_size=None)
    assert client.protocol.extensions  # permessage-deflate, offered by default
    messages = [f"SEND\n\n{i:06d}".encode() + os.urandom(100).hex().encode() for i in range(30_000)]
    for message in messages:
        client.protocol.send_text(message)
    data = b"".join(client.protocol.data_to_send())
    assert len(data) > 3_000_000
    client.transport.write(data)
    await asyncio.wait_for(session.busy.wait(), 5)
    [connection] = connections
    assert connection.fast
    await until(lambda: connection._rx_paused, within=5)
    frames = connection._frames
    assert frames is not None
    assert READ_AHEAD < frames.buffered() <= READ_AHEAD + 256 * 1024
    assert len(session.messages) == 1
    assert client.transport.get_write_buffer_size() > 0  # the client cannot write it all
    session.release.set()
    await until(lambda: len(session.messages) == len(messages), within=10)
    assert session.messages == messages
    assert not connection._rx_paused
    await client.close()
    await asyncio.wait_for(connection.wait_closed(), 5)


async def test_a_close_frame_hands_over_to_websockets(server) -> None:
    port, connections, session = server
    session.release.set()
    reader, writer = await open_client(port)
    close = struct.pack("!BB", 0x88, 0x80 | 5) + b"\x00\x00\x00\x00" + b"\x0f\xa0bye"
    writer.write(masked_text(b"one") + masked_text(b"two") + close + masked_text(b"late"))
    echo = await asyncio.wait_for(reader.readexactly(7), 5)
    assert echo == b"\x88\x05\x0f\xa0bye"  # 4000 "bye", echoed
    assert await asyncio.wait_for(reader.read(), 5) == b""  # then the server's EOF
    assert session.messages == [b"one", b"two"]
    [connection] = connections
    assert not connection.fast
    assert isinstance(connection.recv_messages, Assembler)  # made for websockets' reads
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    await asyncio.wait_for(connection.wait_closed(), 5)
    assert connection.close_code == 4000


async def test_a_lost_connection_ends_the_handler_quietly(server, caplog) -> None:
    port, connections, session = server
    session.release.set()
    _, writer = await open_client(port)
    writer.write(masked_text(b"one") + masked_text(b"two")[:4])  # then the TCP end
    writer.transport.abort()
    await until(lambda: bool(connections) and connections[0].state is State.CLOSED, within=5)
    await asyncio.wait_for(connections[0].wait_closed(), 5)
    await until(lambda: not connections[0].server.handler_tasks, within=5)
    assert session.messages == [b"one"]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_an_idle_connection_stays_small(server) -> None:
    # websockets' Connection sets 27 attributes; past 30 an instance __dict__ no longer
    # shares its keys (1.3 KiB more each). No Assembler while the fast path reads.
    port, connections, session = server
    _, writer = await open_client(port)
    writer.write(masked_text(b"hello"))
    await asyncio.wait_for(session.busy.wait(), 5)
    [connection] = connections
    assert connection.fast
    assert len(vars(connection)) <= 30
    assert isinstance(connection.drain_waiters, list)
    assert not isinstance(connection.recv_messages, Assembler)
    session.release.set()
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    await asyncio.wait_for(connection.wait_closed(), 5)
