"""Server: listeners, the registry of live sessions, and graceful shutdown.

Modelled on uvicorn's Server: ``start()`` binds the listeners (WebSocket; wss when
``ws_ssl_port`` is set; plain STOMP over TCP and TLS when ``tcp_port`` /
``tcp_ssl_port`` are set; a metrics-only HTTP port when ``metrics_port`` is set).
Sessions of every transport are in ``sessions``.

Shutdown (``stop()``, on SIGTERM or SIGINT): stop accepting; every session stops
handling input, waits for its outstanding publisher confirms (so the RECEIPTs that
are due go out), then gets ERROR "server shutting down" and a close 1001 (TCP: the
ERROR, then the end of the stream); the broker connections are closed. All of it is
bounded by ``shutdown_timeout``; what is left then is cancelled, and the process
exits 0. A second signal during the drain exits at once (status 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import sys
from typing import Any

from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve

from .broker.base import Broker
from .broker.pool import AmqpBroker
from .http import make_process_request, serve_metrics
from .limits import ConnectionLimiter
from .logging import get_logger
from .metrics import METRICS
from .proxy import TrustedProxies
from .rules import Rules
from .session import Session
from .settings import Settings
from .transport.tcp import TcpListener, make_ssl_context
from .transport.websocket import (
    GatewayConnection,
    ProxyServerConnection,
    select_subprotocol,
    serve_connection,
)

log = get_logger("gateway.server")

CLOSE_GOING_AWAY = 1001


class Server:
    # Several worker processes share the ports (gateway.workers): SO_REUSEPORT.
    reuse_port = False

    def __init__(self, settings: Settings, broker: Broker | None = None) -> None:
        self.settings = settings
        self.broker: Broker = broker or AmqpBroker.from_settings(settings)
        self.sessions: set[Session] = set()
        self.limiter = ConnectionLimiter(settings)
        self.rules = Rules(settings)
        self.trusted_proxies = TrustedProxies(settings.trusted_proxies)
        self.port: int = settings.port
        self.ws_ssl_port: int | None = None  # bound wss port, when enabled
        self.tcp_port: int | None = None  # bound STOMP-over-TCP port, when enabled
        self.tcp_ssl_port: int | None = None  # bound STOMP-over-TLS port, when enabled
        self.metrics_port: int | None = None  # bound metrics-only HTTP port, when enabled
        self._ws: WsServer | None = None
        self._wss: WsServer | None = None
        self._tcp: list[TcpListener] = []
        self._metrics: asyncio.Server | None = None
        self._stopping = asyncio.Event()

    def ready(self) -> bool:
        """Listening, not shutting down, and the broker answers (its monitor says so)."""
        return self._ws is not None and not self._stopping.is_set() and self.broker.ready()

    async def start(self) -> None:
        s = self.settings
        METRICS.broker_up.collect = lambda: 1.0 if self.broker.ready() else 0.0
        self._ws = await self._serve_ws(s.port, None, "ws")
        self.port = next(iter(self._ws.sockets)).getsockname()[1]
        log.info("listening", url=f"ws://{s.host}:{self.port}{s.ws_path}")
        try:
            if s.ws_ssl_port is not None:
                self._wss = await self._serve_ws(s.ws_ssl_port, make_ssl_context(s), "wss")
                self.ws_ssl_port = next(iter(self._wss.sockets)).getsockname()[1]
                log.info("listening", url=f"wss://{s.host}:{self.ws_ssl_port}{s.ws_path}")
            await self._start_tcp()
            if s.metrics_port is not None:
                self._metrics = await serve_metrics(self, s.host, s.metrics_port)
                self.metrics_port = int(self._metrics.sockets[0].getsockname()[1])
                log.info("listening", url=f"http://{s.host}:{self.metrics_port}/metrics")
        except BaseException:  # e.g. a port is taken: release what is bound
            await self._close_listeners()
            for ws in (self._ws, self._wss):
                if ws is not None:
                    await ws.wait_closed()
            self._ws = self._wss = None
            raise
        # The first probe of the broker, then a background watch (readiness, the
        # circuit breaker); stopped by broker.close() in stop().
        await self.broker.start()

    async def _serve_ws(self, port: int, ssl_context: ssl.SSLContext | None, name: str) -> WsServer:
        s = self.settings

        async def handler(ws: ServerConnection) -> None:
            await serve_connection(self, ws, name)

        # PROXY headers precede TLS; on the wss listener they are not read (docs).
        proxied = s.proxy_protocol and ssl_context is None
        return await serve(
            handler,
            s.host,
            port,
            ssl=ssl_context,
            create_connection=ProxyServerConnection if proxied else GatewayConnection,
            select_subprotocol=select_subprotocol,
            process_request=make_process_request(self),
            compression="deflate" if s.compress else None,
            max_size=s.max_frame_size_unauthenticated + 4096,
            ping_interval=None,  # STOMP heart-beats do this job; clients may ping us
            server_header=None,
            open_timeout=10,
            close_timeout=5,
            reuse_port=self.reuse_port or None,
        )

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

    async def _close_listeners(self) -> None:
        for ws in (self._ws, self._wss):
            if ws is not None:
                ws.close(close_connections=False)
        for listener in self._tcp:
            listener.close()
        if self._metrics is not None:
            self._metrics.close()

    async def stop(self, grace: float | None = None) -> None:
        """Drain and close everything within ``grace`` (default ``shutdown_timeout``)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        grace = self.settings.shutdown_timeout if grace is None else grace
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        await self._close_listeners()
        sessions = list(self.sessions)
        if sessions:
            # Leave a little of the budget for the listeners and the broker below.
            await asyncio.gather(*(s.go_away(max(0.1, grace * 0.8)) for s in sessions))

        def left() -> float:
            return max(0.1, deadline - loop.time())

        for ws in (self._ws, self._wss):
            if ws is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ws.wait_closed(), left())
        for listener in self._tcp:
            await listener.wait_closed(left())
        if self._metrics is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._metrics.wait_closed(), left())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.broker.close(), left())

    async def serve_forever(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def second_signal() -> None:
            log.warning("second signal: exiting now", sessions=len(self.sessions))
            sys.stdout.flush()
            os._exit(1)

        def first_signal() -> None:
            stop.set()
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError):
                    loop.add_signal_handler(sig, second_signal)

        # Before start(): a signal while starting still gets a clean shutdown.
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, first_signal)
        await self.start()
        await stop.wait()
        log.info("shutting down", sessions=len(self.sessions))
        try:
            await asyncio.wait_for(self.stop(), self.settings.shutdown_timeout + 1)
        except TimeoutError:
            log.warning("shutdown timed out", sessions=len(self.sessions))
        log.info("stopped")

    def __repr__(self) -> str:
        return (
            f"Server(port={self.port}, ws_ssl_port={self.ws_ssl_port}, "
            f"tcp_port={self.tcp_port}, tcp_ssl_port={self.tcp_ssl_port}, "
            f"sessions={len(self.sessions)})"
        )


def run(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT: in this process, or in ``workers`` forked ones."""
    from .workers import Supervisor, raise_open_files_limit, worker_count

    raise_open_files_limit()
    count = worker_count(settings)
    if count <= 1:
        run_server(settings)
        return
    code = Supervisor(settings, count, lambda s: run_server(s, reuse_port=True)).run()
    if code:
        raise SystemExit(code)


def run_server(settings: Settings, *, reuse_port: bool = False) -> None:
    """One gateway process: uvloop when installed."""
    runner: Any = asyncio.run
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        pass
    server = Server(settings)
    server.reuse_port = reuse_port
    runner(server.serve_forever())
