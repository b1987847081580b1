"""One STOMP session: every protocol decision, for every transport.

A transport feeds the bytes it receives to ``Session.data_received`` and gives the
session a ``Transport`` to write frames to and to close. The session parses frames
(``gateway.stomp``), runs each command against the broker port (``gateway.broker``),
and decides when a RECEIPT or an ERROR goes out and when the connection ends.

Rules (the table below is the whole state machine):

* Frames are handled one at a time, in order; a transport awaits ``data_received``
  before it reads more, so a slow broker slows the client down instead of
  buffering its frames.
* Before CONNECT only CONNECT/STOMP is accepted; anything else gets ERROR
  "Illegal command" and the socket stays open (RabbitMQ). A failed CONNECT also
  leaves the socket open, so the client may retry.
* A ``StompError`` becomes exactly one ERROR frame; if it is fatal the session then
  closes (1000 "STOMP died"), and the ERROR and every RECEIPT already due reach the
  client first. RabbitMQ 3.10.8 loses those frames; later releases deliver them.
* A framing error is answered by closing with 1007 and the parser's reason, no ERROR
  frame (RabbitMQ).
* A SEND's RECEIPT goes out only when the broker confirmed the publish; a broker
  nack becomes an ERROR (RabbitMQ ignores nacks: we do not).
* ACK/NACK bookkeeping lives in ``gateway.acks`` and transactions in
  ``gateway.transactions`` (RabbitMQ main's semantics: an unknown or repeated ack
  is ERROR "Message not found" and the session goes on).
* One broker channel per session, as RabbitMQ 3.x-4.3 have it: a channel error
  (not_found, access_refused, precondition_failed...) ends the whole session,
  every subscription included.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from typing import Any, ClassVar, Protocol

import structlog

from . import __version__
from .acks import AckTracker, parse_ack_id
from .auth import describe_login, resolve_credentials
from .broker.base import (
    AuthenticationFailed,
    Broker,
    BrokerChannel,
    BrokerUnavailable,
    ChannelClosed,
    Credentials,
    Delivery,
    FanoutMembership,
    PublishNacked,
    QueueSpec,
    VhostAccessDenied,
)
from .destinations import (
    Destination,
    DestinationKind,
    SubscribePlan,
    check_durable_id,
    check_not_temp,
    consumer_arguments,
    consumer_tag,
    is_durable_subscription,
    parse_destination,
    send_plan,
    subscribe_plan,
)
from .errors import BrokerError, ConnectError, ProcessingError, ProtocolError, StompError
from .handshake import (
    ERROR_VERSION_HEADER,
    is_loopback,
    negotiate_version,
    new_session_id,
    parse_heart_beat,
)
from .limits import LimitExceeded, breach
from .logging import get_logger
from .mapping import MessageEncoder, send_properties
from .metrics import METRICS
from .rules import Rules
from .settings import Settings
from .stomp import Frame, FrameError, FrameParser, encode_frame
from .transactions import PublishAction, SettleAction, Transactions

log = get_logger("gateway.session")


class State(StrEnum):
    AWAITING_CONNECT = "awaiting-connect"
    CONNECTED = "connected"
    CLOSED = "closed"


# Which commands each state accepts. Anything not listed is answered by the entry
# for None: before CONNECT "Illegal command", after it "Bad command" (RabbitMQ).
CLIENT_COMMANDS = frozenset(
    {"SEND", "SUBSCRIBE", "UNSUBSCRIBE", "ACK", "NACK", "BEGIN", "COMMIT", "ABORT", "DISCONNECT"}
)
ALLOWED: dict[State, frozenset[str]] = {
    State.AWAITING_CONNECT: frozenset({"CONNECT", "STOMP"}),
    State.CONNECTED: CLIENT_COMMANDS | {"CONNECT", "STOMP"},
    State.CLOSED: frozenset(),
}

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_INVALID_DATA = 1007
MAX_CLOSE_REASON = 123  # RFC 6455: a close reason fits in 123 bytes
STOMP_DIED = "STOMP died"  # RabbitMQ's close reason for every session end
CONFIRM_WAIT = 10.0  # seconds a closing session waits for outstanding publisher confirms
# Parser errors that are limit breaches (counted in limit_breaches_total).
_LIMIT_KINDS = {
    "frame_too_big": "max_frame_size",
    "max_headers": "max_headers",
    "max_header_length": "max_header_length",
    "max_body_length": "max_body_length",
}
# Frame counters are labelled by command; anything else a client invents is "other".
_METRIC_COMMANDS = ALLOWED[State.CONNECTED]


class Transport(Protocol):
    """What a session needs from the connection it runs on."""

    def send_frame(self, data: bytes) -> None:
        """Queue one outbound STOMP frame (or heart-beat EOL); never blocks."""

    async def close(self, code: int, reason: str) -> None:
        """Flush queued frames, then close with ``code``/``reason``."""


@dataclass(slots=True)
class Subscription:
    tag: str  # consumer tag: T_<id> or Q_<destination>
    destination: Destination
    ack: str  # auto | client | client-individual
    queue: str
    durable: bool
    header_id: str | None  # the value of the MESSAGE "subscription" header
    # Deliveries that arrive before the SUBSCRIBE's RECEIPT went out wait here, so the
    # RECEIPT comes first, as with RabbitMQ (None once the subscription is live).
    held: list[Delivery] | None = None
    encoder: MessageEncoder | None = None  # MESSAGE frames, made at the first delivery
    shared: FanoutMembership | None = None  # local fan-out: no consumer of its own


def error_frame(err: StompError) -> bytes:
    headers: list[tuple[str, str]] = [
        ("message", err.message),
        ("content-type", "text/plain"),
        ("version", ERROR_VERSION_HEADER),
        *err.headers.items(),
    ]
    # Bodies quote client input, which may be any bytes (decoded with surrogateescape).
    return encode_frame("ERROR", headers, err.body.encode("utf-8", "surrogateescape"))


Unconfirmed = deque[tuple[asyncio.Future[None], str | None, float]]


class Session:
    """A STOMP session bound to one client connection."""

    # A session has some 40 attributes: more than a key-sharing instance dict holds
    # (30 in CPython 3.11), so each session had a dict of its own (~1.5 KiB). Slots
    # for those set in __init__; "__dict__" keeps any other attribute working.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_authorization",
        "_beat_checked",
        "_channel_broken",
        "_closed_event",
        "_closing",
        "_confirms_drained",
        "_idle_timeout",
        "_idle_timer",
        "_last_in",
        "_last_out",
        "_missed_beats",
        "_publish_window",
        "_recv_interval",
        "_send_interval",
        "_timers",
        "_unconfirmed",
        "_window",
        "acks",
        "broker",
        "channel",
        "client_host",
        "close_reason",
        "declared_queues",
        "draining",
        "frames_in",
        "frames_out",
        "id",
        "log",
        "parser",
        "peer",
        "prefetch",
        "rules",
        "settings",
        "started",
        "state",
        "subscriptions",
        "temp_queues",
        "transactions",
        "transport",
        "transport_name",
        "user",
        "version",
        "vhost",
    )

    def __init__(
        self,
        settings: Settings,
        broker: Broker,
        transport: Transport,
        *,
        client_host: str,
        peer: str,
        authorization: str | None = None,
        transport_name: str = "ws",
        rules: Rules | None = None,
    ) -> None:
        self.settings = settings
        self.broker = broker
        self.transport = transport
        self.client_host = client_host
        self.peer = peer
        # The upgrade request's Authorization header (use_http_auth); never logged.
        self._authorization = authorization
        self.transport_name = transport_name
        self.rules = rules if rules is not None else Rules(settings)
        self.id = new_session_id()
        self.log = log.bind(session=self.id, peer=peer)
        self.draining = False  # server shutdown: input is no longer handled
        self.state = State.AWAITING_CONNECT
        self.version = "1.0"
        self.user: str | None = None
        self.vhost: str | None = None
        self.channel: BrokerChannel | None = None
        self.parser = FrameParser(
            max_headers=settings.max_headers,
            max_header_length=settings.max_header_length,
            max_body_length=settings.max_body_length,
            max_frame_size=settings.max_frame_size_unauthenticated,
            content_length_commands=frozenset({"SEND"}),
        )
        self.subscriptions: dict[str, Subscription] = {}
        self.transactions = Transactions(settings.max_transactions)
        self.acks = AckTracker()  # deliveries of client/client-individual subscriptions
        self._channel_broken = False  # the broker closed the channel under us
        self.temp_queues: dict[str, str] = {}  # /temp-queue/<id> -> broker queue name
        self.declared_queues: set[str] = set()
        self.prefetch: int = 0  # the channel's current default prefetch for new consumers
        # Publishes awaiting the broker's confirm, in SEND order; RECEIPTs go out in
        # that order even when confirms resolve out of order (aiormq settles a
        # multiple-ack in later loop turns than a single ack that follows it).
        # (confirm, receipt, when published: for the confirm latency histogram)
        # (``unconfirmed`` and the events below are made on first use: a session that
        # never publishes, most of them, spares a deque and two Events, ~2.5 KiB.)
        self._unconfirmed: Unconfirmed | None = None
        self._confirms_drained: asyncio.Event | None = None
        # publish_window: with this many confirms outstanding, input waits (the
        # transport reads no more), so a publisher faster than the broker slows down.
        self._publish_window = settings.publish_window
        self._window: asyncio.Event | None = None  # see _window_open
        self.frames_in = 0
        self.frames_out = 0
        self.started = time.monotonic()
        self.close_reason = ""
        self._last_in = self._last_out = time.monotonic()
        self._timers: list[asyncio.TimerHandle] = []
        self._send_interval = 0.0
        self._recv_interval = 0.0
        self._missed_beats = 0
        self._beat_checked = 0.0  # when the client's heart-beats were last checked
        self._closing: asyncio.Task[None] | None = None
        self._closed_event: asyncio.Event | None = None  # see _closed
        loop = asyncio.get_running_loop()
        if settings.login_timeout > 0:
            self._timers.append(loop.call_later(settings.login_timeout, self._login_timed_out))
        # Cowboy's idle_timeout (web_stomp.ws_opts.idle_timeout): a WebSocket with no
        # inbound bytes for this long is closed, logged in or not. TCP has none.
        self._idle_timeout = settings.idle_timeout if transport_name.startswith("ws") else 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        if self._idle_timeout > 0:
            self._idle_timer = loop.call_later(self._idle_timeout, self._check_idle)

    # Made on first use (see __init__).
    @property
    def unconfirmed(self) -> Unconfirmed:
        queue = self._unconfirmed
        if queue is None:
            queue = self._unconfirmed = deque()
        return queue

    @property
    def confirms_drained(self) -> asyncio.Event:
        """Set while no publish awaits its confirm."""
        event = self._confirms_drained
        if event is None:
            event = self._confirms_drained = asyncio.Event()
            event.set()
        return event

    @property
    def _window_open(self) -> asyncio.Event:
        """Set while fewer than publish_window confirms are outstanding."""
        event = self._window
        if event is None:
            event = self._window = asyncio.Event()
            event.set()
        return event

    @property
    def _closed(self) -> asyncio.Event:
        """Set once the session released its broker resources."""
        event = self._closed_event
        if event is None:
            event = self._closed_event = asyncio.Event()
        return event

    # ------------------------------------------------------------------ transport side
    async def data_received(self, data: bytes) -> None:
        """Bytes from the client: parse, then handle each frame in order.

        Frames are taken one at a time, so a CONNECT raises the frame size limit
        before the rest of the same message is parsed, and frames that precede a
        framing error are still handled (RabbitMQ 3.10.8 dropped them).
        """
        self._last_in = time.monotonic()
        METRICS.bytes_in.inc(amount=len(data))
        if self.closed or self.draining:
            return
        parser = self.parser
        parser.receive_data(data)
        while not self.closed and not self.draining:
            try:
                frame = parser.next_frame()
            except FrameError as exc:
                # RabbitMQ: no ERROR frame, close 1007 with the parser's reason.
                limit = _LIMIT_KINDS.get(exc.kind)
                if limit is not None:
                    breach(limit)
                reason = exc.reason.encode()[:MAX_CLOSE_REASON].decode(errors="ignore")
                self._shutdown(CLOSE_INVALID_DATA, reason, why=f"framing error {exc.kind}")
                return
            if frame is None:
                return
            self.frames_in += 1
            command = frame.command
            METRICS.frames_in.inc(command if command in _METRIC_COMMANDS else "other")
            await self._handle(frame)

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def connected(self) -> bool:
        return self.state is State.CONNECTED

    def note_activity(self) -> None:
        """Inbound bytes that are not STOMP (a WebSocket ping) still show liveness."""
        self._last_in = time.monotonic()

    async def connection_lost(self) -> None:
        """The client went away: release broker resources, once."""
        if self.state is not State.CLOSED:
            self.state = State.CLOSED
            self.close_reason = self.close_reason or "client closed"
            await self._release()
        elif self._closing is not None:
            await asyncio.shield(self._closing)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    # ------------------------------------------------------------------ output
    def _write(self, data: bytes) -> None:
        self._last_out = time.monotonic()
        self.frames_out += 1
        METRICS.bytes_out.inc(amount=len(data))
        self.transport.send_frame(data)

    def _send(self, command: str, headers: list[tuple[str, str]], body: bytes = b"") -> None:
        METRICS.frames_out.inc(command)
        if command == "MESSAGE":
            METRICS.delivered.inc()
        self._write(encode_frame(command, headers, body, trailing_lf=self.settings.trailing_lf))

    def _send_error(self, err: StompError) -> None:
        METRICS.frames_out.inc("ERROR")
        METRICS.errors.inc(err.message)
        data = error_frame(err)
        if not self.settings.trailing_lf:
            data = data[:-1]
        self._write(data)

    def _receipt(self, frame: Frame) -> None:
        receipt = frame.headers.get("receipt")
        if receipt is not None:
            self._send("RECEIPT", [("receipt-id", receipt)])

    # ------------------------------------------------------------------ dispatch
    async def _handle(self, frame: Frame) -> None:
        command = frame.command
        if (
            self.state is State.AWAITING_CONNECT
            and self.settings.implicit_connect
            and command in CLIENT_COMMANDS
        ):
            # stomp.implicit_connect: log in with this frame's headers (so the default
            # credentials), send no CONNECTED, then handle the frame (RabbitMQ).
            try:
                await self._connect(frame, implicit=True)
            except StompError as err:
                self._fail(err)
                return
            if not self.connected:
                return
        if self.version == "1.0" and self.state is State.CONNECTED:
            # STOMP 1.0: RabbitMQ trims leading whitespace of every header value.
            frame = Frame(command, {k: v.lstrip() for k, v in frame.headers.items()}, frame.body)
        try:
            if command not in ALLOWED[self.state]:
                if self.state is State.AWAITING_CONNECT:
                    raise ProtocolError("Illegal command", "You must log in using CONNECT first")
                raise ProtocolError("Bad command", f'Could not interpret command "{command}"\n')
            handler = self._handlers[command]
            await handler(self, frame)
        except LimitExceeded as err:
            self._fail(err, err.close_code, err.message)
        except StompError as err:
            self._fail(err)
        except ChannelClosed as exc:
            self._fail(broker_error(exc))
        except Exception:
            log.exception("frame handling failed", command=command)
            self._fail(ProcessingError(fatal=True))

    def _fail(self, err: StompError, code: int = CLOSE_NORMAL, reason: str = STOMP_DIED) -> None:
        """Report one ERROR; end the session when the error is fatal."""
        if self.state is State.CLOSED:
            return
        # A client can provoke non-fatal ERRORs at will: log those at debug only.
        (self.log.info if err.fatal else self.log.debug)(
            "error", message=err.message, detail=err.body.strip(), fatal=err.fatal
        )
        self._send_error(err)
        if err.fatal:
            self._shutdown(code, reason, why=f"error {err.message}")

    async def go_away(self, within: float) -> None:
        """Server shutdown: stop handling input, let outstanding publisher confirms
        (and their RECEIPTs) out, then ERROR "server shutting down" and close 1001."""
        if self.state is State.CLOSED:
            if self._closing is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._closing), within)
            return
        self.draining = True
        deadline = time.monotonic() + within
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.confirms_drained.wait(), within)
        if self.closed:
            return
        self._fail(
            StompError("server shutting down", "The gateway is shutting down\n", fatal=True),
            CLOSE_GOING_AWAY,
            "server shutting down",
        )
        if self._closing is not None:
            with contextlib.suppress(TimeoutError):
                remaining = max(0.1, deadline - time.monotonic())
                await asyncio.wait_for(asyncio.shield(self._closing), remaining)

    def _shutdown(self, code: int, reason: str, *, why: str) -> None:
        """Start closing: no more frames are handled; queued output is flushed."""
        if self.state is State.CLOSED:
            return
        self.state = State.CLOSED
        self.close_reason = why
        self._closing = asyncio.ensure_future(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        try:
            # RECEIPTs of SENDs the broker is still confirming go out before the close
            # (RabbitMQ 3.10.8 dropped every frame still queued; later releases do not).
            # A dead channel fails its pending confirms at once.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.confirms_drained.wait(), CONFIRM_WAIT)
            # ack:auto MESSAGEs still waiting in the transport's buffer go out with the
            # close below: acknowledge them (at most once, as ack:auto promises) rather
            # than let the broker redeliver them elsewhere. A connection that is lost
            # instead (connection_lost) leaves them unacknowledged: back to the queue.
            self.transport_congested(False)
            await self._release()
        finally:
            await self.transport.close(code, reason)

    async def _release(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        for sub in self.subscriptions.values():
            if sub.shared is not None:
                sub.shared.leave()
        channel, self.channel = self.channel, None
        if channel is not None:
            await channel.close()
        if not self._closed.is_set():
            self._closed.set()
            METRICS.closes.inc(self.close_reason.split(" ", 1)[0] or "unknown")
            self.log.info(
                "session closed",
                reason=self.close_reason,
                frames_in=self.frames_in,
                frames_out=self.frames_out,
                subscriptions=len(self.subscriptions),
                seconds=round(time.monotonic() - self.started, 3),
            )

    # ------------------------------------------------------------------ CONNECT
    async def on_connect(self, frame: Frame) -> None:
        if self.state is State.CONNECTED:
            # RabbitMQ (3.10.8 and main) crashes the handler: close 1011, no frame.
            # Answer with an ERROR and a normal close instead (docs/compatibility.md).
            raise ProtocolError("Bad CONNECT", "Already connected", fatal=True)
        await self._connect(frame, implicit=False)

    async def _connect(self, frame: Frame, *, implicit: bool) -> None:
        h = frame.headers
        version = negotiate_version(h.get("accept-version"))
        if version is None:
            raise ProtocolError(
                "Version mismatch",
                "Supported versions are " + ERROR_VERSION_HEADER + "\n",
            )
        send_s, recv_s = parse_heart_beat(h.get("heart-beat"))
        resolved = resolve_credentials(self.settings, h, self._authorization)
        login, passcode = resolved.login, resolved.passcode
        shown = describe_login(login)  # never a token in an ERROR body or a log line
        if resolved.expires_at is not None and resolved.expires_at <= time.time():
            # The broker would refuse it too; do not bother it (nor log the token).
            raise ConnectError("Bad CONNECT", f"Access refused for user '{shown}': token expired\n")
        vhost = h.get("host") or self.settings.default_vhost
        credentials = Credentials(login=login, passcode=passcode, vhost=vhost, peer=self.peer)
        try:
            channel = await self.broker.open_channel(credentials)
        except AuthenticationFailed:
            raise ConnectError("Bad CONNECT", f"Access refused for user '{shown}'\n") from None
        except VhostAccessDenied:
            raise ConnectError("Bad CONNECT", f"Virtual host '{vhost}' access denied") from None
        except BrokerUnavailable:
            # No broker: ERROR, then close (unlike a refused login), so a client such
            # as stomp.js reconnects after its delay instead of waiting on a socket
            # that cannot log in (docs/scale-out.md).
            raise ConnectError("Bad CONNECT", "RabbitMQ is not reachable", fatal=True) from None
        refused = login in self.settings.loopback_users and not is_loopback(self.client_host)
        if refused or self.state is State.CLOSED:  # or the client left meanwhile
            await channel.close()
            if refused:
                # RabbitMQ checks the browser's address last: after the password and
                # the vhost, so those errors win.
                raise ConnectError("Bad CONNECT", "non-loopback access denied")
            return
        self.channel = channel
        channel.set_handlers(
            self._on_delivery,
            self._on_cancel,
            self._on_channel_closed,
            delivery_window=self.settings.delivery_window,
            on_confirm=self._confirms_arrived,
        )
        self.state = State.CONNECTED
        self.version = version
        self.user, self.vhost = login, vhost
        self.parser.max_frame_size = self.settings.max_frame_size
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        METRICS.sessions_total.inc(self.transport_name)
        self.log = self.log.bind(user=shown, vhost=vhost)
        structlog.contextvars.bind_contextvars(user=shown, vhost=vhost)
        if not implicit:  # RabbitMQ sends no CONNECTED for an implicit connect
            headers: list[tuple[str, str]] = []
            if not self.settings.hide_server_info:
                headers.append(("server", f"stomp-gateway/{__version__}"))
            headers += [
                ("session", self.id),
                ("heart-beat", f"{send_s * 1000},{recv_s * 1000}"),
                ("version", version),
            ]
            self._send("CONNECTED", headers)
        self.log.info("session connected", version=version, auth=resolved.source, implicit=implicit)
        self._start_heartbeats(send_s, recv_s)
        if resolved.expires_at is not None:
            delay = max(0.0, resolved.expires_at - time.time())
            loop = asyncio.get_running_loop()
            self._timers.append(loop.call_later(delay, self._token_expired))

    def _token_expired(self) -> None:
        # RabbitMQ never re-checks a token of an open connection (rabbitmq-server#8295);
        # the gateway ends the session when its token's exp passes.
        if self.state is State.CONNECTED:
            self._fail(
                StompError(
                    "Token expired",
                    "The access token of this session expired; connect again with a new one\n",
                    fatal=True,
                )
            )

    # ------------------------------------------------------------------ heart-beats
    def _start_heartbeats(self, send_s: int, recv_s: int) -> None:
        loop = asyncio.get_running_loop()
        if send_s:
            # Check every half interval; beat when nothing else went out meanwhile.
            self._send_interval = send_s / 2
            self._timers.append(loop.call_later(self._send_interval, self._send_beat))
        if recv_s:
            self._recv_interval = float(recv_s)
            self._beat_checked = time.monotonic()
            self._timers.append(loop.call_later(self._recv_interval, self._check_beat))

    def _rearm(self, delay: float, callback: Callable[[], None]) -> None:
        self._timers = [t for t in self._timers if not t.cancelled() and t.when() > 0]
        self._timers.append(asyncio.get_running_loop().call_later(delay, callback))

    def _send_beat(self) -> None:
        if self.state is State.CLOSED:
            return
        if time.monotonic() - self._last_out >= self._send_interval * 0.9:
            self._last_out = time.monotonic()
            self.transport.send_frame(b"\n")
        self._rearm(self._send_interval, self._send_beat)

    def _check_beat(self) -> None:
        if self.state is State.CLOSED:
            return
        # As RabbitMQ (rabbit_heartbeat): a check interval in which nothing arrived is a
        # miss. Not "nothing for an interval until now": a client beating at exactly
        # our interval, each beat landing just after a (slightly late) check, would
        # look silent twice in a row.
        now = time.monotonic()
        if self._last_in <= self._beat_checked:
            self._missed_beats += 1
        else:
            self._missed_beats = 0
        self._beat_checked = now
        if self._missed_beats >= 2:
            # RabbitMQ: two silent checks in a row, close without an ERROR frame.
            METRICS.heartbeat_timeouts.inc()
            self._shutdown(CLOSE_NORMAL, STOMP_DIED, why="heart-beat timeout")
            return
        self._rearm(self._recv_interval, self._check_beat)

    def _check_idle(self) -> None:
        if self.state is State.CLOSED:
            return
        silent = time.monotonic() - self._last_in
        if silent >= self._idle_timeout:
            # Cowboy closes with 1000 and an empty reason, without an ERROR frame.
            self._shutdown(CLOSE_NORMAL, "", why="idle timeout")
            return
        loop = asyncio.get_running_loop()
        self._idle_timer = loop.call_later(self._idle_timeout - silent, self._check_idle)

    def _login_timed_out(self) -> None:
        if self.state is State.AWAITING_CONNECT:
            self._shutdown(CLOSE_NORMAL, STOMP_DIED, why="login timeout")

    # ------------------------------------------------------------------ SEND
    async def on_send(self, frame: Frame) -> None:
        dest_text = _require_destination(frame)
        if "message-id" in frame.headers:
            raise ProtocolError("Invalid header", "'message-id' is not allowed on 'SEND'.\n")
        self._check_rule("write", dest_text, frame)
        # Everything is checked (and /queue declared) now, even inside a transaction;
        # only the publish waits for COMMIT (RabbitMQ 3.10.8/4.3).
        action = await self._prepare_publish(frame, dest_text)
        tx = frame.headers.get("transaction")
        if tx is None:
            await self._publish(action)
        else:
            self.transactions.add(tx, action)

    async def _prepare_publish(self, frame: Frame, dest_text: str) -> PublishAction:
        channel = self._channel()
        dest = parse_destination(dest_text)
        check_not_temp(dest, "SEND")
        plan = send_plan(dest, frame.headers, self.settings.default_topic_exchange)
        if plan.declare is not None and plan.declare.name not in self.declared_queues:
            # RabbitMQ declares /queue/ destinations once per session, with nowait.
            await channel.declare_queue_nowait(plan.declare)
            self.declared_queues.add(plan.declare.name)
        reply_to = frame.headers.get("reply-to")
        if reply_to is not None and reply_to.startswith("/temp-queue/"):
            reply_to = await self._temp_queue(reply_to)
        properties = send_properties(frame.headers, reply_to=reply_to)
        receipt = frame.headers.get("receipt")
        return PublishAction(plan.exchange, plan.routing_key, frame.body, properties, receipt)

    async def _publish(self, action: PublishAction) -> None:
        channel = self._channel()
        confirm = await channel.publish(
            action.exchange, action.routing_key, action.body, action.properties
        )
        METRICS.published.inc()
        self.unconfirmed.append((confirm, action.receipt, time.monotonic()))
        self.confirms_drained.clear()
        confirm.add_done_callback(self._confirmed)
        window = self._publish_window
        if window and len(self.unconfirmed) >= window:
            # Flow control: read nothing more from this client until the broker
            # confirmed some (a dead channel fails them all, which opens it too).
            self._window_open.clear()
            await self._window_open.wait()

    def _confirms_arrived(self) -> None:
        # The broker adapter resolved confirms just now: RECEIPTs go out before any
        # MESSAGE that arrived after the confirm (future callbacks come a turn later).
        self._confirmed(None)

    def _confirmed(self, _fut: asyncio.Future[None] | None) -> None:
        unconfirmed = self.unconfirmed
        if unconfirmed and unconfirmed[0][0].done():
            now = time.monotonic()
            observe = METRICS.confirm_latency.observe
            while unconfirmed and unconfirmed[0][0].done():
                fut, receipt, published = unconfirmed.popleft()
                observe(now - published)
                exc = None if fut.cancelled() else fut.exception()
                self._settle_publish(exc, receipt)
        if not unconfirmed:
            self.confirms_drained.set()
        if len(unconfirmed) < self._publish_window:
            self._window_open.set()

    def _settle_publish(self, exc: BaseException | None, receipt: str | None) -> None:
        if exc is None:
            if receipt is not None:
                self._send("RECEIPT", [("receipt-id", receipt)])
        elif isinstance(exc, PublishNacked):
            # RabbitMQ logs and drops a nack; tell the client its message was refused.
            self._fail(
                BrokerError(
                    "Message rejected",
                    "The broker did not accept a message (basic.nack)\n",
                    fatal=False,
                    headers={"receipt-id": receipt} if receipt else None,
                )
            )

    async def _temp_queue(self, reply_to: str) -> str:
        name = self.temp_queues.get(reply_to)
        if name is None:
            channel = self._channel()
            name = await channel.declare_queue(
                QueueSpec("", durable=False, exclusive=True, auto_delete=True)
            )
            tag = "T_" + reply_to
            await channel.consume(name, tag, no_ack=True)
            self.temp_queues[reply_to] = name
            self.subscriptions[tag] = Subscription(
                tag=tag,
                destination=parse_destination("/queue/" + name),
                ack="auto",
                queue=name,
                durable=False,
                header_id=reply_to,
            )
        return name

    # ------------------------------------------------------------------ SUBSCRIBE
    async def on_subscribe(self, frame: Frame) -> None:
        h = frame.headers
        dest_text = _require_destination(frame)
        self._check_rule("read", dest_text, frame)
        limit = self.settings.max_subscriptions
        if limit and len(self.subscriptions) >= limit:
            breach("max_subscriptions")
            raise LimitExceeded(
                "Subscription limit exceeded", f"Too many subscriptions (limit {limit})\n"
            )
        sub_id = h.get("id")
        if sub_id is not None and sub_id.startswith("/temp-queue/"):
            raise ProcessingError()
        ack = h.get("ack", "auto")
        if ack not in ("auto", "client", "client-individual"):
            raise ProcessingError()
        prefetch = _int_header(h, "prefetch-count")
        dest = parse_destination(dest_text)
        plan = subscribe_plan(
            dest,
            h,
            subscription_id=sub_id,
            default_topic_exchange=self.settings.default_topic_exchange,
        )
        tag = consumer_tag(h) or "Q_" + dest_text
        if self._may_share(plan, ack, h):
            self._check_duplicate(tag)
            if await self._subscribe_shared(frame, tag, dest, plan, sub_id):
                return
        channel = self._channel()
        queue = await self._declare(plan) if plan.declare is not None else plan.queue
        # RabbitMQ checks this after the queue is declared, and ends the session.
        self._check_duplicate(tag)
        # Newest RabbitMQ: prefetch-count is per subscription and does not leak into
        # later SUBSCRIBEs (3.10.8 let basic.qos carry over).
        wanted = prefetch or 0
        qos = wanted if wanted != self.prefetch else None
        self.prefetch = wanted
        self.subscriptions[tag] = Subscription(
            tag=tag,
            destination=dest,
            ack=ack,
            queue=queue,
            durable=plan.durable,
            header_id=sub_id,
            held=[],
        )
        try:
            await channel.consume(
                queue,
                tag,
                no_ack=ack == "auto",
                prefetch_count=qos,
                arguments=consumer_arguments(h),
            )
            if plan.bind is not None:
                await channel.bind_queue(queue, *plan.bind)
        except BaseException:
            self.subscriptions.pop(tag, None)
            if plan.delete_on_failure and self.channel is not None:
                # RabbitMQ deletes a subscription queue whose consume or bind failed.
                with contextlib.suppress(ChannelClosed):
                    await self.channel.delete_queue(queue)
            raise
        self._receipt(frame)
        self._release_held(self.subscriptions[tag])

    def _check_duplicate(self, tag: str) -> None:
        if tag in self.subscriptions:
            raise ProtocolError(
                "Duplicated subscription identifier",
                f"A subscription identified by '{tag}' already exists.",
                fatal=True,
            )

    def _release_held(self, sub: Subscription) -> None:
        """The SUBSCRIBE's RECEIPT went out: deliveries that came before it follow."""
        held, sub.held = sub.held or [], None
        for delivery in held:
            self._deliver(sub, delivery)

    def _may_share(self, plan: SubscribePlan, ack: str, headers: dict[str, str]) -> bool:
        """Local fan-out (gateway.broker.fanout) can stand in for this subscription: an
        ack:auto one to /topic or /exchange whose queue would be the plugin's default
        (non-durable, exclusive, auto-delete, no name, no x- arguments)."""
        spec = plan.declare
        return (
            self.settings.local_fanout
            and ack == "auto"
            and plan.bind is not None
            and spec is not None
            and not spec.durable
            and spec.exclusive
            and spec.auto_delete
            and not any(name.startswith("x-") for name in headers)
        )

    async def _subscribe_shared(
        self, frame: Frame, tag: str, dest: Destination, plan: SubscribePlan, sub_id: str | None
    ) -> bool:
        """Join a local fan-out group; False when none can be had."""
        assert plan.bind is not None
        channel = self._channel()
        sub = Subscription(
            tag=tag,
            destination=dest,
            ack="auto",
            queue="",
            durable=False,
            header_id=sub_id,
            held=[],
        )
        self.subscriptions[tag] = sub
        try:
            shared = await channel.join_fanout(
                *plan.bind,
                partial(self._deliver_shared, sub),
                partial(self._shared_lost, sub),
            )
        except BaseException:
            self.subscriptions.pop(tag, None)
            raise
        if shared is None:
            self.subscriptions.pop(tag, None)
            return False
        sub.shared = shared
        if self.state is not State.CONNECTED or self.subscriptions.get(tag) is not sub:
            # The session ended meanwhile (its release may not have seen this one).
            shared.leave()
            return True
        self._receipt(frame)
        self._release_held(sub)
        return True

    async def _declare(self, plan: SubscribePlan) -> str:
        spec, channel = plan.declare, self._channel()
        assert spec is not None
        if not plan.declare_nowait:
            return await channel.declare_queue(spec)
        if spec.name not in self.declared_queues:
            await channel.declare_queue_nowait(spec)
            self.declared_queues.add(spec.name)
        return plan.queue

    async def on_unsubscribe(self, frame: Frame) -> None:
        h = frame.headers
        check_durable_id(h)
        sub_id = h.get("id")
        if sub_id is not None:
            if sub_id.startswith("/temp-queue/"):
                raise ProtocolError(
                    "Invalid id", "UNSUBSCRIBE 'id' may not start with /temp-queue/\n"
                )
            tag, what = "T_" + sub_id, f"id='{sub_id}'"
        elif "destination" in h:
            tag, what = "Q_" + h["destination"], f"destination='{h['destination']}'"
        else:
            raise ProtocolError(
                "Missing destination or id",
                "UNSUBSCRIBE must include a 'destination' or 'id' header",
            )
        sub = self.subscriptions.get(tag)
        if sub is None:
            raise ProtocolError(
                "No subscription found",
                "UNSUBSCRIBE must refer to an existing subscription.\n"
                f'Subscription to "{what}" not found.\n',
            )
        channel = self._channel()
        if sub.shared is not None:
            sub.shared.leave()
        else:
            await channel.cancel(tag)
        del self.subscriptions[tag]
        if sub.destination.kind is DestinationKind.TOPIC and is_durable_subscription(h):
            # RabbitMQ deletes a durable topic subscription's queue on an UNSUBSCRIBE
            # that says durable:true (newest release: the recorded queue, not one
            # named by the frame).
            await channel.delete_queue(sub.queue)
        self._receipt(frame)

    # ------------------------------------------------------------------ deliveries
    def _on_delivery(self, delivery: Delivery) -> bool:
        """A delivery for one of our consumers; False when nobody takes it (the broker
        adapter then gives it back to the queue)."""
        if self.state is not State.CONNECTED:
            return False
        sub = self.subscriptions.get(delivery.consumer_tag)
        if sub is None:
            return False
        return self._deliver(sub, delivery)

    def _deliver_shared(self, sub: Subscription, delivery: Delivery) -> None:
        """A copy from a local fan-out group."""
        if self.state is State.CONNECTED and self.subscriptions.get(sub.tag) is sub:
            self._deliver(sub, delivery)

    def _shared_lost(self, sub: Subscription, exc: ChannelClosed | None) -> None:
        """The fan-out group's consumer ended (None: the broker cancelled it)."""
        if self.subscriptions.get(sub.tag) is not sub:
            return
        if exc is None:
            self._on_cancel(sub.tag)
        else:
            self.subscriptions.pop(sub.tag, None)
            self._fail(broker_error(exc))

    def _deliver(self, sub: Subscription, delivery: Delivery) -> bool:
        if sub.held is not None:
            sub.held.append(delivery)
            return True
        encoder = sub.encoder
        if encoder is None:
            # message-id "<tag>@@<session>@@<delivery tag>"; STOMP 1.2 client modes
            # repeat it in "ack", the value to put in ACK's "id".
            encoder = sub.encoder = MessageEncoder(
                subscription=sub.header_id,
                id_prefix=f"{sub.tag}@@{self.id}@@",
                ack=sub.ack != "auto" and self.version == "1.2",
                trailing_lf=self.settings.trailing_lf,
            )
        if sub.ack != "auto":
            self.acks.delivered(delivery.delivery_tag, sub.tag, multiple=sub.ack == "client")
        METRICS.frames_out.inc("MESSAGE")
        METRICS.delivered.inc()
        self._write(encoder.encode(delivery))
        return True

    def transport_congested(self, congested: bool) -> None:
        """The transport's write buffer went above (True) or back below (False) its
        high-water mark: stop taking deliveries from the broker meanwhile."""
        channel = self.channel
        if channel is not None and not self._channel_broken:
            channel.pause_deliveries(congested)

    def _on_cancel(self, tag: str) -> None:
        sub = self.subscriptions.pop(tag, None)
        if sub is None or self.state is not State.CONNECTED:
            return
        label = (
            f"id='{sub.header_id}'" if sub.header_id else f"destination='{sub.destination.text}'"
        )
        self._fail(
            StompError(
                "Server cancelled subscription",
                "The server has canceled a subscription.\n"
                f'No more messages will be delivered for "{label}".\n',
                headers={"subscription": sub.header_id or sub.destination.text},
            )
        )

    def _on_channel_closed(self, exc: ChannelClosed) -> None:
        # Keep self.channel: _release must still close the connection under it.
        self._channel_broken = True
        self._fail(broker_error(exc))

    # ------------------------------------------------------------------ ACK / NACK
    async def on_ack(self, frame: Frame) -> None:
        await self._on_settle(frame, nack=False)

    async def on_nack(self, frame: Frame) -> None:
        await self._on_settle(frame, nack=True)

    async def _on_settle(self, frame: Frame, *, nack: bool) -> None:
        # STOMP 1.2 acks by "id" (the MESSAGE's "ack" header), 1.0/1.1 by "message-id".
        name = "id" if self.version == "1.2" else "message-id"
        value = frame.headers.get(name)
        if value is None:
            raise ProtocolError(
                "Missing header", f'"{frame.command}" must include the "{name}" header\n'
            )
        consumer, delivery_tag = parse_ack_id(
            value, command=frame.command, header=name, session_id=self.id
        )
        # requeue: true|false|True|False, anything else means the default (RabbitMQ).
        requeue = _BOOLEANS.get(frame.headers.get("requeue", ""))
        if requeue is None:
            requeue = self.settings.default_nack_requeue
        action = SettleAction(consumer, delivery_tag, nack, requeue)
        tx = frame.headers.get("transaction")
        if tx is None:
            await self._settle(action)
        else:
            self.transactions.add(tx, action)
        self._receipt(frame)

    async def _settle(
        self, action: SettleAction, settled_in_commit: set[tuple[str, int]] | None = None
    ) -> None:
        """basic.ack/nack one delivery (cumulatively for ack:client deliveries)."""
        key = (action.consumer_tag, action.delivery_tag)
        if settled_in_commit is not None and key in settled_in_commit:
            # An earlier cumulative ack of the same COMMIT settled it (RabbitMQ main).
            return
        multiple, older = self.acks.settle(*key)
        if settled_in_commit is not None:
            settled_in_commit.update(older)
        channel = self._channel()
        if action.nack:
            await channel.nack(action.delivery_tag, multiple=multiple, requeue=action.requeue)
        else:
            await channel.ack(action.delivery_tag, multiple=multiple)

    # ------------------------------------------------------------------ transactions
    def _transaction_id(self, frame: Frame) -> str:
        tx = frame.headers.get("transaction")
        if tx is None:
            raise ProtocolError(
                "Missing transaction", f"\"{frame.command}\" must include a 'transaction' header\n"
            )
        return tx

    async def on_begin(self, frame: Frame) -> None:
        self.transactions.begin(self._transaction_id(frame))
        self._receipt(frame)

    async def on_commit(self, frame: Frame) -> None:
        # Not atomic: each action runs in turn; one that fails gets its own ERROR and,
        # unless that ends the session, the others still run (RabbitMQ main).
        settled: set[tuple[str, int]] = set()
        for action in self.transactions.commit(self._transaction_id(frame)):
            try:
                if isinstance(action, PublishAction):
                    await self._publish(action)
                else:
                    await self._settle(action, settled)
            except StompError as err:
                if err.fatal:
                    raise
                self._fail(err)
        self._receipt(frame)

    async def on_abort(self, frame: Frame) -> None:
        self.transactions.abort(self._transaction_id(frame))
        self._receipt(frame)

    # ------------------------------------------------------------------ DISCONNECT
    async def on_disconnect(self, frame: Frame) -> None:
        # Every SEND before the DISCONNECT is confirmed (and its RECEIPT sent) first;
        # RabbitMQ 3.10.8 even drops the DISCONNECT's own receipt, later releases send it.
        try:
            await asyncio.wait_for(self.confirms_drained.wait(), CONFIRM_WAIT)
        except TimeoutError:
            pass
        self._receipt(frame)
        self._shutdown(CLOSE_NORMAL, STOMP_DIED, why="DISCONNECT")

    # ------------------------------------------------------------------ helpers
    def _check_rule(self, action: str, destination: str, frame: Frame) -> None:
        """Destination rules (gateway.rules), before anything reaches the broker."""
        if self.rules and self.user is not None:
            try:
                self.rules.check(action, destination, self.user, self.vhost or "")
            except StompError as err:
                receipt = frame.headers.get("receipt")
                if receipt is not None:
                    err.headers["receipt-id"] = receipt
                raise

    def _channel(self) -> BrokerChannel:
        if self.channel is None or self._channel_broken:
            raise BrokerError("Processing error", "The broker channel is closed\n")
        return self.channel

    _handlers: ClassVar[dict[str, Callable[[Session, Frame], Any]]] = {}


Session._handlers = {
    "CONNECT": Session.on_connect,
    "STOMP": Session.on_connect,
    "SEND": Session.on_send,
    "SUBSCRIBE": Session.on_subscribe,
    "UNSUBSCRIBE": Session.on_unsubscribe,
    "ACK": Session.on_ack,
    "NACK": Session.on_nack,
    "BEGIN": Session.on_begin,
    "COMMIT": Session.on_commit,
    "ABORT": Session.on_abort,
    "DISCONNECT": Session.on_disconnect,
}


def broker_error(exc: ChannelClosed) -> BrokerError:
    """An AMQP close -> ERROR as RabbitMQ words it: message ``not_found``, body the text."""
    name = exc.text.split(" - ", 1)[0].strip().lower() or "internal_error"
    return BrokerError(name, exc.text)


def _require_destination(frame: Frame) -> str:
    dest = frame.headers.get("destination")
    if dest is None:
        raise ProtocolError(
            "Missing destination",
            f"\"{frame.command}\" must include a 'destination' header\n",
        )
    return dest


def _int_header(headers: dict[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        raise ProcessingError() from None


_BOOLEANS = {"true": True, "True": True, "false": False, "False": False}
