"""``python -m bench.run``: the gateway and rabbitmq_web_stomp, scenario by scenario.

For each repeat, for each scenario, both targets run one after the other (the order
flips every repeat so drift on the machine hits both alike); the gateway is a fresh
subprocess for every run. Results: a table on stdout, ``bench/results/latest.json``
(every run plus the summary), and with ``--markdown`` ``bench/RESULTS.md``.

    python -m bench.run                          # the full comparison (make bench)
    python -m bench.run --quick                  # smoke run: 1 repeat, small sizes
    python -m bench.run --scenario publish,latency_500 --repeats 3
    python -m bench.run --targets gateway --scenario deliver_auto --profile
    python -m bench.run --connections 10000 --scenario connections --targets gateway
    python -m bench.run --set publish_n=50000 --set latency_duration=20
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import platform
import secrets
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import profile as pyspy
from .broker import Amqp, Mgmt, find_beam_pid
from .report import DEFAULT_JSON, DEFAULT_MD, render_markdown, render_text, summarize, write_json
from .scenarios import DEFAULT, Ctx, Outcome, Sizes, expand, make
from .targets import (
    GatewayTarget,
    PluginTarget,
    Target,
    TargetError,
    ensure_plugins,
    restore_plugins,
    venv_python,
    wait_plugin,
)
from .worker import Pool

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Benchmark stomp-gateway against rabbitmq_web_stomp.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="scenarios: " + ", ".join(DEFAULT) + "; aliases: latency, fanout, deliver, all; "
        "latency_<rate> and fanout_<subscribers> take any number.",
    )
    p.add_argument("--scenario", default=",".join(DEFAULT), help="comma-separated (default: all)")
    p.add_argument("--targets", default="gateway,plugin", help="gateway,plugin (default both)")
    p.add_argument(
        "--repeats", type=int, help="runs per scenario and target (default 5; --quick 1)"
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 1 repeat, small sizes")
    p.add_argument("--connections", type=int, help="sessions in 'connections' (1000; --quick 200)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a size: " + ", ".join(f.name for f in dataclasses.fields(Sizes)),
    )
    p.add_argument(
        "--workers",
        type=int,
        default=max(2, os.cpu_count() or 1),
        help="load-generator processes (default: cores, at least 2)",
    )
    p.add_argument("--plugin-url", default="ws://127.0.0.1:15674/ws")
    p.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    p.add_argument("--mgmt-url", default="http://127.0.0.1:15672")
    p.add_argument(
        "--gateway-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for python -m gateway (repeatable)",
    )
    p.add_argument(
        "--ensure-plugins",
        action="store_true",
        help="enable rabbitmq_web_stomp/management if off; disable them at the end",
    )
    p.add_argument(
        "--no-fd-guard",
        dest="fd_guard",
        action="store_false",
        help="run fan-out/connections even past the broker's open-files or socket limit "
        "(the plugin then drives RabbitMQ into emfile: queues and the vhost crash)",
    )
    p.add_argument("--pause", type=float, default=1.0, help="seconds between runs (default 1)")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help="results file")
    p.add_argument(
        "--markdown",
        type=Path,
        nargs="?",
        const=DEFAULT_MD,
        metavar="FILE",
        help="also write the tables and the command line as Markdown "
        "(default FILE: bench/RESULTS.md)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="record the gateway with py-spy (gateway target only)",
    )
    p.add_argument("--profile-rate", type=int, default=250, help="py-spy samples/s")
    return p.parse_args(argv)


def sizes_from(args: argparse.Namespace) -> Sizes:
    sizes = Sizes.quick() if args.quick else Sizes()
    changes: dict[str, Any] = {}
    if args.connections:
        changes["connections"] = args.connections
    types = {f.name: f.type for f in dataclasses.fields(Sizes)}
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in types:
            raise SystemExit(f"--set: unknown size {key!r} (one of {', '.join(types)})")
        changes[key] = float(value) if types[key] in ("float", float) else int(value)
    return dataclasses.replace(sizes, **changes)


def host_info() -> dict[str, str]:
    info = {"python": platform.python_version(), "cores": str(os.cpu_count())}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
        info["memory"] = f"{mem_kb / 2**20:.0f} GiB"
    except (OSError, ValueError):
        pass
    try:
        out = subprocess.run(["rabbitmqctl", "version"], capture_output=True, text=True, timeout=30)
        if out.returncode == 0:
            info["rabbitmq"] = out.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return info


class Bench:
    def __init__(self, args: argparse.Namespace, pool: Pool) -> None:
        self.args = args
        self.pool = pool
        self.sizes = sizes_from(args)
        self.names = expand(args.scenario)
        self.repeats = args.repeats or (1 if args.quick else 5)
        wanted = [t.strip() for t in args.targets.split(",") if t.strip()]
        if args.profile:
            wanted = ["gateway"]
        log = RESULTS / "gateway.log"
        self.targets: dict[str, Target] = {}
        if "gateway" in wanted:
            self.targets["gateway"] = GatewayTarget(venv_python(), log, args.gateway_arg)
        if "plugin" in wanted:
            self.targets["plugin"] = PluginTarget(args.plugin_url)
        self.amqp = Amqp(args.amqp_url)
        self.mgmt = Mgmt(args.mgmt_url, "guest", "guest")
        self.runs: list[dict[str, Any]] = []
        self._seq = 0

    async def run(self) -> None:
        self.pool.attach()
        await self.amqp.connect()
        deadline = time.monotonic() + 30  # it may just have been enabled
        while not await self.mgmt.available():
            if time.monotonic() > deadline:
                print("warning: management API not reachable: no broker memory", file=sys.stderr)
                break
            await asyncio.sleep(1)
        try:
            for repeat in range(self.repeats):
                order = list(self.targets.values())
                if repeat % 2:
                    order.reverse()
                for name in self.names:
                    for target in order:
                        await self.one(name, target, repeat)
                        await asyncio.sleep(self.args.pause)
        finally:
            self.pool.detach()
            await self.amqp.close()

    async def one(self, name: str, target: Target, repeat: int) -> None:
        scenario = make(name)
        self._seq += 1
        uid = f"bench-{os.getpid()}-{self._seq}-{secrets.token_hex(2)}"
        started = time.monotonic()
        profiler = None
        try:
            await target.start()
        except TargetError as exc:
            out = Outcome(error=str(exc))
        else:
            if self.args.profile and target.pid:
                raw = RESULTS / f"profile-{name}.raw"
                profiler = (raw, pyspy.start(target.pid, raw, self.args.profile_rate))
                await asyncio.sleep(1.0)  # let py-spy attach
            ctx = Ctx(
                target,
                self.pool,
                self.amqp,
                self.mgmt,
                find_beam_pid(),
                self.sizes,
                uid,
                fd_guard=self.args.fd_guard,
            )
            try:
                out = await scenario.run(ctx)
            finally:
                if profiler is not None:
                    self._finish_profile(*profiler)
                await target.stop()
        record = {
            "scenario": name,
            "target": target.name,
            "repeat": repeat,
            **dataclasses.asdict(out),
            "elapsed_s": time.monotonic() - started,
        }
        self.runs.append(record)
        print(progress_line(record, self.repeats), file=sys.stderr, flush=True)

    def _finish_profile(self, raw: Path, proc: Any) -> None:
        message = pyspy.stop(proc)
        if not raw.exists():
            print(f"py-spy wrote nothing ({message})", file=sys.stderr)
            return
        txt, svg = pyspy.render(raw)
        print(
            f"profile: {svg} (flamegraph), {txt} (top functions), {raw} (collapsed stacks; "
            "opens in speedscope.app)",
            file=sys.stderr,
        )
        print(txt.read_text(), file=sys.stderr)


def progress_line(r: dict[str, Any], repeats: int) -> str:
    head = f"[{r['repeat'] + 1}/{repeats}] {r['scenario']:<26} {r['target']:<8}"
    if r["error"]:
        return f"{head} failed ({r['error']})"
    shown = []
    for metric in make(r["scenario"]).metrics:
        value = r["metrics"].get(metric.key)
        if value is not None:
            text = (
                ("yes" if value else "no") if isinstance(value, bool) else metric.fmt.format(value)
            )
            shown.append(f"{text} {metric.label}")
    cpu = r["cpu"]
    if cpu.get("gateway_s") is not None and r["units"]:
        shown.append(f"gw {cpu['gateway_s'] / r['units'] * 1e6:.1f} us/{r['unit']}")
    if cpu.get("loadgen_share") is not None:
        shown.append(f"loadgen {cpu['loadgen_share']:.1%}")
    notes = f"  [{'; '.join(r['notes'])}]" if r["notes"] else ""
    return f"{head} " + ", ".join(shown) + notes


def main(argv: list[str] | None = None) -> int:
    import uvloop

    args = parse_args(argv)
    command = shlex.join(sys.orig_argv if argv is None else ["python", "-m", "bench.run", *argv])
    enabled_here: list[str] = []
    if args.ensure_plugins:
        try:
            enabled_here = ensure_plugins()
        except (TargetError, OSError, subprocess.SubprocessError) as exc:
            print(f"warning: cannot manage plugins ({exc}); going on", file=sys.stderr)
    try:
        expand(args.scenario)
    except ValueError as exc:
        raise SystemExit(f"bench.run: {exc}") from None
    pool = Pool(args.workers)
    started, t0 = time.strftime("%Y-%m-%d %H:%M:%S"), time.monotonic()
    bench = Bench(args, pool)
    try:
        if "plugin" in bench.targets and enabled_here:
            uvloop.run(wait_plugin(bench.targets["plugin"]))  # type: ignore[arg-type]
        uvloop.run(bench.run())
    except KeyboardInterrupt:
        print("interrupted: writing what ran so far", file=sys.stderr)
    finally:
        pool.close()
        restore_plugins(enabled_here)
    data = {
        "command": command,
        "started": started,
        "duration_s": time.monotonic() - t0,
        "repeats": bench.repeats,
        "host": host_info(),
        "sizes": dataclasses.asdict(bench.sizes),
        "scenarios": bench.names,
        "runs": bench.runs,
    }
    data["summary"] = summarize(bench.runs)
    write_json(data, args.json)
    print(render_text(data))
    print(f"\nwrote {args.json}", file=sys.stderr)
    if args.markdown:
        args.markdown.write_text(render_markdown(data))
        print(f"wrote {args.markdown}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
