"""AMQP-side helpers for tests: an aio-pika/aiormq helper that tracks what a test
declares, exact property extraction, and ``rabbitmqctl`` access without blocking the
event loop (the gateway under test may run in the same loop)."""

# per-call timeouts and polling of broker state are the point of these helpers
# ruff: noqa: ASYNC109, ASYNC110

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
from typing import Any

import pytest

AMQP_URL = "amqp://guest:guest@127.0.0.1/"


class AmqpHelper:
    """aio-pika connection + channel, with cleanup of what the test declared.

    ``channel`` is an aio-pika channel; ``raw`` is the underlying aiormq channel, used
    where exact AMQP properties matter (aio-pika fills in defaults such as
    ``delivery_mode=1``/``priority=0`` when publishing or reading).
    """

    def __init__(self, connection: Any, channel: Any, raw: Any) -> None:
        self.connection = connection
        self.channel = channel
        self.raw = raw
        self._queues: list[str] = []
        self._exchanges: list[str] = []

    # tracking -----------------------------------------------------------------------
    def track_queue(self, name: str) -> str:
        """Delete queue ``name`` at teardown (e.g. one a STOMP SUBSCRIBE created)."""
        if name not in self._queues:
            self._queues.append(name)
        return name

    def track_exchange(self, name: str) -> str:
        if name not in self._exchanges:
            self._exchanges.append(name)
        return name

    # declarations -------------------------------------------------------------------
    async def declare_queue(self, name: str, **kwargs: Any) -> Any:
        """aio-pika ``declare_queue``; the queue is deleted at teardown."""
        self.track_queue(name)
        return await self.channel.declare_queue(name, **kwargs)

    async def declare_exchange(self, name: str, type: str = "topic", **kwargs: Any) -> Any:
        self.track_exchange(name)
        return await self.channel.declare_exchange(name, type, **kwargs)

    async def queue_exists(self, name: str) -> bool:
        """Passive declare on a throw-away channel (a miss closes that channel).

        An exclusive queue of another connection answers RESOURCE_LOCKED: it exists.
        """
        from aiormq.exceptions import ChannelLockedResource, ChannelNotFoundEntity

        channel = await self.connection.channel()
        try:
            await channel.declare_queue(name, passive=True)
        except ChannelNotFoundEntity:
            return False
        except ChannelLockedResource:
            return True
        finally:
            with contextlib.suppress(Exception):
                await channel.close()
        return True

    async def exchange_exists(self, name: str) -> bool:
        from aiormq.exceptions import ChannelNotFoundEntity

        channel = await self.connection.channel()
        try:
            await channel.declare_exchange(name, passive=True)
        except ChannelNotFoundEntity:
            return False
        finally:
            with contextlib.suppress(Exception):
                await channel.close()
        return True

    async def queue_is_exclusive_elsewhere(self, name: str) -> bool:
        """True if ``name`` is an exclusive queue owned by another connection."""
        from aiormq.exceptions import ChannelLockedResource

        channel = await self.connection.channel()
        try:
            await channel.declare_queue(name, passive=True)
        except ChannelLockedResource:
            return True
        finally:
            with contextlib.suppress(Exception):
                await channel.close()
        return False

    async def message_count(self, name: str) -> int:
        declare_ok = await self.raw.queue_declare(name, passive=True)
        return int(declare_ok.message_count)

    async def wait_queue(self, name: str, exists: bool = True, timeout: float = 5) -> None:
        """Poll until queue ``name`` exists (or, with ``exists=False``, is gone)."""
        async with asyncio.timeout(timeout):
            while await self.queue_exists(name) != exists:
                await asyncio.sleep(0.05)

    # messages -----------------------------------------------------------------------
    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes | str,
        **properties: Any,
    ) -> None:
        """``basic.publish`` with exactly these ``pamqp`` Basic.Properties fields.

        Property names are pamqp's (``message_type`` for ``type``). aiormq adds a random
        ``message_id`` when none is given, so pass ``message_id`` for exact checks.
        """
        from pamqp.commands import Basic

        if isinstance(body, str):
            body = body.encode("utf-8")
        await self.raw.basic_publish(
            body,
            exchange=exchange,
            routing_key=routing_key,
            properties=Basic.Properties(**properties),
        )

    async def get(self, queue: str, timeout: float = 5) -> Any:
        """Poll ``basic.get`` (no_ack) until a message arrives; an aiormq message.

        ``.body`` is the payload and ``props(message)`` gives the exact properties.
        """
        from pamqp.commands import Basic

        async with asyncio.timeout(timeout):
            while True:
                message = await self.raw.basic_get(queue, no_ack=True)
                if isinstance(message.delivery, Basic.GetOk):
                    return message
                await asyncio.sleep(0.02)

    async def expect_empty(self, queue: str, timeout: float = 0.3) -> None:
        await asyncio.sleep(timeout)
        count = await self.message_count(queue)
        assert count == 0, f"{count} unexpected message(s) in {queue}"

    # teardown -----------------------------------------------------------------------
    async def cleanup(self) -> None:
        for kind, names in (("queue", self._queues), ("exchange", self._exchanges)):
            for name in names:
                try:
                    channel = await self.connection.channel()
                    if kind == "queue":
                        await channel.queue_delete(name)
                    else:
                        await channel.exchange_delete(name)
                    await channel.close()
                except Exception:
                    pass


def props(message: Any) -> dict[str, Any]:
    """The AMQP properties of an aiormq message that are set (None/'' dropped)."""
    properties = message.header.properties
    out = {}
    for name in properties.attributes():
        value = getattr(properties, name)
        if value is None or value == "":
            continue
        out[name] = value
    return out


async def rabbitmqctl(*args: str, timeout: float = 30) -> str:
    """Run ``rabbitmqctl ARGS`` without blocking the event loop; its stdout."""
    exe = shutil.which("rabbitmqctl")
    if exe is None:
        pytest.skip("rabbitmqctl is not installed")
    proc = await asyncio.create_subprocess_exec(
        exe,
        *args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    async with asyncio.timeout(timeout):
        out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {err.decode()}")
    return out.decode()


async def queue_info(name: str, vhost: str = "/") -> dict[str, Any] | None:
    """``rabbitmqctl list_queues`` row for ``name`` (name, durable, auto_delete,
    exclusive, arguments, consumers), or None if there is no such queue."""
    out = await rabbitmqctl(
        "list_queues",
        "-q",
        "-p",
        vhost,
        "--formatter",
        "json",
        "name",
        "durable",
        "auto_delete",
        "exclusive",
        "arguments",
        "consumers",
    )
    for row in json.loads(out):
        if row["name"] == name:
            return dict(row)
    return None
