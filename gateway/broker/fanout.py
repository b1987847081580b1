"""Local fan-out: sessions that subscribe to the same exchange share one broker queue.

``local_fanout`` (shared connection mode): a STOMP ``ack:auto`` subscription to a
non-durable ``/topic/KEY`` or ``/exchange/X/KEY`` with no queue options would make
RabbitMQ's plugin declare one exclusive, auto-delete queue per subscription, bind it,
and deliver every message once per subscriber. Here the subscriptions of one pooled
AMQP connection share a *group* per exchange instead:

* A group owns one exclusive, auto-delete queue named ``stomp-subscription-fanout-…``
  (so permission patterns written for the plugin's ``stomp-subscription-…`` queues
  apply), declared and consumed on a channel of its own on that connection. Each
  message reaches the gateway once and is copied to every matching subscription.
* Every subscriber binds the group queue to ``(exchange, key)`` on **its own
  channel**, so the broker checks that session's permissions (write on the queue,
  read on the exchange, topic read permission on the key) exactly as for a queue of
  its own; a refusal is that session's channel error, with RabbitMQ's wording. The
  group queue itself is declared with the credentials of the connection's user, who
  is every subscriber's user.
* Which subscriptions a message reaches: for ``amq.topic`` (the default of /topic)
  the group holds any number of binding keys and matches the routing key against
  them as a topic exchange does (``topic_match``), for ``amq.direct`` by equality,
  for ``amq.fanout`` all. For any other exchange the gateway cannot know the
  exchange type, so a group holds one binding key and every message of the group
  reaches all its subscriptions.
* When a key's last subscription goes, the key is unbound; when the group's last
  subscription goes, its channel is closed (the queue goes with its consumer). Joins
  and unbinds of one key are serialised, so a join never races an unbind.
* The group channel's consumer takes manual acks under ``delivery_window`` like any
  ack:auto consumer, and acks as soon as a message is handed to the subscribers'
  transports: one slow browser must not stall the others, so its output is bounded by
  ``max_outbound_buffer`` instead (it is then disconnected).
* If the broker cancels the group's consumer or closes its channel, every member is
  told (``on_lost``): its session ends as if its own subscription had failed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from ..logging import get_logger
from .base import ChannelClosed, Delivery, QueueSpec

if TYPE_CHECKING:
    from .amqp import AmqpChannel
    from .pool import PooledConnection

log = get_logger("gateway.fanout")

TOPIC, DIRECT, ALL = "topic", "direct", "all"
# Exchanges whose type the gateway knows without asking (they always exist, with
# these types, in every vhost). Other exchanges get one group per binding key.
KNOWN_TYPES = {"amq.topic": TOPIC, "amq.direct": DIRECT, "amq.fanout": ALL}
GROUP_TAG = "fanout"
ORPHAN_GRACE = 1.0  # seconds a new group waits for its first member


# ---------------------------------------------------------------- topic matching
def topic_words(key: str) -> tuple[str, ...]:
    """A routing or binding key as RabbitMQ splits it: "" is no word, "a." two."""
    return tuple(key.split(".")) if key else ()


def topic_match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    """Does a topic binding key match a routing key (both split by ``topic_words``)?

    ``*`` is exactly one word, ``#`` zero or more (rabbit_exchange_type_topic).
    """
    # Positions in the routing key the pattern prefix can reach, as a set.
    reach = {0}
    for word in pattern:
        if word == "#":
            start = min(reach)
            reach = set(range(start, len(words) + 1))
        elif word == "*":
            reach = {i + 1 for i in reach if i < len(words)}
        else:
            reach = {i + 1 for i in reach if i < len(words) and words[i] == word}
        if not reach:
            return False
    return len(words) in reach


# ---------------------------------------------------------------- members and routes
class Member:
    """One subscription in a group: where its copies go, and who to tell if it ends."""

    __slots__ = ("deliver", "group", "key", "lost")

    def __init__(
        self,
        deliver: Callable[[Delivery], object],
        lost: Callable[[ChannelClosed | None], None],
    ) -> None:
        self.deliver = deliver
        self.lost = lost  # None: the broker cancelled the group's consumer
        self.key = ""
        self.group: FanoutGroup | None = None

    def leave(self) -> None:
        """The subscription ends (UNSUBSCRIBE, session end); no more copies."""
        group, self.group = self.group, None
        if group is not None:
            group.remove(self)


class Routes:
    """Binding keys -> members, and which members a routing key reaches."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.by_key: dict[str, list[Member]] = {}
        # Topic keys with a wildcard, matched one by one (exact keys are a dict lookup).
        self.patterns: dict[str, tuple[str, ...]] = {}
        self.count = 0

    def add(self, key: str, member: Member) -> None:
        members = self.by_key.get(key)
        if members is None:
            members = self.by_key[key] = []
            if self.kind == TOPIC and ("*" in key or "#" in key):
                self.patterns[key] = topic_words(key)
        members.append(member)
        self.count += 1

    def remove(self, key: str, member: Member) -> bool:
        """Forget a member; True when its key has no member left."""
        members = self.by_key.get(key)
        if members is None or member not in members:
            return False
        members.remove(member)
        self.count -= 1
        if members:
            return False
        del self.by_key[key]
        self.patterns.pop(key, None)
        return True

    def has(self, key: str) -> bool:
        return key in self.by_key

    def match(self, routing_key: str) -> list[Member]:
        if self.kind == ALL:
            return [m for members in self.by_key.values() for m in members]
        exact = self.by_key.get(routing_key)
        if not self.patterns:
            return list(exact) if exact else []
        found = list(exact) if exact and routing_key not in self.patterns else []
        words = topic_words(routing_key)
        for key, pattern in self.patterns.items():
            if topic_match(pattern, words):
                found.extend(self.by_key[key])
        return found

    def members(self) -> list[Member]:
        return [m for members in self.by_key.values() for m in members]


# ---------------------------------------------------------------- groups
def group_key(exchange: str, routing_key: str) -> tuple[str, str | None]:
    return (exchange, None) if exchange in KNOWN_TYPES else (exchange, routing_key)


class FanoutGroup:
    """One shared queue on one pooled connection (see the module docstring)."""

    def __init__(self, registry: FanoutRegistry, key: tuple[str, str | None]) -> None:
        self.registry = registry
        self.key = key
        self.exchange = key[0]
        self.routes = Routes(KNOWN_TYPES.get(self.exchange, ALL))
        token = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode("ascii")
        self.queue = "stomp-subscription-fanout-" + token
        self.channel: AmqpChannel | None = None
        self.closed = False
        self.joining = 0  # joins under way (they keep an empty group open)
        self._locks: dict[str, list[Any]] = {}  # key -> [Lock, users]

    async def open(self, channel: AmqpChannel, window: int) -> None:
        """Declare and consume the group queue on its own channel."""
        self.channel = channel
        channel.set_handlers(
            self._dispatch, self._cancelled, self._channel_lost, delivery_window=window
        )
        await channel.declare_queue(
            QueueSpec(self.queue, durable=False, exclusive=True, auto_delete=True)
        )
        await channel.consume(self.queue, GROUP_TAG, no_ack=True)

    # -- members ----------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _serial(self, key: str) -> AsyncIterator[None]:
        """Joins and unbinds of one key, one at a time."""
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._locks[key]

    async def join(self, own: AmqpChannel, routing_key: str, member: Member) -> bool:
        """Bind on the subscriber's own channel (the broker checks its permissions),
        then take it in. False when the group closed meanwhile (try a new one);
        raises ChannelClosed when the broker refuses the bind."""
        self.joining += 1
        try:
            async with self._serial(routing_key):
                if self.closed:
                    return False
                await own.bind_queue(self.queue, self.exchange, routing_key)
                if self.closed:
                    return False
                member.key, member.group = routing_key, self
                self.routes.add(routing_key, member)
                return True
        finally:
            self.joining -= 1
            self.close_if_empty()

    def remove(self, member: Member) -> None:
        if self.routes.remove(member.key, member) and not self.closed:
            self.registry.spawn(self._unbind(member.key))
        self.close_if_empty()

    async def _unbind(self, routing_key: str) -> None:
        async with self._serial(routing_key):
            channel = self.channel
            if self.closed or channel is None or self.routes.has(routing_key):
                return
            try:
                await channel.unbind_queue(self.queue, self.exchange, routing_key)
            except ChannelClosed as exc:  # the group channel died: _channel_lost ran
                log.debug("fan-out unbind failed", queue=self.queue, error=exc.text)

    def close_if_empty(self) -> None:
        if self.routes.count == 0 and self.joining == 0 and not self.closed:
            self._end()
            self.registry.spawn(self._close())

    async def _close(self) -> None:
        """Cancel the consumer (the auto-delete queue goes), then close the channel."""
        channel = self.channel
        if channel is None:
            return
        with contextlib.suppress(ChannelClosed):
            await channel.cancel(GROUP_TAG)
        await channel.close()

    def _end(self) -> None:
        self.closed = True
        self.registry.forget(self)

    # -- from the group channel -----------------------------------------------------------
    def _dispatch(self, delivery: Delivery) -> bool:
        for member in self.routes.match(delivery.routing_key):
            try:
                member.deliver(delivery)
            except Exception:  # one subscriber's bug must not starve the others
                log.exception("fan-out delivery failed", queue=self.queue)
        return True  # taken: acknowledged (a message nobody matches is dropped)

    def _lost(self, exc: ChannelClosed | None) -> None:
        if self.closed:
            return
        self._end()
        members = self.routes.members()
        log.warning(
            "fan-out group lost",
            queue=self.queue,
            members=len(members),
            error=exc.text if exc is not None else "consumer cancelled",
        )
        for member in members:
            member.group = None
            with contextlib.suppress(Exception):
                member.lost(exc)
        if exc is None and self.channel is not None:
            self.registry.spawn(self.channel.close())  # the queue is gone already

    def _cancelled(self, _tag: str) -> None:
        self._lost(None)

    def _channel_lost(self, exc: ChannelClosed) -> None:
        self._lost(exc)


class FanoutRegistry:
    """The fan-out groups of one pooled AMQP connection."""

    def __init__(self, connection: PooledConnection, window: int) -> None:
        self.connection = connection
        self.window = window
        self.groups: dict[tuple[str, str | None], FanoutGroup] = {}
        self._opening: dict[tuple[str, str | None], asyncio.Future[FanoutGroup | None]] = {}

    def spawn(self, coro: Any) -> None:
        self.connection.broker._spawn(coro)

    def forget(self, group: FanoutGroup) -> None:
        if self.groups.get(group.key) is group:
            del self.groups[group.key]

    async def join(self, own: AmqpChannel, exchange: str, routing_key: str, member: Member) -> bool:
        """Join (creating the group if need be). False: no group can be had (its queue
        could not be declared): the caller subscribes the plugin's way."""
        key = group_key(exchange, routing_key)
        for _ in range(3):
            group = await self._group(key)
            if group is None:
                return False
            if await group.join(own, routing_key, member):
                return True
        return False

    async def _group(self, key: tuple[str, str | None]) -> FanoutGroup | None:
        group = self.groups.get(key)
        if group is not None and not group.closed:
            return group
        flight = self._opening.get(key)
        if flight is None:
            flight = asyncio.ensure_future(self._open(key))
            self._opening[key] = flight
            flight.add_done_callback(lambda _f: self._opening.pop(key, None))
        return await asyncio.shield(flight)

    async def _open(self, key: tuple[str, str | None]) -> FanoutGroup | None:
        pc = self.connection
        if not pc.usable:
            return None
        group = FanoutGroup(self, key)
        try:
            channel = await pc.lease_channel(confirms=False)
        except Exception as exc:
            log.info("fan-out group not opened", exchange=key[0], error=repr(exc))
            return None
        try:
            await group.open(channel, self.window)
        except Exception as exc:
            # e.g. no configure permission on stomp-subscription-*: the plugin's way
            # then gives the subscriber the broker's own refusal.
            log.info("fan-out group not opened", exchange=key[0], error=repr(exc))
            group.closed = True
            self.spawn(channel.close())
            return None
        self.groups[key] = group
        # Whoever asked may be gone before joining (its session ended): a group nobody
        # joined within ORPHAN_GRACE closes.
        asyncio.get_running_loop().call_later(ORPHAN_GRACE, group.close_if_empty)
        return group
