"""A small client for the RabbitMQ management HTTP API (tests only).

Used where AMQP cannot tell: a consumer's prefetch count, a queue's type and
arguments, and to create (and remove) users with limited permissions. The
``management`` fixture in tests/conftest.py enables the plugin when needed.

Consumers show up in the API through the stats collector, so they may take up to
``collect_statistics_interval`` (5 s by default) to appear: ``wait_consumers`` polls.
"""

# polling the API with per-call timeouts is the point of these helpers
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx


class Management:
    def __init__(self, base_url: str, auth: tuple[str, str] = ("guest", "guest")) -> None:
        self.base_url = base_url.rstrip("/")
        self.auth = auth

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.base_url, auth=self.auth, timeout=10) as c:
            return await c.request(method, path, **kwargs)

    async def get(self, path: str) -> Any:
        reply = await self.request("GET", path)
        reply.raise_for_status()
        return reply.json()

    # -- queues and consumers --------------------------------------------------------
    async def queue(self, name: str, vhost: str = "/") -> dict[str, Any] | None:
        """The queue's record (durable, auto_delete, exclusive, arguments, type...)."""
        reply = await self.request("GET", f"/api/queues/{quote(vhost, '')}/{quote(name, '')}")
        if reply.status_code == 404:
            return None
        reply.raise_for_status()
        result: dict[str, Any] = reply.json()
        return result

    async def consumers(self, *queues: str, vhost: str = "/") -> list[dict[str, Any]]:
        """Consumers of these queues: queue, consumer_tag, prefetch_count, ack_required,
        arguments (sorted by consumer tag)."""
        rows = await self.get(f"/api/consumers/{quote(vhost, '')}")
        found = [
            {
                "queue": row["queue"]["name"],
                "consumer_tag": row["consumer_tag"],
                "prefetch_count": row["prefetch_count"],
                "ack_required": row["ack_required"],
                "arguments": row["arguments"],
            }
            for row in rows
            if row["queue"]["name"] in queues
        ]
        return sorted(found, key=lambda row: str(row["consumer_tag"]))

    async def wait_consumers(
        self, *queues: str, count: int, timeout: float = 15, vhost: str = "/"
    ) -> list[dict[str, Any]]:
        """Poll until ``count`` consumers of ``queues`` are listed; returns them."""
        async with asyncio.timeout(timeout):
            while True:
                found = await self.consumers(*queues, vhost=vhost)
                if len(found) >= count:
                    return found
                await asyncio.sleep(0.2)

    # -- users ---------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def user(
        self,
        name: str,
        password: str,
        *,
        configure: str = ".*",
        write: str = ".*",
        read: str = ".*",
        vhost: str = "/",
        tags: str = "",
    ) -> AsyncIterator[str]:
        """A user with these permissions on ``vhost``, deleted afterwards."""
        reply = await self.request(
            "PUT", f"/api/users/{quote(name, '')}", json={"password": password, "tags": tags}
        )
        reply.raise_for_status()
        try:
            reply = await self.request(
                "PUT",
                f"/api/permissions/{quote(vhost, '')}/{quote(name, '')}",
                json={"configure": configure, "write": write, "read": read},
            )
            reply.raise_for_status()
            yield name
        finally:
            await self.request("DELETE", f"/api/users/{quote(name, '')}")
