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
* The session's state is all here; three mixins hold the rest of its methods:
  ``gateway.publishing`` (SEND, confirms, RECEIPTs), ``gateway.subscribing``
  (SUBSCRIBE, UNSUBSCRIBE, deliveries, local fan-out) and ``gateway.heartbeats``
  (heart-beats, login and idle timeouts, token expiry).
* One broker channel per session, as RabbitMQ 3.x-4.3 have it: a channel error
  (not_found, access_refused, precondition_failed...) ends the whole session,
  every subscription included.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any, ClassVar

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
    VhostAccessDenied,
)
from .errors import (
    BrokerError,
    ConnectError,
    ProcessingError,
    ProtocolError,
    StompError,
    broker_error,
)
from .handshake import (
    ERROR_VERSION_HEADER,
    is_loopback,
    negotiate_version,
    new_session_id,
    parse_heart_beat,
)
from .heartbeats import HeartBeats
from .limits import LimitExceeded, breach
from .logging import get_logger
from .metrics import METRICS
from .publishing import Publishing, Unconfirmed
from .rules import Rules
from .settings import Settings
from .states import (
    CLOSE_GOING_AWAY,
    CLOSE_INVALID_DATA,
    CLOSE_NORMAL,
    MAX_CLOSE_REASON,
    STOMP_DIED,
    Transport,
)
from .states import (
    State as State,
)
from .stomp import Frame, FrameError, FrameParser, encode_frame
from .subscribing import Subscribing, Subscription
from .transactions import PublishAction, SettleAction, Transactions

log = get_logger("gateway.session")


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


def error_frame(err: StompError) -> bytes:
    headers: list[tuple[str, str]] = [
        ("message", err.message),
        ("content-type", "text/plain"),
        ("version", ERROR_VERSION_HEADER),
        *err.headers.items(),
    ]
    # Bodies quote client input, which may be any bytes (decoded with surrogateescape).
    return encode_frame("ERROR", headers, err.body.encode("utf-8", "surrogateescape"))


class Session(Subscribing, Publishing, HeartBeats):
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


_BOOLEANS = {"true": True, "True": True, "false": False, "False": False}
