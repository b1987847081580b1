"""SEND: from a STOMP frame to a confirmed AMQP publish (a mixin of ``Session``).

* Everything is checked (destination rules, the destination, a /queue declared once
  per session) when the SEND arrives, even inside a transaction; only the publish
  waits for COMMIT (RabbitMQ 3.10.8/4.3).
* A RECEIPT goes out when the broker confirmed the publish, in SEND order; a broker
  nack is ERROR "Message rejected" (RabbitMQ ignores nacks).
* ``publish_window`` confirms outstanding stop the session reading its client.
* ``reply-to: /temp-queue/X`` declares (once) an exclusive queue and subscribes to it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING

from .broker.base import (
    PublishNacked,
    QueueSpec,
)
from .destinations import (
    check_not_temp,
    parse_destination,
    require_destination,
    send_plan,
)
from .errors import BrokerError, ProtocolError
from .mapping import send_properties
from .metrics import METRICS
from .states import SessionPart
from .stomp import Frame
from .subscribing import Subscription
from .transactions import PublishAction, Transactions

if TYPE_CHECKING:
    pass

Unconfirmed = deque[tuple[asyncio.Future[None], str | None, float]]


class Publishing(SessionPart):
    """The SEND side of ``gateway.session.Session`` (a mixin; its state lives there)."""

    if not TYPE_CHECKING:
        __slots__ = ()  # see SessionPart

    # Session's state this part uses (see SessionPart):
    _confirms_drained: asyncio.Event | None
    _publish_window: int
    _unconfirmed: Unconfirmed | None
    _window: asyncio.Event | None
    temp_queues: dict[str, str]
    transactions: Transactions

    # Made on first use (see __init__).
    @property
    def unconfirmed(self) -> Unconfirmed:
        queue = self._unconfirmed
        if queue is None:
            queue = self._unconfirmed = deque()
        return queue

    @property
    def confirms_drained(self) -> asyncio.Event:
        """Set while no publish awaits its confirm."""
        event = self._confirms_drained
        if event is None:
            event = self._confirms_drained = asyncio.Event()
            event.set()
        return event

    @property
    def _window_open(self) -> asyncio.Event:
        """Set while fewer than publish_window confirms are outstanding."""
        event = self._window
        if event is None:
            event = self._window = asyncio.Event()
            event.set()
        return event

    # ------------------------------------------------------------------ SEND
    async def on_send(self, frame: Frame) -> None:
        dest_text = require_destination(frame)
        if "message-id" in frame.headers:
            raise ProtocolError("Invalid header", "'message-id' is not allowed on 'SEND'.\n")
        self._check_rule("write", dest_text, frame)
        # Everything is checked (and /queue declared) now, even inside a transaction;
        # only the publish waits for COMMIT (RabbitMQ 3.10.8/4.3).
        action = await self._prepare_publish(frame, dest_text)
        tx = frame.headers.get("transaction")
        if tx is None:
            await self._publish(action)
        else:
            self.transactions.add(tx, action)

    async def _prepare_publish(self, frame: Frame, dest_text: str) -> PublishAction:
        channel = self._channel()
        dest = parse_destination(dest_text)
        check_not_temp(dest, "SEND")
        plan = send_plan(dest, frame.headers, self.settings.default_topic_exchange)
        if plan.declare is not None and plan.declare.name not in self.declared_queues:
            # RabbitMQ declares /queue/ destinations once per session, with nowait.
            await channel.declare_queue_nowait(plan.declare)
            self.declared_queues.add(plan.declare.name)
        reply_to = frame.headers.get("reply-to")
        if reply_to is not None and reply_to.startswith("/temp-queue/"):
            reply_to = await self._temp_queue(reply_to)
        properties = send_properties(frame.headers, reply_to=reply_to)
        receipt = frame.headers.get("receipt")
        return PublishAction(plan.exchange, plan.routing_key, frame.body, properties, receipt)

    async def _publish(self, action: PublishAction) -> None:
        channel = self._channel()
        confirm = await channel.publish(
            action.exchange, action.routing_key, action.body, action.properties
        )
        METRICS.published.inc()
        self.unconfirmed.append((confirm, action.receipt, time.monotonic()))
        self.confirms_drained.clear()
        confirm.add_done_callback(self._confirmed)
        window = self._publish_window
        if window and len(self.unconfirmed) >= window:
            # Flow control: read nothing more from this client until the broker
            # confirmed some (a dead channel fails them all, which opens it too).
            self._window_open.clear()
            await self._window_open.wait()

    def _confirms_arrived(self) -> None:
        # The broker adapter resolved confirms just now: RECEIPTs go out before any
        # MESSAGE that arrived after the confirm (future callbacks come a turn later).
        self._confirmed(None)

    def _confirmed(self, _fut: asyncio.Future[None] | None) -> None:
        unconfirmed = self.unconfirmed
        if unconfirmed and unconfirmed[0][0].done():
            now = time.monotonic()
            observe = METRICS.confirm_latency.observe
            while unconfirmed and unconfirmed[0][0].done():
                fut, receipt, published = unconfirmed.popleft()
                observe(now - published)
                exc = None if fut.cancelled() else fut.exception()
                self._settle_publish(exc, receipt)
        if not unconfirmed:
            self.confirms_drained.set()
        if len(unconfirmed) < self._publish_window:
            self._window_open.set()

    def _settle_publish(self, exc: BaseException | None, receipt: str | None) -> None:
        if exc is None:
            if receipt is not None:
                self._send("RECEIPT", [("receipt-id", receipt)])
        elif isinstance(exc, PublishNacked):
            # RabbitMQ logs and drops a nack; tell the client its message was refused.
            self._fail(
                BrokerError(
                    "Message rejected",
                    "The broker did not accept a message (basic.nack)\n",
                    fatal=False,
                    headers={"receipt-id": receipt} if receipt else None,
                )
            )

    async def _temp_queue(self, reply_to: str) -> str:
        name = self.temp_queues.get(reply_to)
        if name is None:
            channel = self._channel()
            name = await channel.declare_queue(
                QueueSpec("", durable=False, exclusive=True, auto_delete=True)
            )
            tag = "T_" + reply_to
            await channel.consume(name, tag, no_ack=True)
            self.temp_queues[reply_to] = name
            self.subscriptions[tag] = Subscription(
                tag=tag,
                destination=parse_destination("/queue/" + name),
                ack="auto",
                queue=name,
                durable=False,
                header_id=reply_to,
            )
        return name
