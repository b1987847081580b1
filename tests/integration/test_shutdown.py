"""Graceful shutdown of a gateway subprocess: SIGTERM / SIGINT drain (RECEIPTs due go
out, then ERROR "server shutting down" and close 1001, exit 0 within shutdown_timeout);
a second signal exits at once."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import time

import pytest

from tests.support.security import GatewayProcess
from tests.support.tcpclient import connect_tcp
from tests.support.wsclient import connect_ws


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_drain_then_exit_0(sig, amqp, unique):
    queue = f"{unique}-drain"
    await amqp.declare_queue(queue)
    gw = await GatewayProcess.start("--shutdown-timeout", "5", "--tcp-port", "0")
    try:
        tcp_event = await gw.wait_for_event("listening")  # the second: TCP
        tcp_port = int(tcp_event["url"].rsplit(":", 1)[1])
        ws = await connect_ws(gw.url)
        await ws.connect_stomp()
        tcp = await connect_tcp("127.0.0.1", tcp_port)
        await tcp.connect_stomp()
        idle = await connect_ws(gw.url)  # never sends CONNECT
        # SENDs whose RECEIPTs are still due when the signal arrives.
        frames = b"".join(
            f"SEND\ndestination:/amq/queue/{queue}\nreceipt:r{i}\n\nm{i}\x00".encode()
            for i in range(50)
        )
        await ws.send_raw(frames)
        started = time.monotonic()
        gw.signal(sig)
        for client in (ws, tcp, idle):
            code, reason = await client.recv_close(timeout=10)
            frames_seen = client.drained_frames
            assert [f.command for f in frames_seen][-1] == "ERROR"
            error = frames_seen[-1]
            assert (error.header("message"), error.text) == (
                "server shutting down",
                "The gateway is shutting down\n",
            )
            assert (code, reason) == ((None, "") if client is tcp else (1001, "server shutting down"))
        receipts = [f.header("receipt-id") for f in ws.drained_frames if f.command == "RECEIPT"]
        assert receipts == [f"r{i}" for i in range(50)]
        assert await gw.wait(timeout=10) == 0
        assert time.monotonic() - started < 5
        assert (await amqp.channel.declare_queue(queue, passive=True)).declaration_result.message_count == 50
        assert any(e.get("event") == "stopped" for e in gw.events)
    finally:
        await gw.kill()


async def test_second_signal_exits_at_once():
    gw = await GatewayProcess.start("--shutdown-timeout", "30")
    try:
        # A client that stops reading and never answers the close handshake keeps the
        # drain busy (up to the close timeout).
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        gw.signal(signal.SIGTERM)
        await gw.wait_for_event("shutting down")
        assert gw.proc.returncode is None
        started = time.monotonic()
        gw.signal(signal.SIGTERM)
        assert await gw.wait(timeout=5) == 1
        assert time.monotonic() - started < 2
        assert any(e.get("event") == "second signal: exiting now" for e in gw.events)
        writer.close()
    finally:
        await gw.kill()
