"""Summaries, tables (text and Markdown), the JSON file and RESULTS.md.

Medians are over the successful runs of each (scenario, target). Ratios are always
gateway / plugin; the "better" column says which side of 1 is good for that metric
(throughput: > 1 means the gateway is faster; latency, setup time: < 1 means it is).
CPU is per unit of work (message, delivery or session): the gateway's process tree,
the broker's beam.smp (which, for the plugin, includes the STOMP work), and their sum.

``python -m bench.report [RESULTS.json] [--markdown FILE]`` re-renders a saved run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from .scenarios import make

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"
DEFAULT_MD = Path(__file__).resolve().parent / "RESULTS.md"
BETTER = {"higher": "> 1", "lower": "< 1", None: ""}


def _median(values: list[Any]) -> Any:
    values = [v for v in values if v is not None]
    if not values:
        return None
    if all(isinstance(v, bool) for v in values):
        return f"{sum(values)}/{len(values)} yes"
    return statistics.median(values)


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{scenario: {target: {metric medians, cpu medians, ok, failed, errors}}}."""
    out: dict[str, dict[str, Any]] = {}
    for run in runs:
        out.setdefault(run["scenario"], {}).setdefault(run["target"], []).append(run)
    summary: dict[str, dict[str, Any]] = {}
    for scenario, by_target in out.items():
        summary[scenario] = {}
        for target, rs in by_target.items():
            ok = [r for r in rs if not r["error"]]
            keys = {k for r in ok for k in r["metrics"]}
            entry: dict[str, Any] = {
                "runs": len(rs),
                "ok": len(ok),
                "errors": sorted({r["error"] for r in rs if r["error"]}),
                "notes": sorted({n for r in rs for n in r["notes"]}),
                "metrics": {k: _median([r["metrics"].get(k) for r in ok]) for k in sorted(keys)},
                "unit": rs[0]["unit"],
            }
            for name in ("gateway_s", "broker_s"):
                entry[f"{name[:-2]}_us_per_unit"] = _median(
                    [
                        r["cpu"].get(name) / r["units"] * 1e6
                        for r in ok
                        if r["units"] and r["cpu"].get(name) is not None
                    ]
                )
            for name in ("loadgen_share", "loadgen_max_proc"):
                entry[name] = _median([r["cpu"].get(name) for r in ok])
            summary[scenario][target] = entry
    return summary


def _fmt(value: Any, fmt: str = "{:,.0f}") -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def comparison_rows(summary: dict[str, dict[str, Any]]) -> list[list[str]]:
    """One row per metric; a target whose runs all failed shows "failed (...)" on the
    scenario's first row (the full reason is in the notes)."""
    rows = [["scenario", "metric", "gateway", "plugin", "gw/plugin", "better"]]
    for scenario, by_target in summary.items():
        entries = [by_target.get("gateway"), by_target.get("plugin")]
        for n, metric in enumerate(make(scenario).metrics):
            values = [e["metrics"].get(metric.key) if e else None for e in entries]
            cells = []
            for entry, value in zip(entries, values, strict=True):
                failed = _failure(entry) if entry else None
                cells.append((failed if n == 0 else "-") if failed else _fmt(value, metric.fmt))
            a, b = values
            ratio = "-"
            if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values) and b:
                ratio = f"{a / b:.2f}x"
            rows.append([scenario, metric.label, *cells, ratio, BETTER[metric.better]])
    return rows


def _failure(entry: dict[str, Any]) -> str | None:
    if entry["ok"]:
        return None
    reason = entry["errors"][0] if entry["errors"] else "no run"
    short = reason.split(";")[0].split(":")[0] if len(reason) > 40 else reason
    return f"failed ({short})"


def resource_rows(summary: dict[str, dict[str, Any]]) -> list[list[str]]:
    rows = [
        [
            "scenario",
            "target",
            "unit",
            "gateway CPU us/unit",
            "broker CPU us/unit",
            "server total us/unit",
            "loadgen CPU (all cores)",
            "loadgen busiest proc",
            "runs ok",
        ]
    ]
    for scenario, by_target in summary.items():
        for target in ("gateway", "plugin"):
            e = by_target.get(target)
            if e is None:
                continue
            gw, br = e["gateway_us_per_unit"], e["broker_us_per_unit"]
            total = (gw or 0) + br if br is not None else None
            rows.append(
                [
                    scenario,
                    target,
                    e["unit"],
                    _fmt(gw, "{:,.1f}"),
                    _fmt(br, "{:,.1f}"),
                    _fmt(total, "{:,.1f}"),
                    _fmt(e["loadgen_share"], "{:.1%}"),
                    _fmt(e["loadgen_max_proc"], "{:.1%}"),
                    f"{e['ok']}/{e['runs']}",
                ]
            )
    return rows


def notes(summary: dict[str, dict[str, Any]]) -> list[str]:
    out = []
    for scenario, by_target in summary.items():
        for target, e in by_target.items():
            out += [f"{scenario} / {target}: error: {err}" for err in e["errors"]]
            out += [f"{scenario} / {target}: {note}" for note in e["notes"]]
    return out


def text_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def md_table(rows: list[list[str]]) -> str:
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
    return "\n".join(lines)


def render_text(data: dict[str, Any]) -> str:
    summary = data["summary"]
    parts = [
        f"== comparison (medians of {data['repeats']} repeat(s); ratio = gateway/plugin)",
        text_table(comparison_rows(summary)),
        "",
        "== resources (medians; CPU per unit of work, load generator's own CPU share)",
        text_table(resource_rows(summary)),
    ]
    if extra := notes(summary):
        parts += ["", "== notes", *extra]
    return "\n".join(parts)


def render_markdown(data: dict[str, Any]) -> str:
    summary, host = data["summary"], data.get("host", {})
    lines = [
        "# Benchmark: stomp-gateway vs rabbitmq_web_stomp",
        "",
        f"Run {data['started']} ({data['duration_s']:.0f} s), command:",
        "",
        "```",
        data["command"],
        "```",
        "",
        *(f"- {k}: {v}" for k, v in host.items()),
        f"- repeats: {data['repeats']} (targets alternate; medians shown)",
        f"- sizes: {', '.join(f'{k}={v}' for k, v in data['sizes'].items())}",
        "",
        "## Comparison",
        "",
        "Ratio = gateway / plugin. `better > 1`: higher is better (throughput);"
        " `better < 1`: lower is better (latency, setup time).",
        "",
        md_table(comparison_rows(summary)),
        "",
        "## Resources",
        "",
        "CPU per unit of work (message, delivery or session) from /proc utime+stime over the"
        " measured window: the gateway's process tree and the broker's beam.smp (for the"
        " plugin the broker does the STOMP work too). Load generator: its processes' CPU"
        " time / wall time / cores, and the busiest process's share of one core.",
        "",
        md_table(resource_rows(summary)),
    ]
    if extra := notes(summary):
        lines += ["", "## Notes", "", *(f"- {n}" for n in extra)]
    return "\n".join(lines) + "\n"


def write_json(data: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=str) + "\n")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n")[0])
    p.add_argument("json", nargs="?", type=Path, default=DEFAULT_JSON)
    p.add_argument(
        "--markdown", type=Path, nargs="?", const=DEFAULT_MD, help=f"write {DEFAULT_MD.name}"
    )
    args = p.parse_args(argv)
    data = json.loads(args.json.read_text())
    data["summary"] = summarize(data["runs"])
    print(render_text(data))
    if args.markdown:
        args.markdown.write_text(render_markdown(data))
        print(f"wrote {args.markdown}", file=sys.stderr)


if __name__ == "__main__":
    main()
