"""STOMP over plain TCP and TLS, as rabbitmq_stomp serves it on 61613 / 61614.

The same Session and codec as the WebSocket side; only the byte moving differs.

* In: ``data_received`` only queues the bytes; one task per connection feeds them to
  ``Session.data_received`` in order, a batch at a time (everything that arrived while
  the session was busy, joined). While more than ``READ_HIGH_WATER`` bytes wait, reading
  pauses (``pause_reading``), so a slow broker slows the client down instead of
  buffering its frames. Arriving bytes count as liveness for the heart-beat monitor
  at once (rabbitmq_stomp watches the socket's receive counter).
* Out: ``send_frame`` collects frames and writes them once per event-loop turn (one
  ``send`` for a burst of MESSAGEs). The transport's write buffer has a high-water mark
  (``write_high_water``); above it no more client input is fed to the session until
  the client reads, and the session takes no more deliveries from the broker.
* Heart-beats are bare EOLs in the stream; the session produces and checks them.
* Close: queued frames are flushed, then FIN (``write_eof``; TLS: close_notify); the
  socket is closed when the client closes its side, or after ``CLOSE_LINGER``. Input
  arriving meanwhile is read and dropped, so the kernel never answers it with a RST that
  could destroy the last frames. The close code and reason are WebSocket notions and
  have no wire form here: a framing error (1007) ends the connection with no ERROR frame,
  which is what rabbitmq_stomp does (it logs the parse error and closes).
* A client that half-closes (EOF) after its last frame still gets the answers: the
  queued input is handled, confirms of its SENDs are awaited (bounded), then we close.
  rabbitmq_stomp closes at once on EOF and loses them.
* ``proxy_protocol`` (plain listener only: the header would precede TLS): the first
  bytes must be a PROXY v1/v2 header, whose source becomes the client's address; no
  session exists until it has arrived (bounded by ``PROXY_HEADER_TIMEOUT``).
* Connection limits (``gateway.limits``): a refused client gets the ERROR, then FIN.
  Output past ``max_outbound_buffer`` unsent bytes (a client that does not read)
  drops the connection, counted as a limit breach.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from typing import TYPE_CHECKING, cast

import structlog

from ..limits import breach
from ..logging import get_logger
from ..metrics import METRICS
from ..proxy import ProxyHeaderError, ProxyHeaderReader
from ..session import Session, error_frame
from ..settings import Settings

if TYPE_CHECKING:
    from ..server import Server

log = get_logger("gateway.tcp")

READ_HIGH_WATER = 256 * 1024  # queued inbound bytes before reading pauses
CLOSE_LINGER = 2.0  # seconds to wait for the client to close after our FIN
CLOSE_TIMEOUT = 10.0  # then seconds for a graceful close before abort
EOF_CONFIRM_WAIT = 10.0  # after a client EOF: wait this long for its SEND receipts
PROXY_HEADER_TIMEOUT = 10.0  # seconds for the PROXY header to arrive


def make_ssl_context(settings: Settings) -> ssl.SSLContext:
    """A server context from the ``ssl_*`` settings (rabbitmq.conf ``ssl_options.*``)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    assert settings.ssl_certfile is not None and settings.ssl_keyfile is not None
    password = settings.ssl_password.get_secret_value() if settings.ssl_password else None
    ctx.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile, password)
    if settings.ssl_cacertfile is not None:
        ctx.load_verify_locations(cafile=settings.ssl_cacertfile)
    if settings.ssl_verify == "peer":
        # verify_peer asks for a certificate and checks it if one is given;
        # fail_if_no_peer_cert also refuses clients that send none (Erlang ssl).
        ctx.verify_mode = (
            ssl.CERT_REQUIRED if settings.ssl_fail_if_no_peer_cert else ssl.CERT_OPTIONAL
        )
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class StompTcpProtocol(asyncio.Protocol):
    """One client connection: the session's ``Transport`` and the socket's protocol."""

    def __init__(self, server: Server, listener: TcpListener) -> None:
        self.server = server
        self.listener = listener
        self.loop = asyncio.get_running_loop()
        self.session: Session | None = None
        self.transport: asyncio.Transport | None = None
        self._inbox: deque[bytes] = deque()
        self._inbox_size = 0
        self._wake = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._lost = asyncio.Event()
        self._eof = False  # the client will send nothing more
        self._reading_paused = False
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._write_closed = False  # FIN sent or socket gone: drop further output
        self._closing = False
        self._close_timer: asyncio.TimerHandle | None = None
        self.worker: asyncio.Task[None] | None = None
        self.client_host: str | None = None  # set once counted by the limiter
        self._max_out = server.settings.max_outbound_buffer
        self._proxy: ProxyHeaderReader | None = None
        self._proxy_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is not an asyncio.Transport subclass: no isinstance).
        self.transport = transport = cast(asyncio.Transport, transport)
        # write_high_water: unsent bytes before client input stops and the session
        # takes no more deliveries from the broker (resumed below a quarter of it).
        high = self.server.settings.write_high_water
        transport.set_write_buffer_limits(high=high, low=high // 4)
        METRICS.connections_total.inc(self.listener.name)
        if self.listener.proxy_protocol:
            self._proxy = ProxyHeaderReader()
            self._proxy_timer = self.loop.call_later(PROXY_HEADER_TIMEOUT, transport.abort)
            return
        peername = transport.get_extra_info("peername")
        host, port = (str(peername[0]), int(peername[1])) if peername else ("", 0)
        self._start_session(host, port)

    def _start_session(self, host: str, port: int) -> None:
        assert self.transport is not None
        refused = self.server.limiter.acquire(host)
        if refused is not None:
            log.info("connection refused", peer=f"{host}:{port}", reason=refused.body)
            self._closing = self._write_closed = True
            self.transport.write(error_frame(refused))
            self.transport.close()
            return
        self.client_host = host
        METRICS.connections_open.inc(self.listener.name)
        session = Session(
            self.server.settings,
            self.server.broker,
            self,
            client_host=host,
            peer=f"{host}:{port}",
            transport_name=self.listener.name,
            rules=self.server.rules,
        )
        self.session = session
        self.server.sessions.add(session)
        self.listener.connections.add(self)
        self.worker = self.loop.create_task(self._run(session))

    def _proxy_header(self, data: bytes) -> bytes | None:
        """Feed the PROXY header reader; the bytes after the header once it is complete."""
        assert self._proxy is not None and self.transport is not None
        try:
            result = self._proxy.feed(data)
        except ProxyHeaderError as exc:
            log.info("bad proxy header", reason=str(exc))
            self._proxy = None
            self._closing = self._write_closed = True
            self.transport.abort()
            return None
        if result is None:
            return None
        self._proxy = None
        if self._proxy_timer is not None:
            self._proxy_timer.cancel()
        source, rest = result
        if source is None:  # LOCAL / UNKNOWN: the socket's own peer
            peername = self.transport.get_extra_info("peername")
            source = (str(peername[0]), int(peername[1])) if peername else ("", 0)
        self._start_session(*source)
        return rest

    def data_received(self, data: bytes) -> None:
        if self._proxy is not None:
            rest = self._proxy_header(data)
            if not rest:
                return
            data = rest
        if self._closing or self.session is None:
            return  # closing: drain and drop, so the kernel has nothing to RST about
        self.session.note_activity()
        self._inbox.append(data)
        self._inbox_size += len(data)
        self._wake.set()
        if self._inbox_size >= READ_HIGH_WATER and not self._reading_paused:
            self._pause_reading()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake.set()
        # Keep the socket open for our answers unless we are closing anyway (TLS
        # transports cannot half-close: the return value is ignored there).
        return not self._closing and self.transport is not None and self.transport.can_write_eof()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
        if self._proxy_timer is not None:
            self._proxy_timer.cancel()
        if self.client_host is not None:
            self.server.limiter.release(self.client_host)
            METRICS.connections_open.dec(self.listener.name)
            self.client_host = None
        self._eof = True
        self._write_closed = True
        self._out.clear()
        self._lost.set()
        self._writable.set()
        self._wake.set()

    def pause_writing(self) -> None:
        self._writable.clear()
        if self.session is not None:
            self.session.transport_congested(True)

    def resume_writing(self) -> None:
        self._writable.set()
        if self.session is not None:
            self.session.transport_congested(False)

    # ------------------------------------------------------------------ session.Transport
    def send_frame(self, data: bytes) -> None:
        if self._write_closed:
            return
        if self._max_out and self.transport is not None:
            if self.transport.get_write_buffer_size() > self._max_out:
                self._overflow()
                return
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        out = self._out
        if not out or self._write_closed or self.transport is None:
            return
        self._out = []
        self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    async def close(self, code: int, reason: str) -> None:
        """Flush, then end the stream. ``code``/``reason`` have no TCP form (see top)."""
        transport = self.transport
        if transport is None or self._lost.is_set():
            return
        if not self._closing:
            self._closing = True
            self._flush()
            self._write_closed = True
            self._inbox.clear()
            self._inbox_size = 0
            if self._reading_paused:
                self._resume_reading()
            if self._eof or not transport.can_write_eof():
                transport.close()  # flushes; TLS sends close_notify
            else:
                transport.write_eof()  # FIN once the buffer is sent
            # Timers, not this coroutine, bound the close: a caller may stop waiting.
            self._close_timer = self.loop.call_later(CLOSE_LINGER, self._linger_expired)
        await self._lost.wait()

    def _linger_expired(self) -> None:
        """The client did not close its side in time: close, then abort if stuck."""
        assert self.transport is not None
        self.transport.close()
        self._close_timer = self.loop.call_later(CLOSE_TIMEOUT, self.transport.abort)

    def abort(self) -> None:
        self._closing = self._write_closed = True
        if self.transport is not None:
            self.transport.abort()

    def _overflow(self) -> None:
        """The client does not read: ``max_outbound_buffer`` is exceeded, drop it."""
        breach("max_outbound_buffer")
        if self.session is not None:
            self.session.close_reason = "max_outbound_buffer"
        self._out.clear()
        self.abort()

    # ------------------------------------------------------------------ internals
    def _pause_reading(self) -> None:
        assert self.transport is not None
        self._reading_paused = True
        with contextlib.suppress(RuntimeError):  # already closing
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        assert self.transport is not None
        self._reading_paused = False
        with contextlib.suppress(RuntimeError):
            self.transport.resume_reading()

    async def _run(self, session: Session) -> None:
        """Feed queued input to the session in order; end the session with the socket."""
        structlog.contextvars.bind_contextvars(
            session=session.id, peer=session.peer, transport=self.listener.name
        )
        try:
            while True:
                if not self._inbox:
                    if self._eof:
                        break
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                if not self._writable.is_set():
                    await self._writable.wait()  # the client is not reading: wait for it
                    continue
                inbox = self._inbox
                data = inbox.popleft() if len(inbox) == 1 else b"".join(inbox)
                inbox.clear()
                self._inbox_size = 0
                if self._reading_paused and not self._closing:
                    self._resume_reading()
                if not session.closed:
                    await session.data_received(data)
            if not session.closed and not self._lost.is_set():
                # The client half-closed after its last frame: let its answers out.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(session.confirms_drained.wait(), EOF_CONFIRM_WAIT)
        except Exception:
            log.exception("tcp connection failed", peer=session.peer)
        finally:
            self.server.sessions.discard(session)
            try:
                await session.connection_lost()
                await self.close(1000, "client closed")
            finally:
                self.listener.connections.discard(self)


class TcpListener:
    """One listening socket (plain or TLS) and the connections it accepted."""

    def __init__(
        self, server: Server, host: str, port: int, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.server = server
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.connections: set[StompTcpProtocol] = set()
        self._server: asyncio.Server | None = None
        # A PROXY header precedes TLS, so it is read on the plain listener only.
        self.proxy_protocol = server.settings.proxy_protocol and ssl_context is None

    @property
    def scheme(self) -> str:
        return "stomp+ssl" if self.ssl_context is not None else "stomp"

    @property
    def name(self) -> str:
        """The transport label in metrics and logs: ``tcp`` or ``tls``."""
        return "tls" if self.ssl_context is not None else "tcp"

    async def start(self) -> int:
        """Bind and listen; the bound port (``port=0`` picks a free one)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: StompTcpProtocol(self.server, self),
            self.host,
            self.port,
            ssl=self.ssl_context,
            backlog=128,  # stomp.tcp_listen_options.backlog
            reuse_address=True,
            reuse_port=self.server.reuse_port or None,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("listening", url=f"{self.scheme}://{self.host}:{self.port}")
        return self.port

    def close(self) -> None:
        """Stop accepting; open connections carry on."""
        if self._server is not None:
            self._server.close()

    async def wait_closed(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for every connection to end, then abort the rest."""
        workers = [c.worker for c in self.connections if c.worker is not None]
        if workers:
            _, pending = await asyncio.wait(workers, timeout=grace)
            for connection in list(self.connections):
                connection.abort()
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 1)
