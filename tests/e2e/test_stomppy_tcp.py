"""stomp.py over plain TCP against the gateway's TCP port (as against rabbitmq_stomp).

``stomp.Connection12([(host, port)], vhost="/")``: stomp.py 1.2 sends ``host:<host name>``
in CONNECT, which RabbitMQ (and so the gateway) reads as the virtual host. stomp.py is
blocking with its own receiver thread; every blocking call goes through
``asyncio.to_thread`` because the gateway under test runs in this event loop.
"""

# polling with short sleeps is bounded by asyncio.timeout
# ruff: noqa: ASYNC110

from __future__ import annotations

import asyncio
import queue
from typing import Any

import pytest
import stomp  # type: ignore[import-untyped]

pytestmark = pytest.mark.timeout(60)


class Frames(stomp.ConnectionListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.frames: queue.Queue[tuple[str, dict[str, str], str]] = queue.Queue()
        self.disconnected = 0
        self.heartbeats = 0
        self.heartbeat_timeouts = 0

    def on_connected(self, frame: Any) -> None:
        self.frames.put(("CONNECTED", dict(frame.headers), frame.body))

    def on_message(self, frame: Any) -> None:
        self.frames.put(("MESSAGE", dict(frame.headers), frame.body))

    def on_receipt(self, frame: Any) -> None:
        self.frames.put(("RECEIPT", dict(frame.headers), frame.body))

    def on_error(self, frame: Any) -> None:
        self.frames.put(("ERROR", dict(frame.headers), frame.body))

    def on_disconnected(self) -> None:
        self.disconnected += 1

    def on_heartbeat(self) -> None:
        self.heartbeats += 1

    def on_heartbeat_timeout(self) -> None:
        self.heartbeat_timeouts += 1

    async def next(self, within: float = 10) -> tuple[str, dict[str, str], str]:
        return await asyncio.to_thread(self.frames.get, True, within)


def tcp_connection(port: int, **kwargs: Any) -> tuple[Any, Frames]:
    conn = stomp.Connection12([("127.0.0.1", port)], reconnect_attempts_max=1, **kwargs)
    frames = Frames()
    conn.set_listener("frames", frames)
    return conn, frames


async def test_stomppy_tcp_round_trip(gateway_factory, amqp, unique):
    gw = await gateway_factory(tcp_port=0)
    destination = f"/queue/{amqp.track_queue(unique)}"
    conn, frames = tcp_connection(gw.server.tcp_port, vhost="/")
    await asyncio.to_thread(conn.connect, "guest", "guest", wait=True)
    try:
        command, headers, _ = await frames.next()
        assert command == "CONNECTED"
        assert headers["version"] == "1.2"
        assert headers["server"].startswith("stomp-gateway/")

        await asyncio.to_thread(
            conn.subscribe, destination, "s1", ack="client-individual", receipt="sub"
        )
        assert await frames.next() == ("RECEIPT", {"receipt-id": "sub"}, "")
        await asyncio.to_thread(
            conn.send, destination, "héllo over tcp", content_type="text/plain", receipt="snd"
        )
        got = [await frames.next(), await frames.next()]
        assert ("RECEIPT", {"receipt-id": "snd"}, "") in got
        command, headers, body = next(f for f in got if f[0] == "MESSAGE")
        assert body == "héllo over tcp"
        assert headers["subscription"] == "s1"
        assert headers["content-type"] == "text/plain"
        assert headers["ack"] == headers["message-id"]
        await asyncio.to_thread(conn.ack, headers["ack"], receipt="ack")
        assert await frames.next() == ("RECEIPT", {"receipt-id": "ack"}, "")
        assert await amqp.message_count(unique) == 0
    finally:
        await asyncio.to_thread(conn.disconnect, receipt="bye")
    assert await frames.next() == ("RECEIPT", {"receipt-id": "bye"}, "")
    assert frames.disconnected == 1


async def test_stomppy_tcp_heart_beats_both_ways(gateway_factory):
    # heartbeats=(500, 500): stomp.py beats every 500 ms and expects ours; the gateway
    # rounds to whole seconds (RabbitMQ): CONNECTED says 1000,1000. Nobody times out.
    gw = await gateway_factory(tcp_port=0)
    conn, frames = tcp_connection(gw.server.tcp_port, vhost="/", heartbeats=(500, 500))
    await asyncio.to_thread(conn.connect, "guest", "guest", wait=True)
    try:
        command, headers, _ = await frames.next()
        assert (command, headers["heart-beat"]) == ("CONNECTED", "1000,1000")
        # Five of the gateway's beats (one per 500 ms): more than two of its 1 s checks
        # of the client's beats have passed, so the client's beats were counted.
        # (a generous deadline: on a loaded 2-core CI box the loop can lag; what is
        # asserted is that beats flow both ways and nobody times out)
        async with asyncio.timeout(15):
            while frames.heartbeats < 5:
                await asyncio.sleep(0.05)
        assert conn.is_connected()
        assert frames.heartbeat_timeouts == 0
        assert len(gw.server.sessions) == 1
    finally:
        await asyncio.to_thread(conn.disconnect)


async def test_stomppy_tcp_bad_vhost_is_an_error(gateway_factory):
    # Without vhost="/", stomp.py sends host:127.0.0.1 (RabbitMQ reads it as the vhost).
    gw = await gateway_factory(tcp_port=0)
    conn, frames = tcp_connection(gw.server.tcp_port)
    await asyncio.to_thread(conn.connect, "guest", "guest", wait=False)
    try:
        command, headers, body = await frames.next()
        assert (command, headers["message"]) == ("ERROR", "Bad CONNECT")
        assert body == "Virtual host '127.0.0.1' access denied"
    finally:
        await asyncio.to_thread(conn.disconnect)
