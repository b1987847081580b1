"""No leaks: many connect / subscribe / disconnect cycles (clean DISCONNECTs and abrupt
closes, both transports) leave the gateway's task count, its RSS trend and the broker's
connection, channel and queue counts where they started.

The gateway runs as a subprocess, so its RSS (/proc/PID/status) and
its asyncio task count (the ``stomp_gateway_asyncio_tasks`` gauge) are its own, not the
test client's or pytest's log capture.

``LEAK_CYCLES`` sets the number of cycles (default 2000, about 40 s on CI's two cores;
10,000 were run by hand, see docs/compatibility.md). At most ``CONCURRENCY`` cycles run
at once, so the broker never sees more than that many of our connections.
"""

# polling the management API and the gateway's metrics, always under a deadline
# ruff: noqa: ASYNC110

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from pathlib import Path
from urllib.parse import quote

import httpx

from tests.support.security import GatewayProcess
from tests.support.tcpclient import connect_tcp
from tests.support.wsclient import connect_ws

CYCLES = int(os.environ.get("LEAK_CYCLES", "2000"))
CONCURRENCY = 20
MAX_RSS_TREND_KIB = 16 * 1024  # second half of the run vs the first


@contextlib.asynccontextmanager
async def vhost(management, name: str):
    reply = await management.request("PUT", f"/api/vhosts/{quote(name, '')}")
    reply.raise_for_status()
    try:
        reply = await management.request(
            "PUT",
            f"/api/permissions/{quote(name, '')}/guest",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        )
        reply.raise_for_status()
        yield name
    finally:
        await management.request("DELETE", f"/api/vhosts/{quote(name, '')}")


async def broker_counts(management, name: str) -> tuple[int, int, int]:
    v = quote(name, "")
    connections = await management.get(f"/api/vhosts/{v}/connections")
    channels = await management.get(f"/api/vhosts/{v}/channels")
    queues = await management.get(f"/api/queues/{v}")
    return len(connections), len(channels), len(queues)


def process_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def gateway_tasks(http: httpx.AsyncClient, port: int) -> int:
    text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    match = re.search(r"^stomp_gateway_asyncio_tasks (\d+)$", text, re.MULTILINE)
    assert match is not None
    return int(match.group(1)) - 1  # not the task answering this request


async def test_connect_subscribe_disconnect_cycles_leak_nothing(management, unique):
    async with vhost(management, f"{unique}-leaks") as vh, httpx.AsyncClient() as http:
        gw = await GatewayProcess.start("--tcp-port", "0")
        try:
            await run_cycles(gw, vh, http, management)
        finally:
            gw.signal()
            await gw.wait()
            await gw.kill()


async def run_cycles(gw: GatewayProcess, vh: str, http: httpx.AsyncClient, management) -> None:
    tcp_port = int((await gw.wait_for_event("listening"))["url"].rsplit(":", 1)[1])
    pid = gw.proc.pid
    assert await broker_counts(management, vh) == (0, 0, 0)

    async def cycle(i: int) -> None:
        client = await (connect_ws(gw.url) if i % 2 else connect_tcp("127.0.0.1", tcp_port))
        try:
            await client.connect_stomp(host=vh)
            await client.subscribe(f"/topic/cycle.{i % 7}", id="s")
            if i % 4 < 2:  # clean: DISCONNECT with a receipt
                await client.disconnect(receipt="bye")
                await client.recv_close()
        finally:
            await client.close()  # abrupt for the others

    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def bounded(i: int) -> None:
        async with semaphore:
            await cycle(i)

    async def stable() -> int:
        """The gateway's task count once it stops changing (sessions gone; the shared
        AMQP connections of the broker pool stay, with their tasks)."""
        previous = -1
        async with asyncio.timeout(30):
            while (tasks := await gateway_tasks(http, gw.port)) != previous:
                previous = tasks
                await asyncio.sleep(0.5)
        return tasks

    await asyncio.gather(*(bounded(i) for i in range(CONCURRENCY * 5)))  # warm up
    tasks_before = await stable()
    samples = [process_rss_kib(pid)]
    started = time.monotonic()
    step = max(1, CYCLES // 8)
    for first in range(0, CYCLES, step):
        await asyncio.gather(*(bounded(i) for i in range(first, min(CYCLES, first + step))))
        samples.append(process_rss_kib(pid))
    elapsed = time.monotonic() - started
    tasks_after = await stable()
    assert tasks_after == tasks_before
    half = len(samples) // 2
    trend = max(samples[half:]) - max(samples[: half + 1])
    assert trend < MAX_RSS_TREND_KIB, f"RSS grew by {trend} KiB: {samples}"
    # The broker: every connection, channel and subscription queue is gone.
    async with asyncio.timeout(30):
        while (counts := await broker_counts(management, vh)) != (0, 0, 0):
            await asyncio.sleep(0.5)
    print(
        f"\nleak test: {CYCLES} cycles in {elapsed:.1f} s; gateway tasks {tasks_before} -> "
        f"{tasks_after}; RSS KiB {samples}; broker (connections, channels, queues) {counts}"
    )
