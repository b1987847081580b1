#!/usr/bin/env python3
"""Push JSON from a Python backend to browsers connected through stomp-gateway.

The browser subscribes (with @stomp/stompjs, through the gateway) to

    /exchange/stomp_exchange/user.<id>     its own notifications
    /exchange/stomp_exchange/broadcast     everyone's

and this module publishes to the durable topic exchange ``stomp_exchange`` with the
routing key ``user.<id>`` or ``broadcast``: a JSON body, ``content_type`` application/json,
``delivery_mode`` 2 (persistent). Nothing here knows about the gateway: it is plain AMQP,
exactly what a backend did for rabbitmq_web_stomp.

Library use::

    async with Notifier() as notifier:
        await notifier.send_to_user(42, {"title": "Order shipped", "text": "#1234"})
        await notifier.broadcast({"text": "Maintenance at 18:00"})

    await send_to_user(42, {...})          # one-shot: connect, publish, close
    await broadcast({...})

Command line::

    python examples/python/notify.py user 42 '{"text":"hi"}'
    python examples/python/notify.py broadcast '{"text":"all"}'

Environment: AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/), STOMP_EXCHANGE
(default stomp_exchange). Needs aio-pika (``pip install aio-pika``).

Each publish waits for the broker's confirm and reports whether the message was routed:
"unroutable" means no browser is subscribed to that routing key right now, so the
message was dropped (it is a live notification, not a mailbox).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
EXCHANGE = os.environ.get("STOMP_EXCHANGE", "stomp_exchange")
APP_ID = "examples/python/notify.py"


def encode(payload: Any) -> bytes:
    """Compact JSON, UTF-8, non-ASCII kept as is (the browser decodes UTF-8)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class Notifier:
    """One AMQP connection and channel publishing to the notification exchange."""

    def __init__(self, url: str = AMQP_URL, exchange: str = EXCHANGE) -> None:
        self.url = url
        self.exchange_name = exchange
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None

    async def connect(self) -> None:
        self._connection = await aio_pika.connect(self.url)
        # Publisher confirms (aio-pika's default) + on_return_raises: publish() returns
        # once the broker has the message, and raises if it was returned as unroutable.
        self._channel = await self._connection.channel(on_return_raises=True)
        # The same declaration the PHP example makes: durable topic exchange. Browsers
        # cannot subscribe to /exchange/stomp_exchange/... until it exists.
        self._exchange = await self._channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = self._channel = self._exchange = None

    async def __aenter__(self) -> Notifier:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def publish(self, routing_key: str, payload: Any) -> bool:
        """Publish ``payload`` as JSON; True if routed to at least one queue."""
        if self._exchange is None:
            raise RuntimeError("Notifier is not connected")
        message = aio_pika.Message(
            encode(payload),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            app_id=APP_ID,
        )
        try:
            await self._exchange.publish(message, routing_key, mandatory=True)
        except aio_pika.exceptions.PublishError:
            return False  # basic.return: nobody is subscribed to this key
        return True

    async def send_to_user(self, user_id: int | str, payload: Any) -> bool:
        """To every browser tab of one user (routing key ``user.<id>``)."""
        return await self.publish(f"user.{user_id}", payload)

    async def broadcast(self, payload: Any) -> bool:
        """To every connected user (routing key ``broadcast``)."""
        return await self.publish("broadcast", payload)


async def send_to_user(user_id: int | str, payload: Any) -> bool:
    async with Notifier() as notifier:
        return await notifier.send_to_user(user_id, payload)


async def broadcast(payload: Any) -> bool:
    async with Notifier() as notifier:
        return await notifier.broadcast(payload)


def _json_arg(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    user = sub.add_parser("user", help="send to one user: routing key user.<id>")
    user.add_argument("user_id")
    user.add_argument("payload", type=_json_arg, help='JSON, e.g. \'{"text":"hi"}\'')
    everyone = sub.add_parser("broadcast", help="send to everyone: routing key broadcast")
    everyone.add_argument("payload", type=_json_arg, help='JSON, e.g. \'{"text":"all"}\'')
    args = parser.parse_args(argv)

    if args.command == "user":
        target = f"user.{args.user_id}"
        routed = asyncio.run(send_to_user(args.user_id, args.payload))
    else:
        target = "broadcast"
        routed = asyncio.run(broadcast(args.payload))
    outcome = "routed" if routed else "unroutable: no subscriber, dropped"
    print(f"sent to {EXCHANGE}/{target} ({outcome})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
