"""Server: listeners, the registry of live sessions, and graceful shutdown.

Modelled on uvicorn's Server: ``start()`` binds the listeners (WebSocket; plain STOMP
over TCP and TLS when ``tcp_port`` / ``tcp_ssl_port`` are set), ``stop()`` stops
accepting, tells every client "server shutting down" (ERROR, then close 1001; on TCP
the ERROR then the end of the stream), waits a bounded time for them to go, then
cancels what is left. Sessions of every transport are in ``sessions``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve

from .broker.amqp import AmqpBroker
from .broker.base import Broker
from .errors import StompError
from .http import make_process_request
from .logging import get_logger
from .session import Session, error_frame
from .settings import Settings
from .transport.tcp import TcpListener, make_ssl_context
from .transport.websocket import select_subprotocol, serve_connection

log = get_logger("gateway.server")

CLOSE_GOING_AWAY = 1001


class Server:
    def __init__(self, settings: Settings, broker: Broker | None = None) -> None:
        self.settings = settings
        self.broker: Broker = broker or AmqpBroker(
            settings.amqp_url, connect_timeout=settings.connect_timeout
        )
        self.sessions: set[Session] = set()
        self.port: int = settings.port
        self.tcp_port: int | None = None  # bound STOMP-over-TCP port, when enabled
        self.tcp_ssl_port: int | None = None  # bound STOMP-over-TLS port, when enabled
        self._ws: WsServer | None = None
        self._tcp: list[TcpListener] = []
        self._stopping = asyncio.Event()

    def ready(self) -> bool:
        return self._ws is not None and not self._stopping.is_set()

    async def start(self) -> None:
        s = self.settings

        async def handler(ws: ServerConnection) -> None:
            await serve_connection(self, ws)

        self._ws = await serve(
            handler,
            s.host,
            s.port,
            select_subprotocol=select_subprotocol,
            process_request=make_process_request(self),
            compression="deflate" if s.compress else None,
            max_size=s.max_frame_size_unauthenticated + 4096,
            ping_interval=None,  # STOMP heart-beats do this job; clients may ping us
            server_header=None,
            open_timeout=10,
            close_timeout=5,
        )
        sock = next(iter(self._ws.sockets))
        self.port = sock.getsockname()[1]
        log.info("listening", url=f"ws://{s.host}:{self.port}{s.ws_path}")
        try:
            await self._start_tcp()
        except BaseException:  # e.g. the TCP port is taken: release what is bound
            for listener in self._tcp:
                listener.close()
            ws, self._ws = self._ws, None
            ws.close()
            await ws.wait_closed()
            raise

    async def _start_tcp(self) -> None:
        s = self.settings
        host = s.tcp_host or s.host
        if s.tcp_port is not None:
            listener = TcpListener(self, host, s.tcp_port)
            self._tcp.append(listener)
            self.tcp_port = await listener.start()
        if s.tcp_ssl_port is not None:
            listener = TcpListener(self, host, s.tcp_ssl_port, make_ssl_context(s))
            self._tcp.append(listener)
            self.tcp_ssl_port = await listener.start()

    async def stop(self, grace: float = 10.0) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._ws is not None:
            self._ws.close(close_connections=False)
        for listener in self._tcp:
            listener.close()
        goodbye = error_frame(StompError("server shutting down", "The gateway is shutting down\n"))

        async def say_goodbye(session: Session) -> None:
            session.transport.send_frame(goodbye)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    session.transport.close(CLOSE_GOING_AWAY, "server shutting down"), 2
                )

        await asyncio.gather(*(say_goodbye(session) for session in list(self.sessions)))
        if self._ws is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ws.wait_closed(), grace)
        for listener in self._tcp:
            await listener.wait_closed(grace)
        await self.broker.close()

    async def serve_forever(self) -> None:
        await self.start()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down", sessions=len(self.sessions))
        await self.stop()

    def __repr__(self) -> str:
        return (
            f"Server(port={self.port}, tcp_port={self.tcp_port}, "
            f"tcp_ssl_port={self.tcp_ssl_port}, sessions={len(self.sessions)})"
        )


def run(settings: Settings) -> None:
    runner: Any = asyncio.run
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        pass
    runner(Server(settings).serve_forever())
