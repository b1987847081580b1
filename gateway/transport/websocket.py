"""STOMP over WebSocket (websockets' asyncio server), as rabbitmq_web_stomp serves it.

* Subprotocols: of the offered ``v10.stomp``/``v11.stomp``/``v12.stomp`` the highest is
  echoed; anything else offered, or nothing, is accepted without a subprotocol
  (RabbitMQ). The subprotocol does not constrain the STOMP version.
* Inbound text and binary messages both feed the session's parser; a frame may span
  messages and a message may hold many frames.
* Outbound, every STOMP frame and every heart-beat is its own message, text or binary
  as ``ws_frame`` says. Frames go through a queue drained by one writer task, so the
  session never blocks on a slow socket.
* Only ``ws_path`` (and ``ws_path/``) upgrades; ``http.py`` answers other paths.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from ..logging import get_logger
from ..session import Session, State

if TYPE_CHECKING:
    from ..server import Server

log = get_logger("gateway.websocket")

STOMP_SUBPROTOCOLS = ("v12.stomp", "v11.stomp", "v10.stomp")  # best first


def select_subprotocol(
    _connection: ServerConnection, offered: Sequence[Subprotocol]
) -> Subprotocol | None:
    """The highest STOMP subprotocol offered, or None (accept without one)."""
    for candidate in STOMP_SUBPROTOCOLS:
        if candidate in offered:
            return Subprotocol(candidate)
    return None


class WebSocketTransport:
    """A session's view of one WebSocket: queue frames out, close after flushing."""

    def __init__(self, ws: ServerConnection, *, text: bool) -> None:
        self.ws = ws
        self.text = text
        self._queue: deque[bytes] = deque()
        self._ready = asyncio.Event()
        self._closing = False
        self._writer = asyncio.ensure_future(self._write_loop())

    def send_frame(self, data: bytes) -> None:
        if not self._closing:
            self._queue.append(data)
            self._ready.set()

    async def _write_loop(self) -> None:
        queue, ws, text = self._queue, self.ws, self.text
        try:
            while True:
                await self._ready.wait()
                self._ready.clear()
                while queue:
                    await ws.send(queue.popleft(), text=text)
                if self._closing:
                    return
        except ConnectionClosed:
            queue.clear()

    async def close(self, code: int, reason: str) -> None:
        """Send what is queued, then the close frame."""
        if not self._closing:
            self._closing = True
            self._ready.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._writer), timeout=10)
            except TimeoutError:
                self._writer.cancel()
        await self.ws.close(code, reason)

    def abort(self) -> None:
        self._closing = True
        self._writer.cancel()


async def serve_connection(server: Server, ws: ServerConnection) -> None:
    """Run one WebSocket connection: feed its messages to a new Session."""
    settings = server.settings
    host, port = ws.remote_address[:2] if ws.remote_address else ("", 0)
    transport = WebSocketTransport(ws, text=settings.ws_frame == "text")
    session = Session(
        settings, server.broker, transport, client_host=str(host), peer=f"{host}:{port}"
    )
    server.sessions.add(session)
    authenticated = False
    try:
        async for message in ws:
            data = message.encode() if isinstance(message, str) else message
            await session.data_received(data)
            if not authenticated and session.state is State.CONNECTED:
                # RabbitMQ 4.2.6+: the per-message cap grows after login.
                authenticated = True
                ws.protocol.max_message_size = settings.max_frame_size + 4096
    except ConnectionClosed:
        pass
    finally:
        server.sessions.discard(session)
        await session.connection_lost()
        transport.abort()
