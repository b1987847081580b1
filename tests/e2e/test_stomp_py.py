"""Python users: stomp.py's WebSocket transport against the gateway.

``stomp.WSStompConnection([(host, port)], ws_path="/ws", vhost="/")``. stomp.py is
blocking and runs its own receiver thread; every blocking call here goes through
``asyncio.to_thread`` because the gateway under test runs in this event loop.

Note ``vhost="/"``: stomp.py 1.2 sends ``host:<the host name>`` in CONNECT, and RabbitMQ
(so the gateway too) reads ``host`` as the virtual host: without it the login fails with
"Virtual host '127.0.0.1' access denied" (tested below).
"""

from __future__ import annotations

import asyncio
import json
import queue
from typing import Any
from urllib.parse import urlsplit

import pytest
import stomp  # type: ignore[import-untyped]

from tests.e2e.helpers import run_example

pytestmark = pytest.mark.timeout(60)


class Collector(stomp.ConnectionListener):  # type: ignore[misc]
    """Every frame stomp.py hands us, in arrival order."""

    def __init__(self) -> None:
        self.frames: queue.Queue[tuple[str, dict[str, str], str]] = queue.Queue()

    def on_connected(self, frame: Any) -> None:
        self.frames.put(("CONNECTED", dict(frame.headers), frame.body))

    def on_message(self, frame: Any) -> None:
        self.frames.put(("MESSAGE", dict(frame.headers), frame.body))

    def on_receipt(self, frame: Any) -> None:
        self.frames.put(("RECEIPT", dict(frame.headers), frame.body))

    def on_error(self, frame: Any) -> None:
        self.frames.put(("ERROR", dict(frame.headers), frame.body))

    async def next(self, within: float = 10) -> tuple[str, dict[str, str], str]:
        """The next frame, waiting at most ``within`` seconds (queue.Empty after)."""
        return await asyncio.to_thread(self.frames.get, True, within)


def ws_connection(gateway_url: str, **kwargs: Any) -> tuple[Any, Collector]:
    parts = urlsplit(gateway_url)
    conn = stomp.WSStompConnection(
        [(parts.hostname, parts.port)], ws_path=parts.path, reconnect_attempts_max=1, **kwargs
    )
    collector = Collector()
    conn.set_listener("collector", collector)
    return conn, collector


async def test_stomp_py_websocket_connection(
    gateway_url: str, exchange: str, rpc_queue: str, unique: str, responder: Any
) -> None:
    await run_example("python", exchange, "broadcast", '{"text":"declares the exchange"}')
    rpc = await responder(count=1)
    conn, frames = ws_connection(gateway_url, vhost="/")
    await asyncio.to_thread(conn.connect, "guest", "guest", wait=True)
    try:
        command, headers, _ = await frames.next()
        assert command == "CONNECTED"
        assert headers["version"] == "1.2"
        assert headers["server"].startswith("stomp-gateway/")

        # Per-user notification pushed by the Python example.
        destination = f"/exchange/{exchange}/user.42"
        await asyncio.to_thread(conn.subscribe, destination, "n", ack="auto", receipt="sub-n")
        assert await frames.next() == ("RECEIPT", {"receipt-id": "sub-n"}, "")
        out = await run_example("python", exchange, "user", "42", '{"text":"hi from Python"}')
        assert out == f"sent to {exchange}/user.42 (routed)\n"
        command, headers, body = await frames.next()
        assert (command, body) == ("MESSAGE", '{"text":"hi from Python"}')
        assert headers["subscription"] == "n"
        assert headers["destination"] == destination
        assert headers["content-type"] == "application/json"
        assert headers["persistent"] == "true"
        assert headers["app-id"] == "examples/python/notify.py"

        # A topic: stomp.py both ends.
        topic = f"/topic/chat.{unique}"
        await asyncio.to_thread(conn.subscribe, topic, "chat", ack="auto", receipt="sub-chat")
        assert await frames.next() == ("RECEIPT", {"receipt-id": "sub-chat"}, "")
        await asyncio.to_thread(
            conn.send,
            topic,
            json.dumps({"from": "stomp.py", "text": "hello"}),
            content_type="application/json",
        )
        command, headers, body = await frames.next()
        assert command == "MESSAGE"
        assert headers["subscription"] == "chat"
        assert json.loads(body) == {"from": "stomp.py", "text": "hello"}

        # Request / reply through a temp queue (no subscription: the reply carries
        # subscription:/temp-queue/rpc).
        await asyncio.to_thread(
            conn.send,
            f"/queue/{rpc_queue}",
            "ping",
            headers={"reply-to": "/temp-queue/rpc", "correlation-id": "c-1"},
        )
        command, headers, body = await frames.next()
        assert (command, body) == ("MESSAGE", '{"reply":"PING","request":"ping"}')
        assert headers["subscription"] == "/temp-queue/rpc"
        assert headers["correlation-id"] == "c-1"
        assert headers["destination"].startswith("/queue/amq.gen-")
        assert await rpc.readline() == "replied c-1"
    finally:
        await asyncio.to_thread(conn.disconnect, receipt="bye")
    assert await frames.next() == ("RECEIPT", {"receipt-id": "bye"}, "")
    assert frames.frames.empty()


async def test_stomp_py_without_vhost_sends_its_host_name_as_vhost(gateway_url: str) -> None:
    """As with rabbitmq_web_stomp: stomp.py's default ``host`` header is a vhost name."""
    conn, frames = ws_connection(gateway_url)
    with pytest.raises(stomp.exception.ConnectFailedException):
        await asyncio.to_thread(conn.connect, "guest", "guest", wait=True)
    command, headers, body = await frames.next()
    assert (command, headers["message"]) == ("ERROR", "Bad CONNECT")
    assert body == "Virtual host '127.0.0.1' access denied"
    await asyncio.to_thread(conn.disconnect)
