#!/usr/bin/env python3
"""A request/reply responder for browsers using STOMP temp queues through stomp-gateway.

The browser sends (with @stomp/stompjs)::

    client.publish({
      destination: "/queue/rpc_requests",
      headers: {"reply-to": "/temp-queue/rpc", "correlation-id": "c-1"},
      body: "hello",
    })

The gateway (like rabbitmq_web_stomp) declares an exclusive, auto-delete reply queue for
that session, rewrites ``reply-to`` to its bare AMQP name (``amq.gen-...``) and delivers
whatever arrives there as MESSAGE frames with ``subscription:/temp-queue/rpc`` (stomp.js 7
hands them to ``onUnhandledMessage``). This responder consumes the request queue and
publishes each answer to the default exchange with routing key = ``reply_to``, copying
``correlation_id``: the ordinary AMQP RPC pattern, nothing gateway-specific.

The answer is JSON ``{"reply": <request text upper-cased>, "request": <request text>}``.

    python examples/python/rpc_server.py [--queue rpc_requests] [--count N]

Prints ``ready <queue>`` once it consumes, one ``replied <correlation-id>`` line per
answer, and exits after ``--count`` answers (default: run until interrupted).
Environment: AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def answer(request: bytes) -> bytes:
    text = request.decode("utf-8", errors="replace")
    reply = {"reply": text.upper(), "request": text}
    return json.dumps(reply, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


async def serve(queue_name: str, count: int | None) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        # SEND to /queue/<name> makes the gateway declare <name> durable (as the plugin
        # does); declaring it the same way here avoids PRECONDITION_FAILED on either side.
        queue = await channel.declare_queue(queue_name, durable=True)
        done = asyncio.Event()
        answered = 0

        async def on_request(message: AbstractIncomingMessage) -> None:
            nonlocal answered
            async with message.process():
                if not message.reply_to:
                    return  # nowhere to answer: drop (acked)
                await channel.default_exchange.publish(
                    aio_pika.Message(
                        answer(message.body),
                        content_type="application/json",
                        correlation_id=message.correlation_id,
                    ),
                    routing_key=message.reply_to,
                )
            answered += 1
            print(f"replied {message.correlation_id}", flush=True)
            if count is not None and answered >= count:
                done.set()

        await queue.consume(on_request)
        print(f"ready {queue_name}", flush=True)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, done.set)
        await done.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--queue", default="rpc_requests", help="request queue (default %(default)s)"
    )
    parser.add_argument("--count", type=int, default=None, help="exit after N replies")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.queue, args.count))
    return 0


if __name__ == "__main__":
    sys.exit(main())
