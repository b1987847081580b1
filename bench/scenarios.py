"""Scenarios: the coordinator's side of each measurement.

A scenario run gets a started target, the worker pool and the AMQP/management
helpers (``Ctx``), and returns an ``Outcome``: its metrics, the number of units
(messages, deliveries or sessions) the CPU counters are divided by, the window those
counters cover, and an error text when it failed. Every run uses names unique to it
(``ctx.uid``) and deletes the queues it declared, whatever happens; sessions are
closed by the roles (DISCONNECT, then close) or aborted on failure.

Measured windows: from "go" to the end condition (the broker holding all N messages,
the last RECEIPT, the Nth MESSAGE, the last subscriber's last MESSAGE). CPU counters
(gateway process tree, broker ``beam.smp``, load-generator processes) are read at the
window's edges.
"""

# Polling the broker with short sleeps is the point here; timeouts are per call.
# ruff: noqa: ASYNC109, ASYNC110

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .broker import Amqp, Mgmt, cpu_seconds, fd_usage, process_tree, rss_bytes
from .roles import make_body
from .targets import Target
from .worker import Group, JobFailed, Pool

BODY_SIZE = 256


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is; ``quick()`` is the smoke-run variant."""

    publish_n: int = 200_000  # total over the 4 publishers
    receipt_n: int = 100_000
    receipt_window: int = 100
    deliver_n: int = 100_000
    prefetch: int = 100
    latency_duration: float = 10.0
    latency_warmup: float = 1.0
    fanout_deliveries: int = 200_000  # messages per run = this / subscribers (>= 10)
    connections: int = 1_000
    timeout: float = 300.0  # per measured phase

    @classmethod
    def quick(cls, connections: int = 200) -> Sizes:
        return cls(
            publish_n=20_000,
            receipt_n=8_000,
            deliver_n=10_000,
            latency_duration=3.0,
            latency_warmup=0.5,
            fanout_deliveries=20_000,
            connections=connections,
            timeout=90.0,
        )


@dataclass
class Ctx:
    target: Target
    pool: Pool
    amqp: Amqp
    mgmt: Mgmt
    beam_pid: int | None
    sizes: Sizes
    uid: str
    fd_guard: bool = True


@dataclass
class Outcome:
    metrics: dict[str, Any] = field(default_factory=dict)
    units: int = 0  # what CPU per unit divides by
    unit: str = "msg"
    window: float = 0.0  # seconds covered by the CPU counters
    cpu: dict[str, float | None] = field(default_factory=dict)
    error: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    better: str | None  # "higher", "lower" or None (informational)
    fmt: str = "{:,.0f}"


THROUGHPUT = [Metric("rate", "msgs/s", "higher")]


@dataclass(frozen=True)
class Scenario:
    name: str
    run: Callable[[Ctx], Awaitable[Outcome]]
    metrics: list[Metric]


# ------------------------------------------------------------------ measurement helpers
class Meter:
    """CPU counters at the edges of a measured window."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.gw_pids = process_tree(ctx.target.pid) if ctx.target.pid else []
        self.t0 = time.monotonic()
        self.gw0 = cpu_seconds(self.gw_pids)
        self.beam0 = cpu_seconds([ctx.beam_pid]) if ctx.beam_pid else 0.0

    def stop(self, out: Outcome, lg_cpu: list[float], t0: float | None = None) -> None:
        t1 = time.monotonic()
        window = t1 - (t0 if t0 is not None else self.t0)
        out.window = window
        out.cpu = {
            "gateway_s": cpu_seconds(self.gw_pids) - self.gw0 if self.gw_pids else None,
            "broker_s": cpu_seconds([self.ctx.beam_pid]) - self.beam0
            if self.ctx.beam_pid
            else None,
            "loadgen_s": sum(lg_cpu),
            "loadgen_share": sum(lg_cpu) / window / (os.cpu_count() or 1) if window else None,
            "loadgen_max_proc": max(lg_cpu) / window if lg_cpu and window else None,
        }
        busiest = out.cpu["loadgen_max_proc"]
        if busiest is not None and busiest > 0.8:
            out.notes.append(
                f"a load-generator process used {busiest:.0%} of a core: it may be the bottleneck"
            )


def lg_cpu(
    starts: list[dict[str, Any]], ends: list[dict[str, Any]], key: str = "cpu"
) -> list[float]:
    """Per-worker CPU seconds between two stamped messages."""
    return [e["cpu"] - s[key] for s, e in zip(starts, ends, strict=True)]


def split(items: list[Any], parts: int) -> list[list[Any]]:
    """``items`` in ``parts`` contiguous chunks of near-equal size (empty ones dropped)."""
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        if end > start:
            out.append(items[start:end])
        start = end
    return out


async def guarded(group: Group, body: Callable[[], Awaitable[Outcome]]) -> Outcome:
    """Run ``body``; on failure abort the jobs and turn the error into an Outcome."""
    try:
        out = await body()
    except (JobFailed, TimeoutError, OSError) as exc:
        await group.abort()
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Outcome(error=re.sub(r"^worker \d+: ", "", text))
    except BaseException:
        await group.abort()
        raise
    if out.error is not None:  # jobs may still wait for "go": cancel them
        await group.abort()
    else:
        await group.finish()
    return out


FD_SPARE = 64  # broker fds kept free for its own files and for other clients
SOCKET_SPARE = 16
SHARED_CONNECTIONS = 16  # generous: the gateway's pool for one user (and its probes)


async def headroom(ctx: Ctx, sessions: int) -> str | None:
    """Why ``sessions`` more sessions would be unsafe for the broker, or None.

    Each session costs the broker one file descriptor (a WebSocket in the plugin, an
    AMQP connection for the gateway). Web-STOMP sockets are not under RabbitMQ's
    socket limit: past the process's open-files limit the node hits emfile, and its
    memory monitor and message stores crash (seen on 3.10.8: vhost '/' went down).
    AMQP connections past ``sockets_total`` raise the fd alarm, which blocks every
    client's new connections. So the bench refuses instead (``--no-fd-guard``)."""
    if not ctx.fd_guard:
        return None
    # The plugin: one broker fd per WebSocket. The gateway: one AMQP connection per
    # session only in per_session mode; shared connections need a handful in all.
    extra = getattr(ctx.target, "extra_args", [])
    per_session = ctx.target.pid is None or "per_session" in " ".join(extra)
    needed = sessions if per_session else SHARED_CONNECTIONS
    fds = fd_usage(ctx.beam_pid) if ctx.beam_pid else None
    if fds is not None and needed > fds[1] - fds[0] - FD_SPARE:
        used, limit = fds
        return (
            f"broker fd limit: {sessions} sessions need {needed} fds, {limit - used} free "
            f"of {limit} ({FD_SPARE} kept spare); raise RabbitMQ's open-files limit"
        )
    if ctx.target.pid and per_session:  # the gateway, one AMQP connection per session
        socks = await ctx.mgmt.sockets()
        if socks is not None and needed > socks[1] - socks[0] - SOCKET_SPARE:
            return (
                f"broker socket limit: {sessions} AMQP connections, {socks[1] - socks[0]} "
                f"free of {socks[1]}; raise RabbitMQ's open-files limit"
            )
    return None


# ------------------------------------------------------------------ publish
async def publish(ctx: Ctx, *, receipts: bool) -> Outcome:
    s = ctx.sizes
    total = s.receipt_n if receipts else s.publish_n
    clients, per = 4, total // 4
    total = per * clients
    queues = [f"{ctx.uid}.p{i}" for i in range(clients)]
    for q in queues:
        await ctx.amqp.declare_queue(q)
    jobs = [
        (
            "publishers",
            {
                "target": ctx.target.spec(),
                "clients": len(chunk),
                "count": per,
                "destinations": [f"/amq/queue/{q}" for q in chunk],
                "body_size": BODY_SIZE,
                "window": s.receipt_window if receipts else 0,
            },
        )
        for chunk in split(queues, ctx.pool.size)
    ]
    group = ctx.pool.start(jobs)

    async def body() -> Outcome:
        ready = await group.collect("ready", 60)
        meter = Meter(ctx)
        group.send_all("go")
        done = await group.collect("done", s.timeout)
        if not receipts:  # written is not arrived: wait for the broker to hold them all
            await _wait_total(ctx.amqp, queues, total, s.timeout)
        t0 = min(d["t0"] for d in done)
        t1 = time.monotonic() if not receipts else max(d["t1"] for d in done)
        out = Outcome(units=total)
        meter.stop(out, lg_cpu(ready, done), t0)
        out.metrics["rate"] = total / (t1 - t0)
        if receipts:
            held = sum([await ctx.amqp.message_count(q) for q in queues])
            if held != total:
                out.notes.append(f"broker holds {held} of {total} after all receipts")
        return out

    try:
        return await guarded(group, body)
    finally:
        for q in queues:
            await ctx.amqp.delete_queue(q)


async def _wait_total(amqp: Amqp, queues: list[str], total: int, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while sum([await amqp.message_count(q) for q in queues]) < total:
            await asyncio.sleep(0.01)


# ------------------------------------------------------------------ deliver
async def deliver(ctx: Ctx, *, ack: str) -> Outcome:
    s = ctx.sizes
    n = s.deliver_n
    queue = f"{ctx.uid}.d"
    await ctx.amqp.declare_queue(queue)
    try:
        await ctx.amqp.prefill(queue, n, make_body(BODY_SIZE))
        params = {
            "target": ctx.target.spec(),
            "destination": f"/amq/queue/{queue}",
            "ack": ack,
            "prefetch": s.prefetch if ack != "auto" else 0,
            "count": n,
        }
        group = ctx.pool.start([("consumer", params)])

        async def body() -> Outcome:
            ready = await group.collect("ready", 60)
            meter = Meter(ctx)
            group.send_all("go")
            done = await group.collect("done", s.timeout)
            out = Outcome(units=n)
            meter.stop(out, lg_cpu(ready, done), done[0]["t0"])
            out.metrics["rate"] = n / (done[0]["t1"] - done[0]["t0"])
            return out

        return await guarded(group, body)
    finally:
        await ctx.amqp.delete_queue(queue)


# ------------------------------------------------------------------ latency
async def latency(ctx: Ctx, rate: int) -> Outcome:
    s = ctx.sizes
    if ctx.pool.size < 2:
        return Outcome(error="latency needs --workers >= 2 (publisher and subscriber apart)")
    dest = f"/topic/{ctx.uid}.lat"
    common = {"target": ctx.target.spec(), "destination": dest, "body_size": BODY_SIZE}
    group = ctx.pool.start(
        [
            ("latency_pub", {**common, "rate": rate, "duration": s.latency_duration}),
            ("latency_sub", {**common, "warmup": s.latency_warmup, "grace": 5.0}),
        ]
    )

    async def body() -> Outcome:
        ready = await group.collect("ready", 60)
        meter = Meter(ctx)
        group.send_all("go")
        await group.collect("collecting", 30, only=[1])
        pub = (await group.collect("done", s.latency_duration + 60, only=[0]))[0]
        group.send(1, "expect", {"sent": pub["sent"]})
        sub = (await group.collect("done", 60, only=[1]))[0]
        out = Outcome(units=pub["sent"])
        meter.stop(out, lg_cpu(ready, [pub, sub]), pub["t0"])
        if not sub.get("samples"):
            out.error = f"no message arrived ({sub['received']} of {pub['sent']})"
            return out
        out.metrics = {k: sub[k] for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")}
        out.metrics["achieved"] = pub["sent"] / (pub["t1"] - pub["t0"])
        if sub["received"] != pub["sent"]:
            out.notes.append(f"received {sub['received']} of {pub['sent']}")
        return out

    return await guarded(group, body)


LATENCY = [
    Metric("p50_ms", "p50 ms", "lower", "{:,.2f}"),
    Metric("p99_ms", "p99 ms", "lower", "{:,.2f}"),
    Metric("achieved", "sent msg/s", None),
]


# ------------------------------------------------------------------ fan-out
async def fanout(ctx: Ctx, subscribers: int) -> Outcome:
    s = ctx.sizes
    if (unsafe := await headroom(ctx, subscribers + 1)) is not None:
        return Outcome(error=unsafe, unit="delivery")
    messages = max(10, s.fanout_deliveries // subscribers)
    dest = f"/topic/{ctx.uid}.fan"
    chunks = split(list(range(subscribers)), ctx.pool.size)
    timeout = s.timeout
    jobs = [
        (
            "subscribers",
            {
                "target": ctx.target.spec(),
                "destination": dest,
                "first": chunk[0],
                "count": len(chunk),
                "expect": messages,
                "timeout": timeout,
                "keepalive": 20,
                "publish": {"destination": dest, "count": messages, "body_size": BODY_SIZE}
                if i == 0
                else None,
            },
        )
        for i, chunk in enumerate(chunks)
    ]
    group = ctx.pool.start(jobs)

    async def body() -> Outcome:
        ready = await group.collect("ready", 60 + subscribers * 0.05)
        established = sum(r["established"] for r in ready)
        if established < subscribers:
            return Outcome(error=f"{established}/{subscribers} sessions: {_reasons(ready)}")
        meter = Meter(ctx)
        group.send_all("go")
        done = await group.collect("done", timeout + 30)
        expected = established * messages
        delivered = sum(d["delivered"] for d in done)
        out = Outcome(units=delivered, unit="delivery")
        t0 = done[0]["t0"]
        meter.stop(out, lg_cpu(ready, done), t0)
        if delivered < expected:
            out.error = f"timeout: {delivered}/{expected} deliveries after {timeout:.0f}s"
            return out
        out.metrics["rate"] = delivered / (max(d["t1"] for d in done) - t0)
        out.metrics["messages"] = messages
        return out

    return await guarded(group, body)


FANOUT = [Metric("rate", "deliveries/s", "higher"), Metric("messages", "messages sent", None)]


# ------------------------------------------------------------------ connections
async def connections(ctx: Ctx) -> Outcome:
    """N sessions, each subscribed to its own amq.topic key; then one AMQP message to
    each key. Partial success is a result here (sessions established), not an error."""
    n = ctx.sizes.connections
    if (unsafe := await headroom(ctx, n)) is not None:
        return Outcome(error=unsafe, unit="session")
    keys = [f"{ctx.uid}.user.{i}" for i in range(n)]
    timeout = 30 + n / 200
    gw_pids = process_tree(ctx.target.pid) if ctx.target.pid else []
    rss0, mem0 = rss_bytes(gw_pids), await ctx.mgmt.memory()
    meter = Meter(ctx)
    jobs = [
        (
            "subscribers",
            {
                "target": ctx.target.spec(),
                "destination": f"/exchange/amq.topic/{ctx.uid}.user.{{i}}",
                "first": chunk[0],
                "count": len(chunk),
                "expect": 1,
                "timeout": timeout,
                "keepalive": 20,
                "concurrency": 50,
            },
        )
        for chunk in split(list(range(n)), ctx.pool.size)
    ]
    group = ctx.pool.start(jobs)

    async def body() -> Outcome:
        ready = await group.collect("ready", 120 + n * 0.1)
        established = sum(r["established"] for r in ready)
        setup = max(r["t_ready"] for r in ready) - min(r["t_setup"] for r in ready)
        await asyncio.sleep(1.0)  # let both sides settle before reading memory
        rss1, mem1 = (
            rss_bytes(process_tree(ctx.target.pid) if ctx.target.pid else []),
            await ctx.mgmt.memory(),
        )
        for key in keys:
            await ctx.amqp.publish("amq.topic", key, b"hello")
        group.send_all("go")
        done = await group.collect("done", timeout + 30)
        delivered = sum(d["delivered"] for d in done)
        out = Outcome(units=max(established, 1), unit="session")
        meter.stop(out, lg_cpu(ready, done, key="cpu_setup"))
        per = max(established, 1)
        out.metrics = {
            "sessions": established,
            "setup_s": setup,
            "sessions_per_s": established / setup if setup else 0.0,
            "all_delivered": established == n and delivered == n,
            "delivered": delivered,
            "gw_kb_per_session": (rss1 - rss0) / per / 1024 if gw_pids else None,
            "broker_kb_per_session": (mem1 - mem0) / per / 1024 if mem0 and mem1 else None,
        }
        if established < n:
            out.notes.append(f"{established}/{n} sessions: {_reasons(ready)}")
        return out

    return await guarded(group, body)


CONNECTIONS = [
    Metric("sessions", "sessions established", "higher"),
    Metric("setup_s", "setup s", "lower", "{:,.2f}"),
    Metric("sessions_per_s", "sessions/s", "higher"),
    Metric("all_delivered", "all delivered", None, "{}"),
    Metric("gw_kb_per_session", "gateway RSS KiB/session", "lower", "{:,.1f}"),
    Metric("broker_kb_per_session", "broker KiB/session", "lower", "{:,.1f}"),
]


def _reasons(infos: list[dict[str, Any]]) -> str:
    merged: dict[str, int] = {}
    for info in infos:
        for reason, count in info.get("reasons", {}).items():
            merged[reason] = merged.get(reason, 0) + count
    top = sorted(merged.items(), key=lambda kv: -kv[1])[:2]
    return "; ".join(f"{count}x {reason}" for reason, count in top) or "unknown"


# ------------------------------------------------------------------ registry
BASE = ["publish", "publish_receipt", "deliver_auto", "deliver_client_individual"]
DEFAULT = [*BASE, "latency_500", "latency_2000", "fanout_100", "fanout_1000", "connections"]
ALIASES = {
    "latency": ["latency_500", "latency_2000"],
    "fanout": ["fanout_100", "fanout_1000"],
    "deliver": ["deliver_auto", "deliver_client_individual"],
    "deliver_ci": ["deliver_client_individual"],
    "all": DEFAULT,
}


def make(name: str) -> Scenario:
    """The scenario called ``name`` (latency_<rate>, fanout_<subscribers> take any N)."""
    fixed: dict[str, Scenario] = {
        "publish": Scenario("publish", lambda c: publish(c, receipts=False), THROUGHPUT),
        "publish_receipt": Scenario(
            "publish_receipt", lambda c: publish(c, receipts=True), THROUGHPUT
        ),
        "deliver_auto": Scenario("deliver_auto", lambda c: deliver(c, ack="auto"), THROUGHPUT),
        "deliver_client_individual": Scenario(
            "deliver_client_individual", lambda c: deliver(c, ack="client-individual"), THROUGHPUT
        ),
        "connections": Scenario("connections", connections, CONNECTIONS),
    }
    if name in fixed:
        return fixed[name]
    if m := re.fullmatch(r"latency_(\d+)", name):
        rate = int(m[1])
        return Scenario(name, lambda c: latency(c, rate), LATENCY)
    if m := re.fullmatch(r"fanout_(\d+)", name):
        subs = int(m[1])
        return Scenario(name, lambda c: fanout(c, subs), FANOUT)
    raise ValueError(f"unknown scenario {name!r}")


def expand(spec: str) -> list[str]:
    """``"publish,latency,fanout_50"`` -> scenario names, in order, without repeats."""
    names: list[str] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        for name in ALIASES.get(part, [part]):
            make(name)  # validate
            if name not in names:
                names.append(name)
    return names
