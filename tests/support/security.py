"""Helpers for the security and operations tests: JWTs, certificates, a gateway run as a
subprocess (JSON logs captured), raw sockets, the gateway's RSS and the broker's counts."""

# per-call timeouts are the point of these helpers; wait_until polls a condition that
# has no event to wait on (a counter, a management API), always under a deadline
# ruff: noqa: ASYNC109, ASYNC110

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(claims: dict[str, Any], signature: bytes = b"not-verified-by-the-gateway") -> str:
    """A JWS compact token with these claims (the gateway never checks the signature)."""
    header = b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    return f"{header}.{b64url(json.dumps(claims).encode())}.{b64url(signature)}"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_cert(directory: Path, name: str, cn: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={cn}",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return cert, key


async def wait_until(predicate: Any, timeout: float = 5, interval: float = 0.02) -> None:
    """Poll ``predicate()`` until it is true; TimeoutError after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(interval)


def rss_kib() -> int:
    """This process's resident set size (VmRSS), KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


class GatewayProcess:
    """``python -m gateway`` with JSON logs; every output line is kept in ``lines``."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port
        self.url = f"ws://127.0.0.1:{port}/ws"
        self.lines: list[bytes] = []
        self.events: list[dict[str, Any]] = []
        self._cursor = 0  # events before it were seen by wait_for_event
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, *args: str, env: dict[str, str] | None = None) -> GatewayProcess:
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "--host", "127.0.0.1", "--port", str(port), *args,
            cwd=ROOT,
            env={**os.environ, "GATEWAY_LOG_FORMAT": "json", **(env or {})},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        gw = cls(proc, port)
        try:
            await gw.wait_for_event("listening", timeout=20)
        except BaseException:
            await gw.kill()
            raise
        gw._reader = asyncio.ensure_future(gw._read_rest())
        return gw

    async def _read_line(self) -> bytes:
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if line:
            self.lines.append(line)
            try:
                self.events.append(json.loads(line))
            except ValueError:
                self.events.append({"event": "<not json>", "line": line.decode("utf-8", "replace")})
        self._changed.set()
        return line

    async def wait_for_event(self, name: str, timeout: float = 10) -> dict[str, Any]:
        """The next event called ``name`` not returned before (in output order)."""
        async with asyncio.timeout(timeout):
            while True:
                while self._cursor < len(self.events):
                    event = self.events[self._cursor]
                    self._cursor += 1
                    if event.get("event") == name:
                        return event
                if self._reader is None:
                    line = await self._read_line()
                    assert line, f"the gateway exited before logging {name!r}: {self.lines!r}"
                else:
                    assert not self._reader.done(), f"the gateway exited before {name!r}: {self.lines!r}"
                    self._changed.clear()
                    await self._changed.wait()

    async def _read_rest(self) -> None:
        while await self._read_line():
            pass

    @property
    def output(self) -> bytes:
        return b"".join(self.lines)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    async def wait(self, timeout: float = 20) -> int:
        """Wait for the exit (and the last output line); the exit status."""
        started = time.monotonic()
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, max(1.0, timeout - (time.monotonic() - started)))
        return code

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()
