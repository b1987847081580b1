"""The broker port's channel on aiormq: one AMQP channel per session.

Where the channel's connection comes from is ``gateway.broker.pool``'s business
(a connection shared by the sessions of one user and vhost, or one of the session's
own); the channel reaches it through a ``ChannelLease``: the lease counts the
exclusive queues the session declared (they belong to the connection, which may
outlive the session) and, at ``close``, deletes them and gives the channel back.
The channel work goes through aiormq directly. Two reasons on the hot paths:

* aiormq's ``basic_publish`` stamps a random ``message_id`` on every message that has
  none, which RabbitMQ's STOMP plugin never does (a stomp.js app would suddenly see an
  ``amqp-message-id`` header), and it awaits the confirm, which would serialise SENDs.
  ``publish`` below writes the same frames itself and hands back the confirm future.
* the per-message work (deliveries, publishes, confirms, acks) bypasses aiormq's
  generic machinery: ``gateway.broker.hotpath`` reads frames in bulk, hands deliveries
  to the session synchronously, and writes a loop turn's publishes and acks at once.
  Consumers of STOMP ack:auto subscriptions take manual acks under a delivery window
  there, so a client that does not read stops the broker instead of filling memory.

Every channel runs in publisher-confirm mode, so a SEND's RECEIPT can wait for the
broker's basic.ack (RabbitMQ's plugin switches lazily on the first receipt; a
channel that is always in confirm mode behaves the same for the client).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any, Protocol

import aio_pika
import aiormq
from pamqp import commands as spec
from pamqp import decode as pamqp_decode
from pamqp import encode as pamqp_encode

from .base import (
    CancelHandler,
    ChannelClosed,
    CloseHandler,
    Delivery,
    DeliveryHandler,
    Long,
    NarrowInt,
    Properties,
    PublishNacked,
    QueueSpec,
)
from .fanout import FanoutRegistry, Member
from .hotpath import AUTO, CLIENT, NO_ACK, ChannelPump, install

install()  # every aiormq connection of this process reads frames the fast way

BROKER_LOST = "CONNECTION_FORCED - broker connection lost"


def _channel_closed(exc: BaseException | None) -> ChannelClosed:
    """aiormq's exception for a Channel.Close / Connection.Close -> (code, text).

    aiormq raises e.g. ``ChannelNotFoundEntity("NOT_FOUND - no exchange 'x' in vhost
    '/'")``: the broker's reply text is the first argument, its code the class's; a
    Connection.Close it has no class for comes as ``ConnectionClosed(code, text)``
    (RabbitMQ shutting down: 320 "CONNECTION_FORCED - broker forced connection closure
    with reason 'shutdown'"). A connection that just died (reset, EOF, missed
    heart-beats) is 320 ``BROKER_LOST``.
    """
    if isinstance(exc, ChannelClosed):
        return exc
    if (
        exc is not None
        and len(exc.args) >= 2
        and isinstance(exc.args[0], int)
        and isinstance(exc.args[1], str)
        and " - " in exc.args[1]
    ):
        return ChannelClosed(exc.args[0], exc.args[1])
    text = exc.args[0] if exc is not None and exc.args else None
    if isinstance(text, str) and " - " in text:
        frame = exc.args[1] if exc is not None and len(exc.args) > 1 else None
        code = getattr(frame, "reply_code", None) or getattr(exc, "code", 0)
        return ChannelClosed(code if isinstance(code, int) else 0, text)
    return ChannelClosed(320, BROKER_LOST)


def _encode_table_integer(value: int, _default: Any = pamqp_encode.table_integer) -> bytes:
    """pamqp picks the smallest integer type; a ``Long`` is always sent as 'l'."""
    if type(value) is Long:
        return b"l" + pamqp_encode.long_long_int(value)
    result: bytes = _default(value)
    return result


# pamqp looks this name up at call time; only ``Long`` values are treated differently.
pamqp_encode.table_integer = _encode_table_integer


def _narrow(decoder: Callable[..., Any]) -> Callable[[bytes], tuple[int, Any]]:
    def decode(value: bytes) -> tuple[int, Any]:
        consumed, number = decoder(value)
        return consumed, NarrowInt(number)

    return decode


# Mark the table integer types RabbitMQ's STOMP plugin drops from MESSAGE headers.
for _code in (b"b", b"B", b"s", b"u", b"i", b"L"):
    pamqp_decode.TABLE_MAPPING[_code] = _narrow(pamqp_decode.TABLE_MAPPING[_code])


def _to_amqp_properties(p: Properties) -> spec.Basic.Properties:
    return spec.Basic.Properties(
        content_type=p.content_type,
        content_encoding=p.content_encoding,
        headers=p.headers,
        delivery_mode=p.delivery_mode,
        priority=p.priority,
        correlation_id=p.correlation_id,
        reply_to=p.reply_to,
        expiration=p.expiration,
        message_id=p.message_id,
        timestamp=datetime.fromtimestamp(p.timestamp, UTC) if p.timestamp is not None else None,
        message_type=p.type,
        user_id=p.user_id,
        app_id=p.app_id,
    )


async def _never_called(_message: Any) -> None:
    """aiormq wants a consumer callback; the pump takes the deliveries before it."""


class ChannelLease(Protocol):
    """Where a channel's connection comes from (see ``gateway.broker.pool``)."""

    def track_exclusive(self, queue: str) -> None:
        """The session declared this exclusive queue on the lease's connection."""

    async def release(self, raw: aiormq.abc.AbstractChannel, exclusive: list[str]) -> None:
        """Delete the session's exclusive queues, close the channel, give it back."""

    @property
    def fanout(self) -> FanoutRegistry | None:
        """The connection's local fan-out groups (None: no local fan-out)."""


class AmqpChannel:
    """One session's AMQP channel, on a connection its lease provides."""

    def __init__(self, raw: aiormq.abc.AbstractChannel, lease: ChannelLease) -> None:
        self._raw = raw
        self._lease: ChannelLease | None = lease
        self._exclusive: list[str] = []  # exclusive queues this session declared
        self._on_delivery: DeliveryHandler | None = None
        self._on_cancel: CancelHandler | None = None
        self._on_close: CloseHandler | None = None
        self._closing = False
        self._raw.on_consumer_cancel_callbacks.add(self._cancelled)
        # Done when the broker closes the channel, or when its connection dies. aiormq's
        # own future, watched for the pump too: each ``raw.closing`` is a new observer
        # future with two closures (~1 KiB a session for the two of them).
        watch: Any = raw._closing if isinstance(raw, aiormq.base.Base) else raw.closing
        self._watch: asyncio.Future[Any] = watch
        self._watch.add_done_callback(self._channel_gone)

    # -- callbacks from aiormq ----------------------------------------------------------------
    def _cancelled(self, frame: spec.Basic.Cancel) -> None:
        if self._on_cancel is not None and frame.consumer_tag:
            self._on_cancel(frame.consumer_tag)

    def _channel_gone(self, closing: asyncio.Future[Any]) -> None:
        self._gone = True
        exc = None if closing.cancelled() else closing.exception()
        if not self._closing:
            self._closing = True
            if self._on_close is not None:
                self._on_close(_channel_closed(exc))
        if self._pump is not None:
            self._pump._channel_closed(closing)

    def _track(self, queue: str, exclusive: bool) -> None:
        if exclusive and queue and queue not in self._exclusive:
            self._exclusive.append(queue)
            if self._lease is not None:
                self._lease.track_exclusive(queue)

    # -- the per-message path (gateway.broker.hotpath) --------------------------------------
    # Class-level defaults: the pump is made on first use, not in __init__.
    _pump: ChannelPump | None = None
    _window = 0  # delivery_window: 0 = ack:auto consumers are plain no_ack ones
    _consumer_qos = 0  # the channel's current per-consumer prefetch (basic.qos global=false)
    _session_qos = 0  # what the session last asked for (it sends qos only on changes)
    _gone = False  # _channel_gone ran

    def _hot(self) -> ChannelPump:
        pump = self._pump
        if pump is None:
            pump = self._pump = ChannelPump(
                self._raw,
                self._dispatch,
                to_amqp=_to_amqp_properties,
                encode_table=pamqp_encode.field_table,
                closed_error=_channel_closed,
                nacked_error=PublishNacked,
                watch_closing=False,  # _channel_gone tells it
            )
            if self._gone:
                pump._channel_closed(self._watch)
        return pump

    def _dispatch(self, delivery: Delivery) -> object:
        handler = self._on_delivery
        if handler is None:
            return False
        result: object = handler(delivery)
        return result

    async def _flush_out(self) -> None:
        """Put buffered publishes/acks on the wire ahead of an RPC (keeps their order)."""
        pump = self._pump
        if pump is not None:
            with suppress(Exception):
                await pump.sync()

    # -- BrokerChannel ----------------------------------------------------------------------
    def set_handlers(
        self,
        on_delivery: DeliveryHandler,
        on_cancel: CancelHandler,
        on_close: CloseHandler,
        *,
        delivery_window: int = 0,
        on_confirm: Callable[[], None] | None = None,
    ) -> None:
        self._on_delivery = on_delivery
        self._on_cancel = on_cancel
        self._on_close = on_close
        self._window = delivery_window
        self._hot().on_confirm = on_confirm

    async def _call(self, coro: Awaitable[Any]) -> Any:
        await self._flush_out()
        try:
            return await coro
        except aiormq.exceptions.AMQPError as exc:
            raise _channel_closed(exc) from None
        except aio_pika.exceptions.ChannelInvalidStateError:
            raise _channel_closed(None) from None

    async def declare_queue(self, spec_: QueueSpec) -> str:
        ok = await self._call(
            self._raw.queue_declare(
                spec_.name,
                durable=spec_.durable,
                exclusive=spec_.exclusive,
                auto_delete=spec_.auto_delete,
                arguments=spec_.arguments or None,
            )
        )
        self._track(str(ok.queue), spec_.exclusive)
        return str(ok.queue)

    async def declare_queue_nowait(self, spec_: QueueSpec) -> None:
        await self._call(
            self._raw.queue_declare(
                spec_.name,
                durable=spec_.durable,
                exclusive=spec_.exclusive,
                auto_delete=spec_.auto_delete,
                arguments=spec_.arguments or None,
                nowait=True,
            )
        )
        self._track(spec_.name, spec_.exclusive)

    async def check_exchange(self, name: str) -> None:
        await self._call(self._raw.exchange_declare(name, passive=True))

    async def bind_queue(self, queue: str, exchange: str, routing_key: str) -> None:
        await self._call(self._raw.queue_bind(queue, exchange, routing_key=routing_key))

    async def unbind_queue(self, queue: str, exchange: str, routing_key: str) -> None:
        await self._call(self._raw.queue_unbind(queue, exchange, routing_key=routing_key))

    async def delete_queue(self, queue: str) -> None:
        await self._call(self._raw.queue_delete(queue))

    async def join_fanout(
        self,
        exchange: str,
        routing_key: str,
        on_delivery: Callable[[Delivery], object],
        on_lost: Callable[[ChannelClosed | None], None],
    ) -> Member | None:
        lease = self._lease
        registry = lease.fanout if lease is not None else None
        if registry is None or self._raw.is_closed:
            return None
        member = Member(on_delivery, on_lost)
        joined = await registry.join(self, exchange, routing_key, member)
        return member if joined else None

    async def consume(
        self,
        queue: str,
        consumer_tag: str,
        *,
        no_ack: bool,
        prefetch_count: int | None = None,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        # Flow control: with a delivery window, a no_ack (STOMP ack:auto) consumer is
        # consumed with manual acks and a prefetch of the window; the pump acks what
        # the session handed to its transport, and stops acking while the transport is
        # congested, so the broker stops at the window. (A channel-wide window, qos
        # global, would be nicer, but quorum queues and streams refuse it.) Client-mode
        # consumers keep the prefetch the session asked for; the session sends qos only
        # on changes, so the channel's per-consumer default is put back for them.
        pump = self._hot()
        managed = no_ack and self._window > 0
        if prefetch_count is not None:
            self._session_qos = prefetch_count
        wanted = self._window if managed else self._session_qos
        if wanted != self._consumer_qos or (prefetch_count is not None and not managed):
            await self._call(self._raw.basic_qos(prefetch_count=wanted, global_=False))
            self._consumer_qos = wanted
        pump.set_mode(consumer_tag, AUTO if managed else NO_ACK if no_ack else CLIENT)
        await self._call(
            self._raw.basic_consume(
                queue,
                _never_called,
                no_ack=no_ack and not managed,
                consumer_tag=consumer_tag,
                arguments=arguments or None,
            )
        )

    async def cancel(self, consumer_tag: str) -> None:
        await self._call(self._raw.basic_cancel(consumer_tag))

    async def publish(
        self, exchange: str, routing_key: str, body: bytes, properties: Properties
    ) -> asyncio.Future[None]:
        raw: Any = self._raw
        if raw.is_closed:
            raise _channel_closed(raw.close_reason if hasattr(raw, "close_reason") else None)
        # Encoded now, written with whatever else this loop turn produces; the
        # confirm future fails if the channel closes first.
        return self._hot().publish(exchange, routing_key, body, properties)

    async def ack(self, delivery_tag: int, *, multiple: bool = False) -> None:
        if self._raw.is_closed:
            raise _channel_closed(None)
        self._hot().ack(delivery_tag, multiple)

    async def nack(
        self, delivery_tag: int, *, multiple: bool = False, requeue: bool = True
    ) -> None:
        if self._raw.is_closed:
            raise _channel_closed(None)
        self._hot().nack(delivery_tag, multiple, requeue)

    def pause_deliveries(self, paused: bool) -> None:
        if self._pump is not None:
            self._pump.pause(paused)

    async def close(self) -> None:
        """Give the channel back: exclusive queues deleted, channel (or connection) closed."""
        self._closing = True
        self._watch.remove_done_callback(self._channel_gone)
        if self._pump is not None:
            self._watch.add_done_callback(self._pump._channel_closed)
        if self._pump is not None and not self._raw.is_closed:
            with suppress(Exception):  # acks and publishes of this turn go first
                await asyncio.wait_for(self._pump.sync(final=True), 1.0)
        lease, self._lease = self._lease, None
        if lease is not None:
            await lease.release(self._raw, self._exclusive)
