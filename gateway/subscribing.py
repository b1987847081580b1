"""SUBSCRIBE, UNSUBSCRIBE and deliveries (a mixin of ``Session``).

* The plugin's order: declare (a /queue once per session), consume, bind; a
  duplicate subscription id is checked after the declare and ends the session.
* ack:auto subscriptions to a non-durable /topic or /exchange with no queue options
  join a local fan-out group (``gateway.broker.fanout``) when the broker port offers
  one; everything else gets a queue and a consumer of its own.
* Deliveries that arrive before the SUBSCRIBE's RECEIPT wait for it.
* A broker cancel is ERROR "Server cancelled subscription".
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from .acks import AckTracker
from .broker.base import (
    BrokerChannel,
    ChannelClosed,
    Delivery,
    FanoutMembership,
)
from .destinations import (
    Destination,
    DestinationKind,
    SubscribePlan,
    check_durable_id,
    consumer_arguments,
    consumer_tag,
    is_durable_subscription,
    parse_destination,
    require_destination,
    subscribe_plan,
)
from .errors import ProcessingError, ProtocolError, StompError, broker_error
from .limits import LimitExceeded, breach
from .mapping import MessageEncoder
from .metrics import METRICS
from .states import SessionPart, State
from .stomp import Frame

if TYPE_CHECKING:
    pass


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


class Subscribing(SessionPart):
    """The subscription side of ``gateway.session.Session`` (a mixin; its state lives there)."""

    if not TYPE_CHECKING:
        __slots__ = ()  # see SessionPart

    # Session's state this part uses (see SessionPart):
    _channel_broken: bool
    acks: AckTracker
    channel: BrokerChannel | None
    id: str
    prefetch: int
    version: str

    # ------------------------------------------------------------------ SUBSCRIBE
    async def on_subscribe(self, frame: Frame) -> None:
        h = frame.headers
        dest_text = require_destination(frame)
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


def _int_header(headers: dict[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        raise ProcessingError() from None
