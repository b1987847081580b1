"""A session's clocks: heart-beats both ways, the login and idle timeouts, token expiry.

* Outbound: every half of the negotiated interval, a bare EOL when nothing else went
  out meanwhile (the client gets at least one beat per interval).
* Inbound: checked every interval; an interval in which nothing arrived is a miss,
  two misses in a row close the session without an ERROR frame (RabbitMQ).
* ``login_timeout`` closes a session that never logged in; ``idle_timeout`` (WebSocket
  only, Cowboy's) one that sent nothing at all for that long.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .errors import StompError
from .metrics import METRICS
from .states import CLOSE_NORMAL, STOMP_DIED, SessionPart, State


class HeartBeats(SessionPart):
    """The timer side of ``gateway.session.Session`` (a mixin; its state lives there)."""

    if not TYPE_CHECKING:
        __slots__ = ()  # see SessionPart

    # Session's state this part uses (see SessionPart):
    _beat_checked: float
    _idle_timeout: float
    _idle_timer: asyncio.TimerHandle | None
    _last_in: float
    _last_out: float
    _missed_beats: int
    _recv_interval: float
    _send_interval: float
    _timers: list[asyncio.TimerHandle]

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
