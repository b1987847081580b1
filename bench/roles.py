"""Roles: the client side of each scenario, run inside a load-generator process.

Each role is ``async def role(ctl, params) -> dict``; it sets up its clients, reports
"ready", runs when the coordinator says "go", reports "done" with what it measured,
and cleans up (DISCONNECT with a receipt, then close) when told "stop". Times are
``time.monotonic()`` values, comparable across processes. See ``bench/worker.py``.

Hot loops avoid per-message Python work where they can: a SEND that never changes
is framed and masked once and written ``batch`` times in one ``write``; ACKs produced
while handling one chunk of input go out in one ``write``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from .client import StompClient, StompFailure, body, header
from .worker import Control

Role = Callable[[Control, dict[str, Any]], Awaitable[dict[str, Any]]]
TS_WIDTH = 20  # latency bodies start with a zero-padded monotonic_ns() timestamp


def make_body(size: int) -> bytes:
    pattern = b"stomp-gateway-bench-"
    return (pattern * (size // len(pattern) + 1))[:size]


def _check(client: StompClient) -> None:
    if client.closed.done() or client.errors:
        raise StompFailure(client.errors[0] if client.errors else "connection closed by server")


async def _wait(fut: asyncio.Future[Any], clients: list[StompClient]) -> Any:
    """Await ``fut``, failing early if one of ``clients`` dies."""
    watch = [asyncio.ensure_future(asyncio.shield(c.closed)) for c in clients]
    try:
        await asyncio.wait([fut, *watch], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in watch:
            w.cancel()
    if not fut.done():
        for client in clients:
            _check(client)
    return fut.result()


async def _disconnect_all(clients: list[StompClient], concurrency: int = 200) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(client: StompClient) -> None:
        async with sem:
            await client.disconnect()

    await asyncio.gather(*(one(c) for c in clients), return_exceptions=True)


# ------------------------------------------------------------------ publishing
async def _pump(client: StompClient, frame: bytes, count: int, batch: int) -> float:
    """Write ``frame`` ``count`` times as fast as the socket takes it."""
    chunk = frame * batch
    sent = 0
    while sent < count:
        k = min(batch, count - sent)
        client.write(chunk if k == batch else frame * k)
        sent += k
        if client.writable:
            await asyncio.sleep(0)
        else:
            await client.drain()
        _check(client)
    return time.monotonic()


async def _pump_receipts(client: StompClient, frames: list[bytes], window: int) -> float:
    """Write ``frames`` (each asks for a receipt) keeping at most ``window`` unanswered."""
    count = len(frames)
    wake = asyncio.Event()
    got = 0

    def on_receipt(_rid: bytes) -> None:
        nonlocal got
        got += 1
        wake.set()

    client.on_receipt = on_receipt
    client.closed.add_done_callback(lambda _f: wake.set())
    sent = 0
    while got < count:
        room = min(window - (sent - got), count - sent)
        if room > 0:
            client.write(b"".join(frames[sent : sent + room]))
            sent += room
        wake.clear()
        await wake.wait()
        _check(client)
    return time.monotonic()


async def publishers(ctl: Control, p: dict[str, Any]) -> dict[str, Any]:
    """``clients`` connections, client i sending ``count`` SENDs to ``destinations[i]``;
    with ``window`` > 0 every SEND asks for a receipt, at most ``window`` outstanding."""
    count, window = p["count"], p.get("window", 0)
    payload = make_body(p["body_size"])
    clients = [await ctl.open() for _ in range(p["clients"])]
    pumps: list[Callable[[], Awaitable[float]]] = []
    for client, dest in zip(clients, p["destinations"], strict=True):
        if window:
            frames = [
                client.frame("SEND", [("destination", dest), ("receipt", f"r{i}")], payload)
                for i in range(count)
            ]
            pumps.append(functools.partial(_pump_receipts, client, frames, window))
        else:
            frame = client.frame("SEND", [("destination", dest)], payload)
            pumps.append(functools.partial(_pump, client, frame, count, p.get("batch", 64)))
    await ctl.sync("ready")
    t0 = time.monotonic()
    ends = await asyncio.gather(*(pump() for pump in pumps))
    await ctl.sync("done", {"t0": t0, "t1": max(ends), "sent": count * len(clients)})
    await _disconnect_all(clients)
    return {}


# ------------------------------------------------------------------ consuming
async def consumer(ctl: Control, p: dict[str, Any]) -> dict[str, Any]:
    """One client SUBSCRIBEs on "go" and counts ``count`` MESSAGE frames; with
    ``ack`` client-individual it ACKs each one by its ``ack`` header."""
    loop = asyncio.get_running_loop()
    client = await ctl.open()
    count, ack = p["count"], p["ack"]
    finished: asyncio.Future[float] = loop.create_future()
    received = 0
    pending: list[bytes] = []
    ws_frame = client.mask.ws_frame

    def flush() -> None:
        client.write(b"".join(pending))
        pending.clear()

    def on_message(frame: bytes) -> None:
        nonlocal received
        received += 1
        if ack != "auto":
            if not pending:
                loop.call_soon(flush)
            pending.append(ws_frame(b"ACK\nid:" + (header(frame, b"ack") or b"") + b"\n\n\x00"))
        if received == count and not finished.done():
            finished.set_result(time.monotonic())

    client.on_message = on_message
    extra = [("ack", ack)]
    if p.get("prefetch"):
        extra.append(("prefetch-count", str(p["prefetch"])))
    await ctl.sync("ready")
    t0 = time.monotonic()
    await client.subscribe(p["destination"], "s0", extra)
    t1 = await _wait(finished, [client])
    await ctl.sync("done", {"t0": t0, "t1": t1, "received": received})
    await client.disconnect()
    return {}


async def subscribers(ctl: Control, p: dict[str, Any]) -> dict[str, Any]:
    """``count`` sessions, session i (from ``first``) subscribed with a receipt to
    ``destination.format(i=i)``; after "go", waits until each got ``expect`` messages
    or ``timeout`` passed, and reports how many arrived. Failed sessions are counted
    with their reason, not raised: the point may be to find the limit."""
    loop = asyncio.get_running_loop()
    first = p["first"]
    dests = [p["destination"].format(i=i) for i in range(first, first + p["count"])]
    expect: int = p["expect"]
    sem = asyncio.Semaphore(p.get("concurrency", 64))
    clients: list[StompClient] = []
    reasons: Counter[str] = Counter()
    complete = 0
    delivered = 0
    all_done: asyncio.Future[float] = loop.create_future()
    last_done = 0.0

    def counter() -> Callable[[bytes], None]:
        seen = 0

        def on_message(_frame: bytes) -> None:
            nonlocal seen, complete, delivered, last_done
            seen += 1
            delivered += 1
            if seen == expect:
                complete += 1
                last_done = time.monotonic()
                if complete == len(clients) and not all_done.done():
                    all_done.set_result(last_done)

        return on_message

    async def join(i: int, dest: str) -> None:
        async with sem:
            try:
                client = await ctl.open(timeout=p.get("open_timeout", 10))
                client.on_message = counter()
                await client.subscribe(dest, f"s{i}", wait=p.get("open_timeout", 10))
                clients.append(client)
            except Exception as exc:
                reasons[_reason(exc)] += 1

    # From the first session on, so a long setup does not run into an idle timeout.
    keepalive = asyncio.ensure_future(_keepalive(clients, p.get("keepalive", 0)))
    try:
        t_setup, cpu_setup = time.monotonic(), time.process_time()
        await asyncio.gather(*(join(i, d) for i, d in enumerate(dests, first)))
        t_ready = time.monotonic()
        pump: Awaitable[float] | None = None
        if p.get("publish"):  # fan-out: this job also hosts the one publisher
            pub = p["publish"]
            publisher = await ctl.open()
            frame = publisher.frame(
                "SEND", [("destination", pub["destination"])], make_body(pub["body_size"])
            )
        await ctl.sync(
            "ready",
            {
                "established": len(clients),
                "failed": sum(reasons.values()),
                "reasons": dict(reasons.most_common(3)),
                "t_setup": t_setup,
                "cpu_setup": cpu_setup,
                "t_ready": t_ready,
            },
        )
        t0 = time.monotonic()
        if p.get("publish"):
            pump = asyncio.ensure_future(_pump(publisher, frame, pub["count"], 64))
        if clients and expect:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(all_done), p["timeout"])
        if pump is not None:
            await pump
        dead = sum(1 for c in clients if c.closed.done())
        await ctl.sync(
            "done",
            {"t0": t0, "t1": last_done, "delivered": delivered, "complete": complete, "dead": dead},
        )
    finally:
        keepalive.cancel()
    await _disconnect_all(ctl.clients)
    return {}


async def _keepalive(clients: list[StompClient], every: float) -> None:
    """Send an EOL (a STOMP heart-beat) to each client every ``every`` seconds, so an
    idle timeout on the server does not end sessions during a long setup."""
    if every <= 0:
        return
    while True:
        await asyncio.sleep(every)
        for client in clients:
            client.write(client.mask.ws_frame(b"\n"))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:160]


# ------------------------------------------------------------------ latency
async def latency_pub(ctl: Control, p: dict[str, Any]) -> dict[str, Any]:
    """Send ``rate`` msg/s for ``duration`` s, each body starting with its send time."""
    client = await ctl.open()
    headers = [("destination", p["destination"])]
    pad = make_body(max(0, p["body_size"] - TS_WIDTH))
    rate, duration = p["rate"], p["duration"]
    await ctl.sync("ready")
    t0 = time.monotonic()
    end = t0 + duration
    sent = 0
    while (now := time.monotonic()) < end:
        due = int((now - t0) * rate) + 1 - sent
        if due > 0:
            frames = [
                client.frame("SEND", headers, b"%020d" % time.monotonic_ns() + pad)
                for _ in range(due)
            ]
            client.write(b"".join(frames))
            sent += due
            _check(client)
        await asyncio.sleep(0.001)
    await ctl.sync("done", {"t0": t0, "t1": time.monotonic(), "sent": sent})
    await client.disconnect()
    return {}


async def latency_sub(ctl: Control, p: dict[str, Any]) -> dict[str, Any]:
    """Subscribe; record (receive time - send time) of each message, dropping those sent
    in the first ``warmup`` seconds; stop when told how many were sent and all came (or
    after ``grace`` more seconds)."""
    loop = asyncio.get_running_loop()
    client = await ctl.open()
    samples: list[int] = []
    received = 0
    enough: asyncio.Future[None] = loop.create_future()
    expected = -1
    skip_before = 0

    def on_message(frame: bytes) -> None:
        nonlocal received
        now = time.monotonic_ns()
        sent_at = int(body(frame)[:TS_WIDTH])
        received += 1
        if sent_at >= skip_before:
            samples.append(now - sent_at)
        if received == expected and not enough.done():
            enough.set_result(None)

    client.on_message = on_message
    await client.subscribe(p["destination"], "lat", wait=10)
    await ctl.sync("ready")
    skip_before = time.monotonic_ns() + int(p["warmup"] * 1e9)
    told = await ctl.sync("collecting")
    expected = told["sent"]
    if received >= expected:
        enough.set_result(None)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(_wait(enough, [client]), p["grace"])
    samples.sort()
    await ctl.sync("done", {"received": received, **_percentiles(samples)})
    await client.disconnect()
    return {}


def _percentiles(samples_ns: list[int]) -> dict[str, Any]:
    if not samples_ns:
        return {"samples": 0}

    def pick(q: float) -> float:
        return samples_ns[min(len(samples_ns) - 1, int(q * len(samples_ns)))] / 1e6

    return {
        "samples": len(samples_ns),
        "p50_ms": pick(0.50),
        "p90_ms": pick(0.90),
        "p99_ms": pick(0.99),
        "max_ms": samples_ns[-1] / 1e6,
        "mean_ms": sum(samples_ns) / len(samples_ns) / 1e6,
    }


ROLES: dict[str, Role] = {
    "publishers": publishers,
    "consumer": consumer,
    "subscribers": subscribers,
    "latency_pub": latency_pub,
    "latency_sub": latency_sub,
}
