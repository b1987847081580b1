"""The coordinator's view of RabbitMQ and of processes: AMQP (aiormq), the management
API, and /proc counters.

* ``Amqp``: one connection for the whole run; declares and deletes the bench's queues,
  pre-fills them, counts their messages (passive declare), publishes to amq.topic.
* ``Mgmt``: the management API over urllib (run in a thread). Broker memory is the
  live ``erlang:memory(total)`` from ``/api/nodes/NAME?memory=true``; the cached
  ``mem_used`` of ``/api/nodes`` only moves every few seconds.
* ``/proc``: CPU seconds (utime + stime) and RSS of a process and its descendants, and
  the pid of the broker's ``beam.smp``.
"""

# Polling the broker with short sleeps is the point here; timeouts are per call.
# ruff: noqa: ASYNC109, ASYNC110

from __future__ import annotations

import asyncio
import base64
import json
import os
import urllib.request
from pathlib import Path
from typing import Any

import aiormq

CLK_TCK = os.sysconf("SC_CLK_TCK")


class Amqp:
    def __init__(self, url: str) -> None:
        self.url = url
        self.connection: Any = None
        self.channel: Any = None

    async def connect(self) -> None:
        self.connection = await aiormq.connect(self.url)
        self.channel = await self.connection.channel(publisher_confirms=False)

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()

    async def _chan(self) -> Any:
        if self.channel is None or self.channel.is_closed:
            self.channel = await self.connection.channel(publisher_confirms=False)
        return self.channel

    async def declare_queue(self, name: str) -> None:
        await (await self._chan()).queue_declare(name, durable=False, auto_delete=False)

    async def delete_queue(self, name: str) -> None:
        try:
            await (await self._chan()).queue_delete(name)
        except aiormq.exceptions.AMQPError:
            self.channel = None

    async def message_count(self, name: str) -> int:
        ok = await (await self._chan()).queue_declare(name, passive=True)
        return int(ok.message_count)

    async def wait_count(self, name: str, count: int, timeout: float) -> int:
        """Poll until queue ``name`` holds ``count`` messages; return what it holds."""
        have = 0
        async with asyncio.timeout(timeout):
            while (have := await self.message_count(name)) < count:
                await asyncio.sleep(0.05)
        return have

    async def prefill(self, name: str, count: int, body: bytes) -> None:
        """Put ``count`` messages in queue ``name`` (default exchange) and wait for them."""
        channel = await self._chan()
        for start in range(0, count, 1000):
            await asyncio.gather(
                *(
                    channel.basic_publish(body, routing_key=name)
                    for _ in range(min(1000, count - start))
                )
            )
        await self.wait_count(name, count, timeout=120)

    async def publish(self, exchange: str, routing_key: str, body: bytes) -> None:
        await (await self._chan()).basic_publish(body, exchange=exchange, routing_key=routing_key)


class Mgmt:
    def __init__(self, base: str, user: str, password: str) -> None:
        self.base = base.rstrip("/")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self._auth = f"Basic {token}"
        self._node: str | None = None

    def _get(self, path: str) -> Any:
        req = urllib.request.Request(self.base + path, headers={"Authorization": self._auth})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.load(resp)

    async def get(self, path: str) -> Any:
        return await asyncio.to_thread(self._get, path)

    async def available(self) -> bool:
        try:
            await self.get("/api/overview")
        except Exception:
            return False
        return True

    async def sockets(self) -> tuple[int, int] | None:
        """(AMQP sockets used, socket limit) of the node, or None without the API."""
        try:
            node = (await self.get("/api/nodes"))[0]
            return int(node["sockets_used"]), int(node["sockets_total"])
        except Exception:
            return None

    async def memory(self) -> int | None:
        """The broker's live Erlang memory total in bytes, or None without the API."""
        try:
            if self._node is None:
                self._node = (await self.get("/api/nodes"))[0]["name"]
            node = await self.get(f"/api/nodes/{self._node}?memory=true")
            total = node.get("memory", {}).get("total", {})
            value = total.get("erlang") if isinstance(total, dict) else total
            return int(value if value is not None else node["mem_used"])
        except Exception:
            return None


# ------------------------------------------------------------------ /proc
def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    tree = _children()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(tree.get(p, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of ``pids`` (threads included), in seconds; gone pids count 0."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / CLK_TCK


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return total


def find_beam_pid() -> int | None:
    """The pid of the local RabbitMQ node (the ``beam.smp`` started with
    ``-s rabbit boot``; rabbitmqctl runs short-lived beam.smp processes too)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "beam.smp":
                continue
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"rabbit" in args and b"boot" in args:
            return int(entry.name)
    return None


def fd_usage(pid: int) -> tuple[int, int] | None:
    """(open file descriptors, soft open-files limit) of ``pid``, or None."""
    try:
        used = len(list(Path(f"/proc/{pid}/fd").iterdir()))
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return used, int(line.split()[3])
    except (OSError, ValueError, IndexError):
        return None
    return None
