"""The broker port on aio-pika: one AMQP connection and one channel per session.

aio-pika opens and closes the connection; the channel work goes through the aiormq
channel underneath it, which is what aio-pika itself drives. Two reasons for going
one level down on the hot paths:

* aiormq's ``basic_publish`` stamps a random ``message_id`` on every message that has
  none, which RabbitMQ's STOMP plugin never does (a stomp.js app would suddenly see an
  ``amqp-message-id`` header), and it awaits the confirm, which would serialise SENDs.
  ``publish`` below writes the same frames itself and hands back the confirm future.
* deliveries arrive as aiormq ``DeliveredMessage``; converting them straight into our
  ``Delivery`` avoids a second wrapper object per message.

Every channel runs in publisher-confirm mode, so a SEND's RECEIPT can wait for the
broker's basic.ack (RabbitMQ's plugin switches lazily on the first receipt; a
channel that is always in confirm mode behaves the same for the client).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import suppress
from datetime import UTC, datetime
from functools import partial
from typing import Any

import aio_pika
import aiormq
from aiormq.abc import ChannelFrame, DeliveredMessage
from pamqp import commands as spec
from pamqp import decode as pamqp_decode
from pamqp import encode as pamqp_encode
from pamqp.base import Frame as AmqpFrame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader
from yarl import URL

from .base import (
    AuthenticationFailed,
    BrokerUnavailable,
    CancelHandler,
    ChannelClosed,
    CloseHandler,
    Credentials,
    Delivery,
    DeliveryHandler,
    Long,
    NarrowInt,
    Properties,
    PublishNacked,
    QueueSpec,
    VhostAccessDenied,
)

_PRODUCT = "stomp-gateway"


def _channel_closed(exc: BaseException | None) -> ChannelClosed:
    """aiormq's exception for a Channel.Close / Connection.Close -> (code, text).

    aiormq raises e.g. ``ChannelNotFoundEntity("NOT_FOUND - no exchange 'x' in vhost
    '/'")``: the broker's reply text is the first argument, its code the class's.
    """
    if isinstance(exc, ChannelClosed):
        return exc
    text = exc.args[0] if exc is not None and exc.args else None
    if isinstance(text, str) and " - " in text:
        frame = exc.args[1] if exc is not None and len(exc.args) > 1 else None
        code = getattr(frame, "reply_code", None) or getattr(exc, "code", 0)
        return ChannelClosed(code if isinstance(code, int) else 0, text)
    return ChannelClosed(320, "CONNECTION_FORCED - broker connection lost")


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


def _settle(result: asyncio.Future[None], confirmation: asyncio.Future[Any]) -> None:
    """Translate aiormq's confirm outcome into the port's (ack, nack, channel gone)."""
    if result.done():
        return
    if confirmation.cancelled():
        result.set_exception(_channel_closed(None))
        return
    exc = confirmation.exception()
    if exc is None:
        result.set_result(None)
    elif isinstance(exc, aiormq.exceptions.DeliveryError):
        result.set_exception(PublishNacked())
    else:
        result.set_exception(_channel_closed(exc))


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


def _from_amqp_properties(p: spec.Basic.Properties) -> Properties:
    ts = p.timestamp
    return Properties(
        content_type=p.content_type,
        content_encoding=p.content_encoding,
        headers=p.headers,
        delivery_mode=p.delivery_mode,
        priority=p.priority,
        correlation_id=p.correlation_id,
        reply_to=p.reply_to,
        expiration=p.expiration,
        message_id=p.message_id,
        timestamp=int(ts.timestamp()) if ts is not None else None,
        type=p.message_type,
        user_id=p.user_id,
        app_id=p.app_id,
    )


class AmqpChannel:
    """One session's channel (and, for now, its own connection)."""

    def __init__(
        self,
        connection: aio_pika.abc.AbstractConnection,
        channel: aio_pika.abc.AbstractChannel,
        raw: aiormq.abc.AbstractChannel,
    ) -> None:
        self._connection = connection
        self._channel = channel
        self._raw = raw
        self._on_delivery: DeliveryHandler | None = None
        self._on_cancel: CancelHandler | None = None
        self._on_close: CloseHandler | None = None
        self._closing = False
        self._raw.on_consumer_cancel_callbacks.add(self._cancelled)
        channel.close_callbacks.add(self._channel_gone)
        connection.close_callbacks.add(self._channel_gone)

    # -- callbacks from aiormq / aio-pika ----------------------------------------------
    def _cancelled(self, frame: spec.Basic.Cancel) -> None:
        if self._on_cancel is not None and frame.consumer_tag:
            self._on_cancel(frame.consumer_tag)

    def _channel_gone(self, _sender: object, exc: BaseException | None) -> None:
        if self._closing:
            return
        self._closing = True
        if self._on_close is not None:
            self._on_close(_channel_closed(exc))

    async def _deliver(self, message: DeliveredMessage) -> None:
        handler = self._on_delivery
        if handler is None:
            return
        d: Any = message.delivery
        handler(
            Delivery(
                consumer_tag=d.consumer_tag or "",
                delivery_tag=d.delivery_tag or 0,
                redelivered=bool(d.redelivered),
                exchange=d.exchange or "",
                routing_key=d.routing_key or "",
                properties=_from_amqp_properties(message.header.properties),
                body=message.body,
            )
        )

    # -- BrokerChannel ----------------------------------------------------------------------
    def set_handlers(
        self, on_delivery: DeliveryHandler, on_cancel: CancelHandler, on_close: CloseHandler
    ) -> None:
        self._on_delivery = on_delivery
        self._on_cancel = on_cancel
        self._on_close = on_close

    async def _call(self, coro: Awaitable[Any]) -> Any:
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

    async def check_exchange(self, name: str) -> None:
        await self._call(self._raw.exchange_declare(name, passive=True))

    async def bind_queue(self, queue: str, exchange: str, routing_key: str) -> None:
        await self._call(self._raw.queue_bind(queue, exchange, routing_key=routing_key))

    async def delete_queue(self, queue: str) -> None:
        await self._call(self._raw.queue_delete(queue))

    async def consume(
        self,
        queue: str,
        consumer_tag: str,
        *,
        no_ack: bool,
        prefetch_count: int | None = None,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        if prefetch_count is not None:
            await self._call(self._raw.basic_qos(prefetch_count=prefetch_count, global_=False))
        await self._call(
            self._raw.basic_consume(
                queue,
                self._deliver,
                no_ack=no_ack,
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
        frames: list[AmqpFrame | ContentHeader | ContentBody] = [
            spec.Basic.Publish(exchange=exchange, routing_key=routing_key),
            ContentHeader(properties=_to_amqp_properties(properties), body_size=len(body)),
        ]
        frames += raw._split_body(body)
        raw.delivery_tag += 1
        # The channel's own future store rejects it when the channel closes, so a
        # session never waits for the confirm of a publish on a dead channel.
        confirmation: asyncio.Future[Any] = raw.create_future()
        raw.confirmations[raw.delivery_tag] = confirmation
        result: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        confirmation.add_done_callback(partial(_settle, result))
        await raw.write_queue.put(ChannelFrame.marshall(channel_number=raw.number, frames=frames))
        return result

    async def ack(self, delivery_tag: int, *, multiple: bool = False) -> None:
        await self._call(self._raw.basic_ack(delivery_tag, multiple=multiple))

    async def nack(
        self, delivery_tag: int, *, multiple: bool = False, requeue: bool = True
    ) -> None:
        await self._call(self._raw.basic_nack(delivery_tag, multiple=multiple, requeue=requeue))

    async def close(self) -> None:
        self._closing = True
        with suppress(Exception):
            await self._connection.close()
        # aiormq finishes its writer in an untracked task once its reader has ended
        # (a broker-closed channel takes that path); give it the loop turns it needs
        # so no half-closed connection outlives the session.
        for _ in range(2):
            await asyncio.sleep(0)


class AmqpBroker:
    """Opens one AMQP connection per session with the session's own credentials."""

    def __init__(self, amqp_url: str, *, connect_timeout: float = 10.0) -> None:
        self._url = URL(amqp_url)
        self._timeout = connect_timeout

    async def open_channel(self, credentials: Credentials) -> AmqpChannel:
        try:
            connection = await aio_pika.connect(
                host=self._url.host or "127.0.0.1",
                port=self._url.port or 5672,
                login=credentials.login,
                password=credentials.passcode,
                virtualhost=credentials.vhost,
                ssl=self._url.scheme == "amqps",
                timeout=self._timeout,
                client_properties={
                    "connection_name": f"{_PRODUCT} {credentials.peer}".strip(),
                    "product": _PRODUCT,
                },
            )
        except aiormq.exceptions.ProbableAuthenticationError:
            raise AuthenticationFailed(credentials.login) from None
        except (aiormq.exceptions.InvalidFrameError, aiormq.exceptions.ConnectionClosed) as exc:
            # RabbitMQ answers connection.open for an unknown or forbidden vhost (and
            # for vhost/user connection limits) with Connection.Close.
            raise VhostAccessDenied(credentials.vhost) from exc
        except (TimeoutError, OSError, aiormq.exceptions.AMQPError) as exc:
            raise BrokerUnavailable(str(exc)) from exc
        try:
            channel = await connection.channel(publisher_confirms=True)
            raw = await channel.get_underlay_channel()
            return AmqpChannel(connection, channel, raw)
        except BaseException:
            await connection.close()
            raise

    async def close(self) -> None:
        return None
