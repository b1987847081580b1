"""The two things under test, behind one small interface.

* ``GatewayTarget``: a fresh ``python -m gateway`` subprocess on a free port for each
  scenario run (so CPU and memory deltas start from a clean process), stopped with
  SIGTERM (graceful), killed if it lingers. Its output goes to a log file.
* ``PluginTarget``: the real rabbitmq_web_stomp at a fixed URL; nothing to start.
* ``ensure_plugins`` / ``restore_plugins``: enable rabbitmq_web_stomp (and the
  management plugin the bench reads) when missing, and later disable exactly what
  was enabled here.

``start()`` returns once a STOMP CONNECT through the target answers CONNECTED.
"""

# Timeouts are per call (probe(..., timeout=3)).
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from .client import open_stomp

REPO = Path(__file__).resolve().parent.parent


class TargetError(Exception):
    """The target could not be started or does not answer."""


async def probe(host: str, port: int, path: str, timeout: float = 3) -> str | None:
    """None if a STOMP session can be opened (and closed), else the reason."""
    try:
        client = await open_stomp(host, port, path, timeout=timeout)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    await client.disconnect(timeout)
    return None


class Target:
    name = "?"
    host = "127.0.0.1"
    port = 0
    path = "/ws"
    pid: int | None = None  # the process to measure (None: in the broker)

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}{self.path}"

    def spec(self) -> dict[str, object]:
        return {"host": self.host, "port": self.port, "path": self.path}

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        pass


class PluginTarget(Target):
    name = "plugin"

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 15674
        self.path = parts.path or "/ws"

    async def start(self) -> None:
        reason = await probe(self.host, self.port, self.path)
        if reason is not None:
            raise TargetError(f"plugin not answering at {self.url}: {reason}")


class GatewayTarget(Target):
    name = "gateway"

    def __init__(self, python: str, log_path: Path, extra_args: list[str] | None = None) -> None:
        self.python = python
        self.log_path = log_path
        self.extra_args = extra_args or []
        self.proc: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None

    async def start(self) -> None:
        self.port = free_port()
        cmd = [self.python, "-m", "gateway", "--host", self.host, "--port", str(self.port)]
        cmd += ["--log-level", "warning", *self.extra_args]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._log.write(f"\n== {time.strftime('%H:%M:%S')} {' '.join(cmd)}\n".encode())
        self._log.flush()
        self.proc = await asyncio.create_subprocess_exec(
            *cmd,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            preexec_fn=_raise_nofile,
        )
        self.pid = self.proc.pid
        deadline = time.monotonic() + 30
        reason: str | None = "not started"
        while time.monotonic() < deadline and self.proc.returncode is None:
            reason = await probe(self.host, self.port, self.path, timeout=2)
            if reason is None:
                return
            await asyncio.sleep(0.2)
        code = self.proc.returncode
        await self.stop()
        raise TargetError(
            f"gateway did not start (exit {code}, last: {reason}); see {self.log_path}"
        )

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------ broker plugins
WANTED_PLUGINS = ("rabbitmq_web_stomp", "rabbitmq_management")


def _plugins(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("rabbitmq-plugins")
    if exe is None:
        raise TargetError("rabbitmq-plugins not found: cannot enable plugins")
    return subprocess.run(
        [exe, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def enabled_plugins() -> set[str]:
    """Plugins enabled explicitly or implicitly (``rabbitmq-plugins list -e -m``)."""
    result = _plugins("list", "-e", "-m")
    return {line.strip() for line in result.stdout.splitlines() if line.strip()}


def ensure_plugins(wanted: tuple[str, ...] = WANTED_PLUGINS) -> list[str]:
    """Enable the ``wanted`` plugins that are off; return the ones enabled here."""
    before = enabled_plugins()
    missing = [p for p in wanted if p not in before]
    if missing:
        print(f"== enabling {' '.join(missing)}", file=sys.stderr)
        result = _plugins("enable", *missing)
        if result.returncode != 0:
            raise TargetError(f"rabbitmq-plugins enable failed: {result.stderr.strip()}")
    return missing


def restore_plugins(enabled_here: list[str]) -> None:
    """Disable what ``ensure_plugins`` enabled (rabbitmq_stomp goes with web_stomp when
    it was only enabled implicitly)."""
    if enabled_here:
        print(f"== disabling {' '.join(enabled_here)} (enabled by the bench)", file=sys.stderr)
        with contextlib.suppress(Exception):
            _plugins("disable", *enabled_here)


async def wait_plugin(target: PluginTarget, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (reason := await probe(target.host, target.port, target.path)) is not None:
        if time.monotonic() > deadline:
            raise TargetError(f"plugin did not answer within {timeout:.0f}s: {reason}")
        await asyncio.sleep(0.5)


def venv_python() -> str:
    candidate = REPO / ".venv" / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable
