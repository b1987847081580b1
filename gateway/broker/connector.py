"""Opening AMQP connections: broker URLs, a rate limit, and a watch on the broker.

* ``Endpoints``: the broker URLs (``amqp_url`` may list several, comma-separated, or
  ``amqp_urls`` as a list: cluster nodes). Connections go to the preferred one; on a
  failure the next ones are tried in turn, and the first that answers becomes the
  preferred one.
* ``TokenBucket``: ``connection_open_rate`` AMQP connection opens per second (burst of
  one second's worth). A CONNECT that finds no token waits its turn (first come, first
  served) for up to ``connect_queue_timeout`` seconds instead of failing: a reconnect
  storm of thousands of browsers is spread out rather than thrown at the broker.
* ``Connector.open``: one AMQP connection with a session's exact credentials. aiormq's
  own PLAIN mechanism replaces an empty login or passcode with "guest"; ours sends what
  the client sent, and the passcode is not kept in the connection's URL.
* ``BrokerMonitor``: is the broker there? A probe opens a TCP connection, sends the
  AMQP protocol header and waits for ``Connection.Start`` (no login, so no credentials
  are needed and RabbitMQ logs no authentication failure). The monitor marks the
  broker down when a connection cannot be opened or a probe fails, probes again with
  exponential backoff and jitter until it answers, and while the broker is up and the
  gateway holds no connection (whose heart-beats would notice a loss) probes every
  ``check_interval`` seconds. Readiness (``/readyz``) and the circuit breaker (a CONNECT
  is refused at once while the broker is known down) read its state.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any

import aiormq
from yarl import URL

from ..logging import get_logger
from .base import AuthenticationFailed, BrokerUnavailable, Credentials, VhostAccessDenied

log = get_logger("gateway.broker")

PRODUCT = "stomp-gateway"
DEFAULT_HEARTBEAT = 10  # seconds, unless the URL says ?heartbeat=N (aiormq's default is 60)
AMQP_HEADER = b"AMQP\x00\x00\x09\x01"


class BrokerBusy(BrokerUnavailable):
    """No connection could be opened within the bounded wait of the rate limit."""


def parse_urls(amqp_url: str, amqp_urls: Sequence[str] = ()) -> list[URL]:
    """``amqp_urls`` when given, else ``amqp_url`` split on commas; user and password
    are dropped (every connection logs in with a session's credentials)."""
    texts = list(amqp_urls) or [part for part in amqp_url.split(",")]
    urls = []
    for text in texts:
        text = text.strip()
        if not text:
            continue
        url = URL(text)
        if url.scheme not in ("amqp", "amqps") or not url.host:
            raise ValueError(f"not an AMQP URL: {url.with_password(None)}")
        query = dict(url.query)  # cafile, certfile, heartbeat, ... (aiormq reads them)
        query.setdefault("heartbeat", str(DEFAULT_HEARTBEAT))
        port = url.port or (5671 if url.scheme == "amqps" else 5672)
        # No user, password or vhost: each connection logs in as a session asks.
        urls.append(URL.build(scheme=url.scheme, host=url.host, port=port, path="/", query=query))
    if not urls:
        raise ValueError("no AMQP URL given")
    return urls


class Endpoints:
    """The broker URLs and which one to try first."""

    def __init__(self, urls: Sequence[URL]) -> None:
        self.urls = list(urls)
        self.preferred = 0

    def in_turn(self) -> list[tuple[int, URL]]:
        n = len(self.urls)
        return [((self.preferred + i) % n, self.urls[(self.preferred + i) % n]) for i in range(n)]


class TokenBucket:
    """At most ``rate`` acquisitions per second on average, bursts of ``burst``.

    Generic cell rate algorithm: each acquisition books the next free slot, so waiters
    are served in arrival order without a lock or a queue of their own.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = 1.0 / rate
        self.tolerance = (max(1.0, burst if burst is not None else rate) - 1.0) * self.interval
        self._clock = clock
        self._tat = clock()  # theoretical arrival time of the next acquisition

    def reserve(self, max_wait: float) -> float | None:
        """Book a slot and return how long to wait for it, or None (nothing booked)
        when that would be longer than ``max_wait``."""
        now = self._clock()
        tat = max(self._tat, now)
        start = max(now, tat - self.tolerance)
        delay = start - now
        if delay < 1e-6:  # float noise: a free slot
            delay = 0.0
        if delay > max_wait + 1e-6:
            return None
        self._tat = tat + self.interval
        return delay

    async def acquire(self, max_wait: float) -> None:
        delay = self.reserve(max_wait)
        if delay is None:
            raise BrokerBusy("too many AMQP connections being opened: try again later")
        if delay > 0:
            await asyncio.sleep(delay)


class _ExactPlain:
    """SASL PLAIN with the credentials as given (aiormq turns "" into "guest")."""

    name = "PLAIN"

    def __init__(self, login: str, passcode: str) -> None:
        self._response = f"\0{login}\0{passcode}"

    def value(self, _connection: object) -> _ExactPlain:
        return self

    def marshal(self) -> str:
        return self._response


class GatewayConnection(aiormq.Connection):
    """aiormq's connection, logging in with exact credentials that it then forgets."""

    def __init__(self, url: URL, credentials: Credentials, name: str) -> None:
        super().__init__(url, client_properties={"connection_name": name, "product": PRODUCT})
        self.name = name
        self.vhost = credentials.vhost  # exact, not parsed back out of a URL path
        self.login = credentials.login
        self._gateway_passcode: str | None = credentials.passcode

    def _credentials_class(self, start_frame: Any) -> Any:  # an AuthMechanism look-alike
        if "PLAIN" not in str(start_frame.mechanisms).split():
            raise aiormq.exceptions.AuthenticationError(start_frame.mechanisms, ["PLAIN"])
        passcode, self._gateway_passcode = self._gateway_passcode or "", None
        return _ExactPlain(self.login, passcode)


class BrokerMonitor:
    """Up, down or unknown (before the first probe); see the module docstring."""

    def __init__(
        self,
        endpoints: Endpoints,
        *,
        timeout: float,
        check_interval: float = 10.0,
        max_backoff: float = 5.0,
        holds_connections: Callable[[], bool] = lambda: False,
    ) -> None:
        self._endpoints = endpoints
        self._timeout = timeout
        self._check_interval = check_interval
        self._max_backoff = max_backoff
        self._holds_connections = holds_connections
        self.state = "unknown"
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.probes = 0

    def ready(self) -> bool:
        return self.state == "up"

    def is_down(self) -> bool:
        return self.state == "down"

    async def start(self) -> None:
        if self._task is None:
            await self._probe()
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    # -- what connections observe ---------------------------------------------------------
    def saw_up(self) -> None:
        """A connection opened: the broker answers."""
        self._set("up")

    def saw_down(self, why: str) -> None:
        """No broker URL answered a connection attempt: open the circuit, probe soon."""
        if self.state != "down":
            log.warning("broker unreachable", reason=why)
        self._set("down")
        self._wake.set()

    def suspect(self) -> None:
        """A connection was lost: probe now (the broker may be restarting)."""
        self._wake.set()

    # -- probing ----------------------------------------------------------------------------
    def _set(self, state: str) -> None:
        if state != self.state:
            if state == "up" and self.state == "down":
                log.info("broker reachable again")
            self.state = state

    async def _run(self) -> None:
        failures = 0
        while True:
            if self.state == "down":
                # Exponential backoff with "equal jitter": half fixed, half random.
                delay = min(self._max_backoff, 0.25 * 2**failures)
                delay = delay / 2 + random.uniform(0, delay / 2)
                failures += 1
            else:
                delay = self._check_interval
                failures = 0
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            woken = self._wake.is_set()
            self._wake.clear()
            if self.state == "up" and not woken and self._holds_connections():
                continue  # their heart-beats watch the broker
            await self._probe()

    async def _probe(self) -> bool:
        self.probes += 1
        for index, url in self._endpoints.in_turn():
            if await self._probe_one(url):
                self._endpoints.preferred = index
                self._set("up")
                return True
        if self.state != "down":
            log.warning("broker unreachable", reason="probe failed")
        self._set("down")
        return False

    async def _probe_one(self, url: URL) -> bool:
        """TCP connect, AMQP header, wait for a Connection.Start frame (type 1, channel 0).
        For amqps:// only the TCP connection is checked."""
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(min(self._timeout, 5.0)):
                reader, writer = await asyncio.open_connection(url.host, url.port)
                if url.scheme == "amqps":
                    return True
                writer.write(AMQP_HEADER)
                head = await reader.readexactly(7)
                return head[0] == 1 and head[1:3] == b"\x00\x00"
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            return False
        finally:
            if writer is not None:
                writer.close()
                with suppress(OSError):
                    await writer.wait_closed()


class Connector:
    """Opens AMQP connections: rate-limited, URLs in turn, reporting to the monitor."""

    def __init__(
        self,
        endpoints: Endpoints,
        monitor: BrokerMonitor,
        *,
        timeout: float,
        rate: float,
        queue_timeout: float,
    ) -> None:
        self.endpoints = endpoints
        self.monitor = monitor
        self.timeout = timeout
        self.queue_timeout = queue_timeout
        self.bucket = TokenBucket(rate)
        self.attempts = 0  # logins tried (for tests and metrics)
        self.opened = 0  # connections opened

    async def open(self, credentials: Credentials, name: str) -> GatewayConnection:
        """Raises AuthenticationFailed, VhostAccessDenied, BrokerUnavailable (BrokerBusy)."""
        await self.bucket.acquire(self.queue_timeout)
        self.attempts += 1
        reason = "no broker URL"
        for index, url in self.endpoints.in_turn():
            connection = GatewayConnection(url, credentials, name)
            try:
                await asyncio.wait_for(connection.connect(), self.timeout)
            except aiormq.exceptions.ProbableAuthenticationError:
                raise AuthenticationFailed(credentials.login) from None
            except aiormq.exceptions.AuthenticationError:
                raise AuthenticationFailed(credentials.login) from None
            except (
                aiormq.exceptions.ConnectionClosed,
                aiormq.exceptions.InvalidFrameError,
            ) as exc:
                if exc.args and exc.args[0] == 320:  # CONNECTION_FORCED: shutting down
                    reason = f"{url.host}:{url.port}: {exc!r}"
                    continue
                # RabbitMQ answers connection.open for an unknown or forbidden vhost (and
                # for vhost/user connection limits) with Connection.Close.
                raise VhostAccessDenied(credentials.vhost) from exc
            except (TimeoutError, OSError, EOFError, aiormq.exceptions.AMQPError) as exc:
                reason = f"{url.host}:{url.port}: {exc!r}"
                with suppress(Exception):
                    await connection.close()
                continue
            self.endpoints.preferred = index
            self.opened += 1
            self.monitor.saw_up()
            return connection
        self.monitor.saw_down(reason)
        raise BrokerUnavailable(reason)
