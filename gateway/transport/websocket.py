"""STOMP over WebSocket (websockets' asyncio server), as rabbitmq_web_stomp serves it.

* Subprotocols: of the offered ``v10.stomp``/``v11.stomp``/``v12.stomp`` the highest is
  echoed; anything else offered, or nothing, is accepted without a subprotocol
  (RabbitMQ). The subprotocol does not constrain the STOMP version.
* Inbound text and binary messages both feed the session's parser; a frame may span
  messages and a message may hold many frames. The client's frames are read here
  (``GatewayConnection``, ``wsframes.FrameReader``), without extensions or with
  permessage-deflate (each data frame decoded by websockets' own negotiated extension
  object): whole messages go to the session as bytes, parsed when it asks for the
  next one, with at most ``READ_AHEAD`` bytes read while it is busy; refusals close
  as websockets would. Any other extension: websockets reads them (text is decoded,
  then re-encoded).
* Outbound, every STOMP frame and every heart-beat is its own message, text or binary
  as ``ws_frame`` says. ``send_frame`` never blocks: frames collect during one event
  loop turn and are then written with one socket write (a burst of MESSAGEs costs one
  ``send``). Without extensions the WebSocket frame headers are made here; with
  permessage-deflate websockets' protocol object encodes them (its compression state
  is per message, in order). Unsent output lives in the socket transport's buffer.
* Flow control: above ``write_high_water`` unsent bytes the session is told that its
  transport is congested (it stops taking deliveries from the broker: see
  ``gateway.broker.hotpath``) until the buffer drains below a quarter of it.
* Only ``ws_path`` (and ``ws_path/``) upgrades; ``http.py`` answers other paths and
  refuses foreign Origins (``allow_origins``) with 403.
* The client's address is the socket's peer, or the PROXY header's source
  (``proxy_protocol``: ``ProxyServerConnection`` strips the header before websockets
  parses the request), or, from a ``trusted_proxies`` peer, X-Forwarded-For
  (``gateway.proxy``). Connection limits (``gateway.limits``) are checked with it
  right after the upgrade: a refused client gets an ERROR and close 1013.
* Output a client does not read piles up in the socket buffer; past
  ``max_outbound_buffer`` unsent bytes the connection is dropped (close 1008, counted
  as a limit breach). Deliveries stop well before that (``write_high_water``).
  The input side does not wait for the output side here, so a client that writes
  without reading (each frame answered with a RECEIPT or an ERROR) hits that cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import structlog
from websockets.asyncio.messages import Assembler
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.protocol import CLOSED, OPEN
from websockets.typing import Subprotocol

from ..limits import CLOSE_POLICY_VIOLATION, CLOSE_TRY_AGAIN_LATER, breach
from ..logging import get_logger
from ..metrics import METRICS
from ..proxy import Address, ProxyHeaderError, ProxyHeaderReader
from ..session import Session, State, error_frame
from .wsframes import CLOSE, Control, FrameReader, WsFrameError

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


_SHORT = struct.Struct("!BB")
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")


def _frame_head(first: int, length: int) -> bytes:
    """An unmasked WebSocket frame header (RFC 6455 5.2) for a payload of ``length``."""
    if length < 126:
        return _SHORT.pack(first, length)
    if length < 65536:
        return _MEDIUM.pack(first, 126, length)
    return _LONG.pack(first, 127, length)


class WebSocketTransport:
    """A session's view of one WebSocket: queue frames out, close after flushing."""

    def __init__(
        self,
        ws: ServerConnection,
        *,
        text: bool,
        max_buffer: int = 0,
        high_water: int = 256 * 1024,
    ) -> None:
        self.ws = ws
        self.text = text
        self.max_buffer = max_buffer  # max_outbound_buffer; 0 = no limit
        self.session: Session | None = None
        self._first = 0x81 if text else 0x82  # FIN + text/binary opcode
        self._out: list[bytes] = []  # frames of this loop turn, not yet written
        self._out_bytes = 0
        self._scheduled = False
        self._closing = False
        self._closer: asyncio.Future[None] | None = None
        self._drainer: asyncio.Task[None] | None = None
        self.congested = False
        self._loop = asyncio.get_running_loop()
        ws.transport.set_write_buffer_limits(high=high_water, low=high_water // 4)

    @property
    def queued_bytes(self) -> int:
        """Output not yet on the wire: this turn's frames and the socket buffer."""
        return self._out_bytes + self.ws.transport.get_write_buffer_size()

    def send_frame(self, data: bytes) -> None:
        if not self._closing:
            # Unsent output already over the cap: the client is not reading. (One
            # frame bigger than the cap alone is fine: it is written at once.)
            if self.max_buffer and self.queued_bytes > self.max_buffer:
                self._overflow()
                return
            self._out.append(data)
            self._out_bytes += len(data)
            if not self._scheduled:
                self._scheduled = True
                self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Write this turn's frames with one socket write."""
        self._scheduled = False
        out = self._out
        if not out:
            return
        self._out = []
        self._out_bytes = 0
        ws = self.ws
        protocol = ws.protocol
        if protocol.state is not OPEN or ws.transport.is_closing():
            return  # closing or closed: nobody reads them any more (as ws.send raised)
        if protocol.extensions:
            send = protocol.send_text if self.text else protocol.send_binary
            for data in out:
                send(data)
            chunks = protocol.data_to_send()
        else:
            first = self._first
            chunks = []
            for data in out:
                chunks.append(_frame_head(first, len(data)))
                chunks.append(data)
        ws.transport.write(b"".join(chunks))
        if ws.paused and not self.congested:
            self._congested(True)

    def _congested(self, congested: bool) -> None:
        self.congested = congested
        if self.session is not None:
            self.session.transport_congested(congested)
        if congested:
            self._drainer = asyncio.ensure_future(self._wait_drained())

    async def _wait_drained(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.drain()  # returns once the buffer is below the low-water mark
        self._drainer = None
        # A lost connection also ends the wait: then deliveries must not resume (what
        # the session holds goes back to the broker, unacknowledged).
        if not self._closing and not self.ws.transport.is_closing():
            self._congested(False)

    def _overflow(self) -> None:
        """The client does not read: drop what is queued and the connection."""
        breach("max_outbound_buffer")
        if self.session is not None:
            self.session.close_reason = "max_outbound_buffer"
        self._closing = True
        self._out.clear()
        self._out_bytes = 0
        self._closer = asyncio.ensure_future(self._close_unread())

    async def _close_unread(self) -> None:
        # The close frame cannot get past unread data either: bounded, then abort.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(CLOSE_POLICY_VIOLATION, "outbound buffer full"), 1)
        self.ws.transport.abort()

    async def close(self, code: int, reason: str) -> None:
        """Send what is queued, then the close frame."""
        if not self._closing:
            self._flush()
            self._closing = True
        await self.ws.close(code, reason)

    def abort(self) -> None:
        self._closing = True
        self._out.clear()
        self._out_bytes = 0
        if self._drainer is not None:
            self._drainer.cancel()


class _NoMessages:
    """Stands in for websockets' Assembler while websockets reads no data frame."""

    __slots__ = ()

    def close(self) -> None:
        pass

    def put(self, frame: object) -> None:
        raise AssertionError("a data frame reached websockets on the fast path")


_NO_MESSAGES = _NoMessages()

# Where a GatewayConnection's inbound bytes go (see its docstring).
_RX_HTTP, _RX_EARLY, _RX_FAST, _RX_WS = range(4)

# While the handler is busy with a message, at most this many bytes are read ahead;
# then reading pauses until it asks for the next message.
READ_AHEAD = 64 * 1024


class GatewayConnection(ServerConnection):
    """A ServerConnection that reads its client's frames itself when it can.

    websockets parses the HTTP request (``_RX_HTTP``); the bytes after it are held
    back, reading paused, until the handshake is over (``_RX_EARLY``). Then, with no
    extension or with permessage-deflate alone (``_RX_FAST``; the reader decodes with
    websockets' negotiated ``PerMessageDeflate``), a sans-I/O ``FrameReader`` reads them and
    the handler takes whole messages, as bytes, with ``take_message()`` and
    ``wait_message()``: no Assembler, no str round trip, no task wake-up while
    messages are buffered. Pings and pongs go to websockets' protocol one frame at a
    time (it answers a ping). A close frame, a frame error (``protocol.fail``, the
    close code and reason websockets would send), or a close we started hands every
    later byte to websockets (``_RX_WS``), which runs the closing handshake as before;
    the handler then reads what is left through websockets' API (the extension's
    decoding state and ``current_size``, in decompressed bytes, carry over). With any
    other extension negotiated it is ``_RX_WS`` from the start.

    Back-pressure: a message is parsed when the handler asks for it (so the limit
    raised at login applies to the very next message); while the handler is busy at
    most ``READ_AHEAD`` bytes are buffered, then the socket is not read until it asks
    again. Messages already complete when the connection is lost are still handed out.
    """

    # Slots, not __dict__ entries: websockets' Connection already sets 27 attributes,
    # and past 30 every instance's __dict__ stops sharing its keys (+1.3 KiB each).
    __slots__ = ("_early", "_frames", "_ready", "_rx", "_rx_paused", "_tail", "_waiter")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._rx = _RX_HTTP
        self._tail = b""  # the last bytes of the request seen so far, for its end
        self._early = b""  # bytes after the request, before the handshake ended
        self._frames: FrameReader | None = None
        self._waiter: asyncio.Future[None] | None = None  # the handler waits for a message
        self._ready: bytes | None = None  # a message parsed for the waiting handler
        self._rx_paused = False
        super().connection_made(transport)
        # websockets' per-connection deques cost some 0.6 KiB each: drain waiters fit in
        # a list, and the message Assembler is made only if websockets reads messages.
        self.drain_waiters = []  # type: ignore[assignment]
        self.recv_messages = _NO_MESSAGES  # type: ignore[assignment]

    @property
    def fast(self) -> bool:
        """The inbound fast path is in use: read with take_message/wait_message."""
        return self._rx == _RX_FAST

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        await super().handshake(*args, **kwargs)
        if self.protocol.state is OPEN:
            early, self._early = self._early, b""
            extensions = self.protocol.extensions
            deflate = None
            if len(extensions) == 1 and isinstance(extensions[0], PerMessageDeflate):
                deflate = extensions[0]
            if self._rx == _RX_EARLY and (deflate is not None or not extensions):
                self._rx = _RX_FAST
                self._frames = FrameReader(deflate)
                self._frames.feed(early)
                if self._frames.buffered() <= READ_AHEAD:
                    self._resume()
            else:
                self._to_websockets(early)

    # -- asyncio.Protocol
    def data_received(self, data: bytes) -> None:
        rx = self._rx
        if rx == _RX_FAST:
            frames = self._frames
            assert frames is not None
            frames.feed(data)
            if self.protocol.state is not OPEN:  # we sent a close: websockets finishes
                self._to_websockets(frames.rest())
            elif self._waiter is not None:
                message = self._next_message()
                if message is not None:
                    self._ready = message
                    self._wake()
            elif frames.buffered() > READ_AHEAD:
                self._pause()
        elif rx == _RX_WS:
            super().data_received(data)
        elif rx == _RX_HTTP:
            self._request_received(data)
        else:
            self._early += data
            self._pause()

    def connection_lost(self, exc: Exception | None) -> None:
        # The handler first (it ends the session), then websockets' drain waiters.
        self._wake()
        super().connection_lost(exc)
        self._make_assembler()  # closed: websockets' recv() raises ConnectionClosed

    # -- the handler's side
    def take_message(self) -> bytes | None:
        """The next complete message, if there is one now."""
        message = self._ready
        if message is not None:
            self._ready = None
            return message
        if self._frames is None:
            return None
        return self._next_message()

    async def wait_message(self) -> bool:
        """Wait until a message may be there; False: the fast path is over (the
        connection is closed, or websockets reads what is left)."""
        if self._rx != _RX_FAST or self.protocol.state is CLOSED:
            return False
        self._resume()
        waiter = self._waiter = self.loop.create_future()
        try:
            await waiter
        finally:
            if self._waiter is waiter:
                self._waiter = None
        return True

    # -- internals
    def _request_received(self, data: bytes) -> None:
        """Pass websockets the bytes up to the end of the HTTP request, keep the rest."""
        seen = self._tail + data
        end = seen.find(b"\r\n\r\n")
        if end < 0:
            self._tail = seen[-3:]
            super().data_received(data)
            return
        cut = end + 4 - len(self._tail)
        self._tail = b""
        self._rx = _RX_EARLY
        super().data_received(data[:cut])
        if len(data) > cut:
            self._early = data[cut:]
            self._pause()

    def _next_message(self) -> bytes | None:
        frames = self._frames
        assert frames is not None
        protocol = self.protocol
        while True:
            try:
                item = frames.next(protocol.max_message_size)
            except WsFrameError as exc:
                self._fail(exc.code, exc.reason)
                return None
            if not isinstance(item, Control):
                return item
            if item.opcode == CLOSE:
                self._to_websockets(item.raw + frames.rest())
                return None
            if protocol.state is not CLOSED:  # a ping (answered) or a pong
                super().data_received(item.raw)

    def _to_websockets(self, data: bytes) -> None:
        """From now on websockets reads every byte (``data`` starts at a frame)."""
        self._rx = _RX_WS
        self._make_assembler()
        frames, self._frames = self._frames, None
        if frames is not None:  # a fragmented message in progress stays one
            self.protocol.current_size = frames.fragment_size
        self._resume()
        if data and self.protocol.state is not CLOSED:
            super().data_received(data)
        self._wake()

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection as websockets' parser does on the same input."""
        self._rx = _RX_WS
        self._make_assembler()
        self._frames = None
        protocol = self.protocol
        if protocol.state is not CLOSED:
            protocol.fail(code, reason)
            try:
                self.send_data()
            except Exception as exc:
                self.set_connection_exc(exc)
            if protocol.close_expected() and self.close_deadline is None:
                if self.close_timeout is not None:
                    self.close_deadline = self.loop.time() + self.close_timeout
        self._resume()  # reading on, to see the client's end of the connection
        self._wake()

    def _make_assembler(self) -> None:
        """websockets' message queue, as its connection_made makes it."""
        if isinstance(self.recv_messages, _NoMessages):
            self.recv_messages = Assembler(
                self.max_queue_high,
                self.max_queue_low,
                pause=self.transport.pause_reading,
                resume=self.transport.resume_reading,
            )
            if self.protocol.state is CLOSED:
                self.recv_messages.close()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _pause(self) -> None:
        if not self._rx_paused:
            self._rx_paused = True
            self.transport.pause_reading()

    def _resume(self) -> None:
        if self._rx_paused:
            self._rx_paused = False
            self.transport.resume_reading()


class ProxyServerConnection(GatewayConnection):
    """A ServerConnection that reads a PROXY protocol header (v1 or v2) first.

    The header is stripped before websockets sees any byte; its source address is
    kept in ``proxied_address`` (None for LOCAL/UNKNOWN). A connection that does not
    start with a valid header is aborted.
    """

    __slots__ = ("_proxy_reader", "proxied_address")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.proxied_address: Address | None = None
        self._proxy_reader: ProxyHeaderReader | None = ProxyHeaderReader()
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        reader = self._proxy_reader
        if reader is not None:
            try:
                result = reader.feed(data)
            except ProxyHeaderError as exc:
                self._proxy_reader = None
                log.info("bad proxy header", reason=str(exc))
                self.transport.abort()
                return
            if result is None:
                return
            self._proxy_reader = None
            self.proxied_address, data = result
            if not data:
                return
        super().data_received(data)


def client_address(server: Server, ws: ServerConnection) -> tuple[str, int]:
    """The client's (host, port): PROXY header, trusted X-Forwarded-For, or the peer."""
    proxied: Any = getattr(ws, "proxied_address", None)
    remote = proxied or ws.remote_address
    host, port = (str(remote[0]), int(remote[1])) if remote else ("", 0)
    if server.trusted_proxies and ws.request is not None:
        forwarded = ws.request.headers.get_all("X-Forwarded-For")
        if forwarded:
            client = server.trusted_proxies.client(host, forwarded)
            if client != host:
                host, port = client, 0
    return host, port


def _forget_handshake(ws: ServerConnection) -> None:
    """What the gateway needs from the handshake is read: drop its headers (some 6 KiB
    a connection). The request stays (path only): websockets takes a connection
    without one for a connection still waiting for its request. Its headers are
    emptied in place: websockets' suspended request parser still refers to them."""
    if ws.request is not None:
        ws.request.headers.clear()
    ws.response = None


async def serve_connection(server: Server, ws: ServerConnection, name: str = "ws") -> None:
    """Run one WebSocket connection: feed its messages to a new Session.

    ``name`` is the listener's transport label (``ws`` / ``wss``) in metrics and logs.
    """
    settings = server.settings
    host, port = client_address(server, ws)
    METRICS.connections_total.inc(name)
    refused = server.limiter.acquire(host)
    if refused is not None:
        log.info("connection refused", peer=f"{host}:{port}", reason=refused.body)
        with contextlib.suppress(ConnectionClosed):
            await ws.send(error_frame(refused), text=settings.ws_frame == "text")
            await ws.close(CLOSE_TRY_AGAIN_LATER, "connection limit")
        return
    METRICS.connections_open.inc(name)
    transport = WebSocketTransport(
        ws,
        text=settings.ws_frame == "text",
        max_buffer=settings.max_outbound_buffer,
        high_water=settings.write_high_water,
    )
    authorization = ws.request.headers.get("Authorization") if ws.request else None
    _forget_handshake(ws)
    session = Session(
        settings,
        server.broker,
        transport,
        client_host=host,
        peer=f"{host}:{port}",
        authorization=authorization,
        transport_name=name,
        rules=server.rules,
    )
    transport.session = session
    structlog.contextvars.bind_contextvars(session=session.id, peer=session.peer, transport=name)
    server.sessions.add(session)
    # RabbitMQ 4.2.6+: the per-message cap grows after login.
    cap = settings.max_frame_size + 4096
    try:
        if isinstance(ws, GatewayConnection) and ws.fast:
            await _receive_fast(ws, session, cap)
        # Another extension; or, after the fast path, what websockets still reads.
        async for message in ws:
            data = message.encode() if isinstance(message, str) else message
            await session.data_received(data)
            if ws.protocol.max_message_size != cap and session.state is State.CONNECTED:
                ws.protocol.max_message_size = cap
    except ConnectionClosed:
        pass
    finally:
        server.sessions.discard(session)
        server.limiter.release(host)
        METRICS.connections_open.dec(name)
        await session.connection_lost()
        transport.abort()


async def _receive_fast(ws: GatewayConnection, session: Session, cap: int) -> None:
    """Feed the session whole messages from the fast path until it ends."""
    take, wait, handle = ws.take_message, ws.wait_message, session.data_received
    authenticated = False
    while True:
        data = take()
        if data is None:
            if await wait():
                continue
            return
        await handle(data)
        if not authenticated and session.state is State.CONNECTED:
            authenticated = True
            ws.protocol.max_message_size = cap
