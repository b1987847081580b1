"""py-spy around one gateway run: record, then a text summary and a flamegraph SVG.

py-spy records collapsed stacks (``--format raw``: ``root;...;leaf COUNT`` per line,
each frame ``function (file:line)``); that file also opens as is in
https://www.speedscope.app. From it this module writes:

* ``<base>.txt``: the functions with the most samples on top of the stack (self) and
  anywhere on it (total), lines folded into functions;
* ``<base>.svg``: a flamegraph (hover a box for its numbers), frames folded the same
  way, root at the bottom.

``python -m bench.profile RAW_FILE`` re-renders both from a saved raw file.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from html import escape
from pathlib import Path

_LINE = re.compile(r":\d+\)$")


def pyspy_path() -> str | None:
    venv = Path(sys.executable).parent / "py-spy"
    return str(venv) if venv.exists() else shutil.which("py-spy")


def start(pid: int, raw: Path, rate: int = 250) -> subprocess.Popen[bytes]:
    exe = pyspy_path()
    if exe is None:
        raise RuntimeError(
            "py-spy not found: .venv/bin/pip install py-spy (or run bench/profile.sh)"
        )
    raw.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        exe,
        "record",
        "--pid",
        str(pid),
        "--rate",
        str(rate),
        "--subprocesses",
        "--format",
        "raw",
        "--output",
        str(raw),
    ]
    return subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def stop(proc: subprocess.Popen[bytes]) -> str:
    """Stop recording (py-spy writes its file on SIGINT); return its stderr tail."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err.decode(errors="replace").strip().splitlines()[-1:][0] if err.strip() else ""


def _short(frame: str) -> str:
    """``func (/long/path/site-packages/pkg/mod.py:12)`` -> ``func (pkg/mod.py)``."""
    if "(" not in frame:  # "process PID:"cmdline"" (a root added by --subprocesses)
        return frame[:90]
    frame = _LINE.sub(")", frame)
    for marker in ("site-packages/", "/work/main/", "lib/python3."):
        i = frame.find(marker)
        if i >= 0:
            head = frame[: frame.index("(") + 1]
            tail = frame[i + len(marker) :]
            if marker == "lib/python3.":
                tail = "stdlib/" + tail.split("/", 1)[-1]
            return head + tail
    return frame


def load(raw: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append(([_short(f) for f in stack.split(";")], int(count)))
    return stacks


def summary(stacks: list[tuple[list[str], int]], top: int = 30) -> str:
    total = sum(c for _, c in stacks) or 1
    self_: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    for frames, count in stacks:
        self_[frames[-1]] += count
        for name in set(frames):
            incl[name] += count
    lines = [f"{total} samples"]
    for title, counter in (("self (top of stack)", self_), ("total (anywhere on stack)", incl)):
        lines += ["", f"-- {title}", f"{'%':>6}  {'samples':>8}  function"]
        lines += [f"{c / total:6.1%}  {c:8d}  {name}" for name, c in counter.most_common(top)]
    return "\n".join(lines) + "\n"


def flamegraph_svg(stacks: list[tuple[list[str], int]], width: int = 1400, row: int = 17) -> str:
    tree: dict[str, object] = {}
    counts: Counter[tuple[str, ...]] = Counter()
    for frames, count in stacks:
        node = tree
        for i, name in enumerate(frames):
            node = node.setdefault(name, {})  # type: ignore[assignment]
            counts[tuple(frames[: i + 1])] += count
    total = sum(c for _, c in stacks) or 1
    depth = max((len(f) for f, _ in stacks), default=1)
    height = (depth + 2) * row
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="monospace" font-size="11">',
        f'<text x="5" y="13">stomp-gateway flamegraph: {total} samples (hover for details)</text>',
    ]
    scale = (width - 10) / total

    def walk(node: dict[str, object], path: tuple[str, ...], x: float, level: int) -> None:
        for name in sorted(node):
            key = (*path, name)
            w = counts[key] * scale
            if w >= 0.3:
                y = height - (level + 1) * row
                hue = int(hashlib.md5(name.encode()).hexdigest()[:4], 16)
                color = f"rgb({205 + hue % 50},{80 + hue % 120},{40 + hue % 40})"
                pct = counts[key] / total
                label = escape(name[: int(w / 7)]) if w > 21 else ""
                out.append(
                    f"<g><title>{escape(name)} ({counts[key]} samples, {pct:.2%})</title>"
                    f'<rect x="{x + 5:.1f}" y="{y}" width="{w:.1f}" height="{row - 1}" fill="{color}"/>'
                    f'<text x="{x + 8:.1f}" y="{y + row - 5}">{label}</text></g>'
                )
                walk(node[name], key, x, level + 1)  # type: ignore[arg-type]
            x += w

    walk(tree, (), 0.0, 0)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def render(raw: Path) -> tuple[Path, Path]:
    stacks = load(raw)
    base = raw.with_suffix("")
    txt, svg = base.with_suffix(".txt"), base.with_suffix(".svg")
    txt.write_text(summary(stacks))
    svg.write_text(flamegraph_svg(stacks))
    return txt, svg


if __name__ == "__main__":
    for path in sys.argv[1:]:
        for written in render(Path(path)):
            print(f"wrote {written}")
