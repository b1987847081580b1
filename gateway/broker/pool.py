"""The broker port on RabbitMQ: AMQP connections shared per (user, vhost), or one each.

``amqp_connection_mode = "shared"`` (the default): the sessions of one user on one
vhost share a small pool of AMQP connections; each session gets its own channel on the
least-loaded one. 10,000 browsers of a handful of users need a handful of broker
connections instead of 10,000.

* Pool size. A pool grows to ``connections_per_user`` connections before connections
  are shared, and beyond that only when every connection has ``channel_max`` channels
  (the setting, capped by what the broker negotiated: RabbitMQ's default is 2047);
  a connection is opened when every connection already carries a session, so one
  session costs one connection.
  Connections are named ``stomp-gateway pool <user>@<vhost> #<n>`` in the broker's
  client properties. A connection without channels for ``pool_idle_timeout`` seconds
  is closed.
* Credentials are proven for every CONNECT (``gateway.broker.proof``): by a cached
  proof of the last login the broker accepted for that (user, vhost), less than
  ``auth_cache_ttl`` seconds old and for the very same passcode, or else by the broker
  itself: a fresh AMQP connection opened with the CONNECT's credentials, which then
  joins the pool when it has room (else it is closed). A wrong passcode never rides on
  a connection someone else opened. Concurrent CONNECTs with the same credentials wait
  for one proof instead of opening one connection each.
* Exclusive queues belong to the connection, which outlives the session: each
  connection counts the sessions that declared an exclusive queue (``/temp-queue``,
  non-durable ``/topic`` and ``/exchange`` subscriptions, ``exclusive:true`` or
  ``durable:false`` ``/queue``) and deletes it when the last of them ends. Closing a
  session's channel cancels its consumers (auto-delete queues go) and requeues its
  unacknowledged deliveries, as closing a connection did.
* Local fan-out (``local_fanout``): ack:auto subscriptions to the same exchange on one
  connection share a queue (``gateway.broker.fanout``).
* A channel error ends one session; the connection and the other sessions on it go on.
  A connection error (the broker restarting, the network cut, missed heart-beats) ends
  every session on that connection: each gets an ERROR (``connection_forced``) and a
  close, the proof of that user is dropped, and the broker monitor probes the broker.

``amqp_connection_mode = "per_session"``: each session opens its own connection
(named ``stomp-gateway <client address>``) with its own credentials, as
rabbitmq_web_stomp does inside the broker: exclusive queues, connection limits and
OAuth 2 token expiry then apply per session.

Both modes open connections through ``gateway.broker.connector``: a rate limit
(``connection_open_rate``, queued up to ``connect_queue_timeout``), the broker URLs in
turn, ``connect_timeout`` per attempt; and both refuse a CONNECT at once while the
broker monitor knows the broker is down.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from contextlib import suppress
from functools import partial
from typing import TYPE_CHECKING, Any

import aiormq

from ..logging import get_logger
from .amqp import AmqpChannel
from .base import AuthenticationFailed, BrokerUnavailable, Credentials
from .connector import BrokerMonitor, Connector, Endpoints, GatewayConnection, parse_urls
from .fanout import FanoutRegistry
from .proof import Key, ProofCache

if TYPE_CHECKING:
    from ..settings import Settings

log = get_logger("gateway.broker")

RELEASE_TIMEOUT = 5.0  # seconds to delete a session's exclusive queues and close its channel
CLOSE_TIMEOUT = 5.0  # seconds to close a connection cleanly
NO_CHANNEL_MAX = 65535  # channel_max 0 from the broker means "no limit"


class _Connection:
    """An AMQP connection the broker port opened, and how it ends."""

    def __init__(self, broker: AmqpBroker, conn: GatewayConnection) -> None:
        self.broker = broker
        self.conn = conn
        self.closing = False  # we close it: not a loss
        self.lost = False
        conn.closing.add_done_callback(self._closed)
        broker._connections.add(self)

    @property
    def usable(self) -> bool:
        return not (self.closing or self.lost or self.conn.is_closed)

    def _closed(self, _fut: asyncio.Future[Any]) -> None:
        self.broker._connections.discard(self)
        if self.closing:
            return
        self.lost = True
        log.warning("broker connection lost", connection=self.describe())
        self.broker._spawn(_unblock_writers(self.conn))
        self.on_lost()
        self.broker.monitor.suspect()

    def on_lost(self) -> None:
        return None

    def describe(self) -> str:
        return self.conn.name

    async def close(self) -> None:
        self.closing = True
        self.broker._connections.discard(self)
        with suppress(Exception):
            await asyncio.wait_for(self.conn.close(), CLOSE_TIMEOUT)
        # aiormq finishes its writer in an untracked task once its reader has ended;
        # give it the loop turns it needs so no half-closed socket outlives us.
        for _ in range(2):
            await asyncio.sleep(0)


class OwnConnection(_Connection):
    """per_session mode: the session's own connection, closed with its channel."""

    fanout = None  # one session per connection: nothing to share

    def track_exclusive(self, queue: str) -> None:
        return None  # exclusive queues go with the connection

    async def release(self, raw: aiormq.abc.AbstractChannel, exclusive: list[str]) -> None:
        await self.close()


class PooledConnection(_Connection):
    """shared mode: one connection of a (user, vhost) pool, carrying many channels."""

    def __init__(self, broker: AmqpBroker, pool: UserPool, conn: GatewayConnection) -> None:
        self.pool = pool
        self.load = 0  # channels leased to sessions (booked before they are open)
        self.exclusive: Counter[str] = Counter()
        tuned = int(conn.connection_tune.channel_max or NO_CHANNEL_MAX)
        self.channel_max = min(tuned, broker.channel_max) if broker.channel_max else tuned
        self._cursor = 0
        self._idle: asyncio.TimerHandle | None = None
        # Local fan-out groups of this connection (gateway.broker.fanout), or None.
        self.fanout = FanoutRegistry(self, broker.fanout_window) if broker.local_fanout else None
        super().__init__(broker, conn)

    def on_lost(self) -> None:
        self.pool.discard(self)
        self.broker.proofs.forget(self.pool.key)

    # -- channels ---------------------------------------------------------------------------
    def _free_number(self) -> int | None:
        used = self.conn.channels
        for _ in range(self.channel_max):
            self._cursor = self._cursor % self.channel_max + 1
            if self._cursor not in used:
                return self._cursor
        return None

    async def open_channel(self, *, confirms: bool = True) -> aiormq.abc.AbstractChannel:
        number = self._free_number()
        if number is None:
            raise BrokerUnavailable("no free channel number")
        channel: aiormq.abc.AbstractChannel = await self.conn.channel(
            number, publisher_confirms=confirms, timeout=self.broker.connect_timeout
        )
        return channel

    async def lease_channel(self, *, confirms: bool = True) -> AmqpChannel:
        """A channel on this connection, counted in its load until closed."""
        self.book()
        try:
            raw = await self.open_channel(confirms=confirms)
        except BaseException:
            self.unbook()
            raise
        return AmqpChannel(raw, self)

    def book(self) -> None:
        self.load += 1
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def unbook(self) -> None:
        self.load -= 1
        if self.load == 0 and self.usable:
            loop = asyncio.get_running_loop()
            self._idle = loop.call_later(self.broker.idle_timeout, self._close_if_idle)

    async def close(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        await super().close()

    def _close_if_idle(self) -> None:
        self._idle = None
        if self.load == 0 and self.usable:
            self.pool.discard(self)
            self.broker._spawn(self.close())

    # -- ChannelLease -----------------------------------------------------------------------
    def track_exclusive(self, queue: str) -> None:
        self.exclusive[queue] += 1

    async def release(self, raw: aiormq.abc.AbstractChannel, exclusive: list[str]) -> None:
        doomed = []
        for queue in exclusive:
            self.exclusive[queue] -= 1
            if self.exclusive[queue] <= 0:
                del self.exclusive[queue]
                doomed.append(queue)
        try:
            if self.usable:
                await asyncio.wait_for(self._tidy(raw, doomed), RELEASE_TIMEOUT)
        except Exception as exc:  # a stalled broker, a dying connection: it goes anyway
            log.debug("channel release incomplete", error=repr(exc))
        finally:
            self.unbook()

    async def _tidy(self, raw: aiormq.abc.AbstractChannel, doomed: list[str]) -> None:
        """Delete the session's last exclusive queues, then close its channel."""
        channel, spare = raw, None
        for queue in doomed:
            if channel.is_closed:  # the session's channel died (a channel error)
                spare = channel = await self.open_channel(confirms=False)
            with suppress(aiormq.exceptions.AMQPError):
                # Idempotent in RabbitMQ; a queue another connection holds
                # exclusively closes the channel (RESOURCE_LOCKED): next one.
                await channel.queue_delete(queue)
        for ch in (raw, spare):
            if ch is not None and not ch.is_closed:
                await ch.close()


class UserPool:
    """The connections of one (user, vhost)."""

    def __init__(self, broker: AmqpBroker, key: Key) -> None:
        self.broker = broker
        self.key = key
        self.connections: list[PooledConnection] = []
        self.opening = 0  # connections being opened for this pool
        self.serial = 0
        self._changed = asyncio.Event()  # set (and replaced) when an opening ends

    def name(self) -> str:
        self.serial += 1
        login, vhost = self.key
        return f"stomp-gateway pool {login}@{vhost} #{self.serial}"

    def opened(self) -> None:
        """An opening (for growth or for a proof) ended: wake sessions waiting for it."""
        self.opening -= 1
        self._changed.set()
        self._changed = asyncio.Event()

    def discard(self, pc: PooledConnection) -> None:
        if pc in self.connections:
            self.connections.remove(pc)
        if not self.connections and not self.opening:
            self.broker._pools.pop(self.key, None)

    def live(self) -> list[PooledConnection]:
        return [pc for pc in self.connections if pc.usable]

    def least_loaded(self) -> PooledConnection | None:
        room = [pc for pc in self.live() if pc.load < pc.channel_max]
        return min(room, key=lambda pc: pc.load) if room else None

    def should_grow(self) -> bool:
        """Grow while every connection already carries sessions and the pool is not full
        (one session: one connection; ten: ``connections_per_user``), or when every
        connection is at ``channel_max``."""
        best = self.least_loaded()
        if best is None:
            return True
        live = len(self.live()) + self.opening
        return best.load > 0 and live < self.broker.connections_per_user

    def adopt(self, conn: GatewayConnection) -> bool:
        """Keep a connection opened to prove a login, if the pool has room for it."""
        if len(self.live()) >= self.broker.connections_per_user:
            return False
        self.connections.append(PooledConnection(self.broker, self, conn))
        self.broker._pools.setdefault(self.key, self)
        return True

    async def lease(self, credentials: Credentials) -> AmqpChannel:
        for attempt in range(3):
            pc = await self._pick(credentials)
            try:
                return await pc.lease_channel()
            except (aiormq.exceptions.AMQPError, RuntimeError, TimeoutError, OSError) as exc:
                if attempt == 2:
                    raise BrokerUnavailable(f"cannot open a channel: {exc!r}") from exc
                # that connection is dying: another one
        raise AssertionError("unreachable")

    async def _pick(self, credentials: Credentials) -> PooledConnection:
        while self.least_loaded() is None and self.opening:
            # Every connection is full and another session is opening one: wait for it
            # rather than open one more each.
            await self._changed.wait()
        if not self.should_grow():
            pc = self.least_loaded()
            assert pc is not None
            return pc
        self.opening += 1
        try:
            conn = await self.broker.connector.open(credentials, self.name())
        except BrokerUnavailable:
            pc = self.least_loaded()  # cannot grow now: share what there is
            if pc is None:
                raise
            return pc
        finally:
            self.opened()  # waiters run after the caller booked its channel on it
        pc = PooledConnection(self.broker, self, conn)
        self.connections.append(pc)
        self.broker._pools.setdefault(self.key, self)
        return pc


class AmqpBroker:
    """``Broker`` on RabbitMQ (see the module docstring)."""

    def __init__(
        self,
        amqp_url: str | Sequence[str] = "amqp://127.0.0.1:5672/",
        *,
        mode: str = "shared",
        connections_per_user: int = 2,
        channel_max: int = 0,
        auth_cache_ttl: float = 30.0,
        connect_timeout: float = 5.0,
        connection_open_rate: float = 50.0,
        connect_queue_timeout: float = 30.0,
        idle_timeout: float = 10.0,
        check_interval: float = 10.0,
        local_fanout: bool = False,
        fanout_window: int = 1000,
    ) -> None:
        if mode not in ("shared", "per_session"):
            raise ValueError(f"amqp_connection_mode must be shared or per_session, not {mode!r}")
        urls = parse_urls(amqp_url) if isinstance(amqp_url, str) else parse_urls("", amqp_url)
        self.mode = mode
        self.connections_per_user = connections_per_user
        self.channel_max = channel_max
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.local_fanout = local_fanout and mode == "shared"
        self.fanout_window = fanout_window
        self.endpoints = Endpoints(urls)
        self.monitor = BrokerMonitor(
            self.endpoints,
            timeout=connect_timeout,
            check_interval=check_interval,
            holds_connections=lambda: bool(self._connections),
        )
        self.connector = Connector(
            self.endpoints,
            self.monitor,
            timeout=connect_timeout,
            rate=connection_open_rate,
            queue_timeout=connect_queue_timeout,
        )
        self.proofs = ProofCache(auth_cache_ttl if mode == "shared" else 0.0)
        self._pools: dict[Key, UserPool] = {}
        self._proving: dict[tuple[Key, bytes], asyncio.Future[None]] = {}
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Future[Any]] = set()

    @classmethod
    def from_settings(cls, settings: Settings) -> AmqpBroker:
        s: Any = settings
        urls: Sequence[str] | str = list(getattr(s, "amqp_urls", []) or []) or s.amqp_url
        return cls(
            urls,
            mode=getattr(s, "amqp_connection_mode", "shared"),
            connections_per_user=getattr(s, "connections_per_user", 2),
            channel_max=getattr(s, "channel_max", 0),
            auth_cache_ttl=getattr(s, "auth_cache_ttl", 30.0),
            connect_timeout=s.connect_timeout,
            connection_open_rate=getattr(s, "connection_open_rate", 50.0),
            connect_queue_timeout=getattr(s, "connect_queue_timeout", 30.0),
            idle_timeout=getattr(s, "pool_idle_timeout", 10.0),
            local_fanout=getattr(s, "local_fanout", False),
            fanout_window=getattr(s, "delivery_window", 1000),
        )

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Probe the broker once (readiness), then keep watching it."""
        await self.monitor.start()

    def ready(self) -> bool:
        return self.monitor.ready()

    async def close(self) -> None:
        await self.monitor.stop()
        await asyncio.gather(*[c.close() for c in list(self._connections)])
        # Idle closes and write-queue drains under way finish (bounded), then go.
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=CLOSE_TIMEOUT)
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._pools.clear()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- introspection (tests, metrics) -------------------------------------------------------
    def pool_connections(self, login: str, vhost: str = "/") -> int:
        pool = self._pools.get((login, vhost))
        return len(pool.live()) if pool is not None else 0

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    # -- Broker -------------------------------------------------------------------------------
    async def open_channel(self, credentials: Credentials) -> AmqpChannel:
        if self.monitor.is_down():
            # Circuit open: no CONNECT waits for a broker known to be away.
            raise BrokerUnavailable("broker down")
        if self.mode == "per_session":
            return await self._own_channel(credentials)
        return await self._shared_channel(credentials)

    async def _own_channel(self, credentials: Credentials) -> AmqpChannel:
        name = f"stomp-gateway {credentials.peer}".strip()
        conn = await self.connector.open(credentials, name)
        own = OwnConnection(self, conn)
        try:
            raw = await conn.channel(publisher_confirms=True, timeout=self.connect_timeout)
        except BaseException as exc:
            await own.close()
            if isinstance(exc, Exception):
                raise BrokerUnavailable(f"cannot open a channel: {exc!r}") from exc
            raise
        return AmqpChannel(raw, own)

    async def _shared_channel(self, credentials: Credentials) -> AmqpChannel:
        key = (credentials.login, credentials.vhost)
        proofs = self.proofs
        if proofs.enabled:
            digest = await proofs.digest_async(*key, credentials.passcode)
            if proofs.refused(key, digest):
                raise AuthenticationFailed(credentials.login)
            if not proofs.proven(key, digest):
                await self._prove_once(key, digest, credentials)
        else:
            await self._prove(key, None, credentials)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = UserPool(self, key)
        return await pool.lease(credentials)

    async def _prove_once(self, key: Key, digest: bytes, credentials: Credentials) -> None:
        """Concurrent CONNECTs with the same credentials share one proof."""
        flight = self._proving.get((key, digest))
        if flight is None:
            flight = asyncio.ensure_future(self._prove(key, digest, credentials))
            self._proving[(key, digest)] = flight
            flight.add_done_callback(partial(_forget_flight, self._proving, (key, digest)))
        await asyncio.shield(flight)

    async def _prove(self, key: Key, digest: bytes | None, credentials: Credentials) -> None:
        """Log in to the broker with these credentials; keep the connection if the pool
        has room for it."""
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = UserPool(self, key)
        pool.opening += 1
        try:
            conn = await self.connector.open(credentials, pool.name())
        except BaseException as exc:
            pool.opened()
            if not pool.connections and not pool.opening:
                self._pools.pop(key, None)
            if isinstance(exc, AuthenticationFailed) and digest is not None:
                self.proofs.remember_refusal(key, digest)
            raise
        if digest is not None:
            self.proofs.remember(key, digest)
        adopted = self._pools.setdefault(key, pool).adopt(conn)
        pool.opened()
        if not adopted:
            await _Connection(self, conn).close()


def _forget_flight(
    flights: dict[tuple[Key, bytes], asyncio.Future[None]],
    key: tuple[Key, bytes],
    flight: asyncio.Future[None],
) -> None:
    if flights.get(key) is flight:
        del flights[key]
    if not flight.cancelled():
        flight.exception()  # retrieved: waiters that left do not leave it unread


async def _unblock_writers(conn: aiormq.Connection) -> None:
    """A dead connection's writer is gone: empty its write queue until no publisher is
    left waiting for room in it (they then see the closed channel)."""
    queue = conn.write_queue
    for _ in range(10_000):
        while not queue.empty():
            queue.get_nowait()
        await asyncio.sleep(0)
        if queue.empty():
            return
