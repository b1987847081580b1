"""An in-memory stand-in for the broker port, for unit tests of the session only.

It records every call in ``calls`` and lets a test push deliveries, cancels and
channel closes. Integration tests use the real RabbitMQ.
"""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.broker.base import (
    AuthenticationFailed,
    CancelHandler,
    ChannelClosed,
    CloseHandler,
    Credentials,
    Delivery,
    DeliveryHandler,
    Properties,
    QueueSpec,
    VhostAccessDenied,
)


class FakeChannel:
    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker
        self.calls: list[tuple[Any, ...]] = []
        self.confirms: list[asyncio.Future[None]] = []
        self.on_delivery: DeliveryHandler | None = None
        self.on_cancel: CancelHandler | None = None
        self.on_close: CloseHandler | None = None
        self.closed = False
        self.paused = False
        self.next_queue = 0

    def set_handlers(
        self,
        on_delivery: DeliveryHandler,
        on_cancel: CancelHandler,
        on_close: CloseHandler,
        *,
        delivery_window: int = 0,
        on_confirm: Any = None,
    ) -> None:
        self.delivery_window = delivery_window
        self.on_delivery, self.on_cancel, self.on_close = on_delivery, on_cancel, on_close

    async def declare_queue(self, spec: QueueSpec) -> str:
        self.calls.append(("declare", spec))
        if spec.name:
            return spec.name
        self.next_queue += 1
        return f"amq.gen-{self.next_queue}"

    async def declare_queue_nowait(self, spec: QueueSpec) -> None:
        self.calls.append(("declare_nowait", spec))

    async def check_exchange(self, name: str) -> None:
        self.calls.append(("check_exchange", name))

    async def bind_queue(self, queue: str, exchange: str, routing_key: str) -> None:
        self.calls.append(("bind", queue, exchange, routing_key))
        if exchange in self.broker.missing_exchanges:
            raise ChannelClosed(404, f"NOT_FOUND - no exchange '{exchange}' in vhost '/'")

    async def join_fanout(
        self,
        exchange: str,
        routing_key: str,
        on_delivery: Any,
        on_lost: Any,
    ) -> FakeMember | None:
        self.calls.append(("join_fanout", exchange, routing_key))
        if not self.broker.fanout:
            return None
        if exchange in self.broker.missing_exchanges:
            raise ChannelClosed(404, f"NOT_FOUND - no exchange '{exchange}' in vhost '/'")
        member = FakeMember(self, exchange, routing_key, on_delivery, on_lost)
        self.broker.members.append(member)
        return member

    async def delete_queue(self, queue: str) -> None:
        self.calls.append(("delete", queue))

    async def consume(
        self,
        queue: str,
        consumer_tag: str,
        *,
        no_ack: bool,
        prefetch_count: int | None = None,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        self.calls.append(("consume", queue, consumer_tag, no_ack, prefetch_count))

    async def cancel(self, consumer_tag: str) -> None:
        self.calls.append(("cancel", consumer_tag))

    async def publish(
        self, exchange: str, routing_key: str, body: bytes, properties: Properties
    ) -> asyncio.Future[None]:
        self.calls.append(("publish", exchange, routing_key, body, properties))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.broker.auto_confirm:
            fut.set_result(None)
        self.confirms.append(fut)
        return fut

    async def ack(self, delivery_tag: int, *, multiple: bool = False) -> None:
        self.calls.append(("ack", delivery_tag, multiple))

    async def nack(
        self, delivery_tag: int, *, multiple: bool = False, requeue: bool = True
    ) -> None:
        self.calls.append(("nack", delivery_tag, multiple, requeue))

    def pause_deliveries(self, paused: bool) -> None:
        self.paused = paused

    async def close(self) -> None:
        self.closed = True

    # test helpers
    def deliver(
        self,
        consumer_tag: str,
        delivery_tag: int,
        body: bytes = b"x",
        *,
        exchange: str = "",
        routing_key: str = "q",
        properties: Properties | None = None,
        redelivered: bool = False,
    ) -> None:
        assert self.on_delivery is not None
        self.on_delivery(
            Delivery(
                consumer_tag,
                delivery_tag,
                redelivered,
                exchange,
                routing_key,
                properties or Properties(),
                body,
            )
        )


class FakeMember:
    """A subscription in a (fake) local fan-out group."""

    def __init__(
        self, channel: FakeChannel, exchange: str, key: str, on_delivery: Any, on_lost: Any
    ) -> None:
        self.channel, self.exchange, self.key = channel, exchange, key
        self.on_delivery, self.on_lost = on_delivery, on_lost
        self.left = False

    def leave(self) -> None:
        self.left = True
        self.channel.calls.append(("leave_fanout", self.exchange, self.key))

    def deliver(self, delivery_tag: int, body: bytes = b"x", routing_key: str = "") -> None:
        self.on_delivery(
            Delivery(
                "fanout",
                delivery_tag,
                False,
                self.exchange,
                routing_key or self.key,
                Properties(),
                body,
            )
        )


class FakeBroker:
    def __init__(self) -> None:
        self.fanout = False  # join_fanout answers None (no local fan-out) unless True
        self.members: list[FakeMember] = []
        self.users = {"guest": "guest"}
        self.vhosts = {"/"}
        self.channels: list[FakeChannel] = []
        self.missing_exchanges: set[str] = set()
        self.auto_confirm = True
        self.opened: list[Credentials] = []
        self.started = False
        self.up = True  # what ready() answers

    async def open_channel(self, credentials: Credentials) -> FakeChannel:
        self.opened.append(credentials)
        if self.users.get(credentials.login) != credentials.passcode:
            raise AuthenticationFailed(credentials.login)
        if credentials.vhost not in self.vhosts:
            raise VhostAccessDenied(credentials.vhost)
        channel = FakeChannel(self)
        self.channels.append(channel)
        return channel

    async def start(self) -> None:
        self.started = True

    def ready(self) -> bool:
        return self.up

    async def close(self) -> None:
        return None
