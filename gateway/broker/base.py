"""The broker port: the small interface a Session uses to talk to RabbitMQ.

The session never sees AMQP client objects. It asks a ``Broker`` to open a
``BrokerChannel`` for a set of credentials and then drives declares, bindings,
publishes and consumers through it. Deliveries come back through callbacks the
session registers. ``gateway.broker.pool`` implements it on RabbitMQ (connections
shared per user and vhost, or one per session; channels in ``gateway.broker.amqp``);
unit tests use an in-memory fake.

Plain data types (``Properties``, ``Delivery``, ``QueueSpec``) carry AMQP basic
properties and deliveries between the session, ``gateway.mapping`` and the adapter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


class Long(int):
    """An integer the broker must receive as an AMQP ``long`` (signed 64-bit, 'l').

    RabbitMQ's STOMP plugin declares integer ``x-*`` queue arguments as long; sending
    the same types keeps queues it created equivalent to ours after a migration.
    """

    __slots__ = ()


class NarrowInt(int):
    """A header-table integer the broker sent as 8/16-bit or unsigned 32/64-bit.

    RabbitMQ's STOMP plugin turns only signed 32-bit ('I') and 64-bit ('l') table
    integers into MESSAGE headers; the adapter marks the others so the mapping can
    drop them as the plugin does.
    """

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Credentials:
    """Who a STOMP session connects as, and from where."""

    login: str
    passcode: str = field(repr=False)
    vhost: str
    peer: str = ""  # client address "ip:port", for connection names and logs


# Properties and Delivery are built once per message on the delivery path, so they are
# slotted but not frozen: a frozen dataclass pays one object.__setattr__ call per field
# (1.4 us for Properties against 0.26 us). Treat them as read-only all the same.
@dataclass(slots=True)
class Properties:
    """AMQP 0-9-1 basic properties (``timestamp`` in seconds since the epoch)."""

    content_type: str | None = None
    content_encoding: str | None = None
    headers: dict[str, Any] | None = None
    delivery_mode: int | None = None
    priority: int | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    expiration: str | None = None
    message_id: str | None = None
    timestamp: int | None = None
    type: str | None = None
    user_id: str | None = None
    app_id: str | None = None


@dataclass(slots=True)
class Delivery:
    """One message delivered to a consumer."""

    consumer_tag: str
    delivery_tag: int
    redelivered: bool
    exchange: str
    routing_key: str
    properties: Properties
    body: bytes


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A queue.declare: ``name == ""`` asks the broker to name the queue."""

    name: str
    durable: bool = True
    exclusive: bool = False
    auto_delete: bool = False
    arguments: dict[str, Any] = field(default_factory=dict)


class AuthenticationFailed(Exception):
    """The broker refused the login/passcode (ACCESS_REFUSED at connection.open)."""


class VhostAccessDenied(Exception):
    """The vhost does not exist, or the user may not use it (or a connection limit)."""


class BrokerUnavailable(Exception):
    """The broker cannot be reached at all."""


class ChannelClosed(Exception):
    """The broker closed the channel or connection; carries AMQP code and text."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(code, text)
        self.code = code
        self.text = text


class PublishNacked(Exception):
    """The broker answered a publish with basic.nack (e.g. x-overflow=reject-publish)."""


class FanoutMembership(Protocol):
    """A subscription's place in a local fan-out group."""

    def leave(self) -> None:
        """No more copies (UNSUBSCRIBE, session end); the broker side is tidied later."""


# Returns False when nobody took the delivery (unsubscribed meanwhile, session
# closing): the adapter then gives it back to the queue.
DeliveryHandler = Callable[[Delivery], bool | None]
CancelHandler = Callable[[str], None]  # consumer tag the broker cancelled
CloseHandler = Callable[[ChannelClosed], None]


class BrokerChannel(Protocol):
    """What one STOMP session does on the broker (one AMQP channel per session)."""

    def set_handlers(
        self,
        on_delivery: DeliveryHandler,
        on_cancel: CancelHandler,
        on_close: CloseHandler,
        *,
        delivery_window: int = 0,
        on_confirm: Callable[[], None] | None = None,
    ) -> None:
        """Where deliveries, broker cancels and channel closes go; ``delivery_window``
        (settings.delivery_window) is the prefetch of ``no_ack`` consumers, which are
        then consumed with manual acks (see ``pause_deliveries``); 0 = plain no_ack. ``on_confirm`` is called as soon as
        publisher confirms resolved publish futures, before any later delivery is
        handed over (future callbacks run a loop turn later), so RECEIPTs keep the
        broker's order relative to MESSAGEs."""

    async def declare_queue(self, spec: QueueSpec) -> str:
        """Declare a queue and return its name (the broker's name when spec.name is "")."""

    async def declare_queue_nowait(self, spec: QueueSpec) -> None:
        """Declare without waiting for declare-ok (RabbitMQ's STOMP does so for /queue)."""

    async def check_exchange(self, name: str) -> None:
        """Passive exchange declare; raises ChannelClosed (404) when it does not exist."""

    async def bind_queue(self, queue: str, exchange: str, routing_key: str) -> None: ...

    async def join_fanout(
        self,
        exchange: str,
        routing_key: str,
        on_delivery: Callable[[Delivery], object],
        on_lost: Callable[[ChannelClosed | None], None],
    ) -> FanoutMembership | None:
        """Share a queue bound to ``(exchange, routing_key)`` with the other ack:auto
        subscribers on this connection (local fan-out): the bind runs on this channel,
        so the broker checks this session's permissions (a refusal raises
        ChannelClosed). Copies of matching messages go to ``on_delivery``;
        ``on_lost`` hears that the shared consumer ended (None: the broker cancelled
        it). None when local fan-out is not available: subscribe the plugin's way."""

    async def delete_queue(self, queue: str) -> None: ...

    async def consume(
        self,
        queue: str,
        consumer_tag: str,
        *,
        no_ack: bool,
        prefetch_count: int | None = None,
        arguments: dict[str, Any] | None = None,
    ) -> None: ...

    async def cancel(self, consumer_tag: str) -> None: ...

    async def publish(
        self, exchange: str, routing_key: str, body: bytes, properties: Properties
    ) -> asyncio.Future[None]:
        """Queue a basic.publish for writing and return its publisher confirm.

        Awaiting ``publish`` only waits for room in the connection's write buffer
        (back-pressure), so successive publishes keep their order. The returned
        awaitable resolves on the broker's basic.ack and raises ``ChannelClosed`` on a
        basic.nack or when the channel dies first.
        """

    async def ack(self, delivery_tag: int, *, multiple: bool = False) -> None: ...

    def pause_deliveries(self, paused: bool) -> None:
        """The session's client is not reading (its transport is congested): stop
        taking deliveries from the broker until resumed. ``no_ack`` consumers (STOMP
        ack:auto) are consumed with manual acks and the delivery window as prefetch
        underneath; their deliveries are acknowledged only while not paused, so the
        broker stops at the window. Client-acknowledged consumers are bounded by
        their own prefetch."""

    async def nack(
        self, delivery_tag: int, *, multiple: bool = False, requeue: bool = True
    ) -> None: ...

    async def close(self) -> None:
        """Close the channel (and its connection if it owns one). Idempotent."""


class Broker(Protocol):
    """Opens a channel for a set of credentials, proving them first."""

    async def start(self) -> None:
        """Begin watching the broker (the server calls it once it listens)."""

    def ready(self) -> bool:
        """The broker is known to answer (readiness; False before ``start``)."""

    async def open_channel(self, credentials: Credentials) -> BrokerChannel:
        """Raises AuthenticationFailed, VhostAccessDenied or BrokerUnavailable (at once
        while the broker is known to be down)."""

    async def close(self) -> None:
        """Stop watching the broker and close every connection still open."""
