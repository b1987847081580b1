"""Helpers for the end-to-end tests: a remote-controlled headless Chromium, the backend
examples run as subprocesses, and the reasons a test must skip.

Everything here is asyncio and never blocks: the gateway under test runs in-process, in
the same event loop, so a blocking call would stall it (and the test) until a timeout.

* :class:`Browser` starts ``node tests/e2e/driver.mjs`` (playwright-core driving
  Debian's ``/usr/bin/chromium``) and sends it one JSON command per line; page errors,
  console errors and failed requests are collected in ``events``.
* :func:`run_example` runs ``examples/python/notify.py`` or ``examples/php/notify.php``
  and returns its stdout; :class:`Responder` runs ``examples/python/rpc_server.py``.
* :func:`missing_browser` / :func:`missing_php` say why a test cannot run (or None).
"""

# The per-call timeouts are the point of these helpers.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

E2E_DIR = Path(__file__).resolve().parent
ROOT = E2E_DIR.parent.parent
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
PHP_AMQPLIB = Path("/usr/share/php/PhpAmqpLib/autoload.php")
NOTIFY_PY = ROOT / "examples" / "python" / "notify.py"
NOTIFY_PHP = ROOT / "examples" / "php" / "notify.php"
RPC_SERVER = ROOT / "examples" / "python" / "rpc_server.py"
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
BOOTSTRAP = "run `bash scripts/ensure-e2e-deps.sh` (make test does)"


# -- what is missing ----------------------------------------------------------------------
def missing_browser() -> str | None:
    if shutil.which("node") is None:
        return f"node is not installed: {BOOTSTRAP}"
    if not Path(CHROMIUM).is_file():
        return f"{CHROMIUM} is missing (Debian package chromium): {BOOTSTRAP}"
    if not (E2E_DIR / "node_modules" / "playwright-core" / "package.json").is_file():
        return f"tests/e2e/node_modules is missing (npm ci): {BOOTSTRAP}"
    return None


def missing_php() -> str | None:
    if shutil.which("php") is None:
        return f"php is not installed (Debian package php-cli): {BOOTSTRAP}"
    if not PHP_AMQPLIB.is_file():
        return f"{PHP_AMQPLIB} is missing (Debian package php-amqplib): {BOOTSTRAP}"
    return None


# -- subprocesses ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Completed:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


async def run(*args: str, env: dict[str, str] | None = None, timeout: float = 20) -> Completed:
    """Run a command without blocking the loop; fail the test on a non-zero exit."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"{' '.join(args)} did not finish within {timeout}s") from None
    done = Completed(args, proc.returncode or 0, out.decode(), err.decode())
    assert done.returncode == 0, f"{' '.join(args)} exited {done.returncode}: {done.stderr}"
    return done


def example_env(exchange: str) -> dict[str, str]:
    return {"AMQP_URL": AMQP_URL, "STOMP_EXCHANGE": exchange}


async def run_example(lang: str, exchange: str, *cli: str) -> str:
    """``notify.py``/``notify.php`` with ``cli`` (``user 42 '{...}'`` or ``broadcast
    '{...}'``) publishing to ``exchange``; returns its stdout."""
    if lang == "python":
        args = (sys.executable, str(NOTIFY_PY), *cli)
    else:
        args = ("php", str(NOTIFY_PHP), *cli)
    return (await run(*args, env=example_env(exchange))).stdout


class Responder:
    """``examples/python/rpc_server.py --queue Q`` as a subprocess, ready when consuming."""

    def __init__(self, queue: str, count: int | None = None) -> None:
        self.queue = queue
        self.count = count
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []

    async def start(self, timeout: float = 15) -> Responder:
        args = [sys.executable, str(RPC_SERVER), "--queue", self.queue]
        if self.count is not None:
            args += ["--count", str(self.count)]
        self.proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "AMQP_URL": AMQP_URL},
            cwd=ROOT,
        )
        line = await self.readline(timeout)
        assert line == f"ready {self.queue}", f"rpc_server.py said {line!r}"
        return self

    async def readline(self, timeout: float = 10) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            raw = await self.proc.stdout.readline()
        if not raw:
            err = await self.proc.stderr.read() if self.proc.stderr else b""
            raise AssertionError(f"rpc_server.py exited: {err.decode()}")
        line = raw.decode().rstrip("\n")
        self.lines.append(line)
        return line

    async def wait(self, timeout: float = 10) -> int:
        assert self.proc is not None
        async with asyncio.timeout(timeout):
            return await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await self.wait(5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


# -- the browser ----------------------------------------------------------------------------
class BrowserUnavailable(Exception):
    """Chromium could not be started (the reason is the message)."""


class BrowserCommandError(AssertionError):
    """A driver command failed (a selector not found, a wait timed out, ...)."""


class Browser:
    """One headless Chromium page, driven through ``tests/e2e/driver.mjs``."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self.version = ""
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ready: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, timeout: float = 30) -> Browser:
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(E2E_DIR / "driver.mjs"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "CHROMIUM_PATH": CHROMIUM},
            cwd=E2E_DIR,
        )
        browser = cls(proc)
        try:
            async with asyncio.timeout(timeout):
                hello = await browser._ready
        except TimeoutError:
            await browser.close()
            raise BrowserUnavailable(f"Chromium did not start within {timeout}s") from None
        if hello.get("event") != "ready":
            await browser.close()
            raise BrowserUnavailable(str(hello.get("error") or hello))
        browser.version = str(hello.get("version", ""))
        return browser

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while raw := await self.proc.stdout.readline():
            try:
                message = json.loads(raw)
            except json.JSONDecodeError:
                continue  # not ours (a library printing to stdout)
            if "id" in message:
                future = self._pending.pop(message["id"], None)
                if future is not None and not future.done():
                    future.set_result(message)
            elif message.get("event") in ("ready", "fatal") and not self._ready.done():
                self._ready.set_result(message)
            else:
                self.events.append(message)
        err = b""
        if self.proc.stderr is not None:
            with contextlib.suppress(Exception):
                err = await self.proc.stderr.read()
        gone = {"event": "fatal", "error": f"driver exited: {err.decode()[-2000:]}"}
        if not self._ready.done():
            self._ready.set_result(gone)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(BrowserCommandError(gone["error"]))

    async def call(self, op: str, args: dict[str, Any] | None = None, timeout: float = 20) -> Any:
        """Send one command to the driver and wait (at most ``timeout``) for its answer."""
        args = args or {}
        assert self.proc.stdin is not None
        ident = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        self.proc.stdin.write(json.dumps({"id": ident, "op": op, **args}).encode() + b"\n")
        await self.proc.stdin.drain()
        async with asyncio.timeout(timeout):
            answer = await future
        if not answer.get("ok"):
            raise BrowserCommandError(f"{op} {args}: {answer.get('error')}")
        return answer.get("value")

    # -- page operations ----------------------------------------------------------------
    async def goto(self, url: str) -> int:
        status = await self.call("goto", {"url": url})
        assert status == 200, f"GET {url} -> {status}"
        return int(status)

    async def wait_for(self, expr: str, timeout: float = 10) -> Any:
        """Poll the JS expression ``expr`` in the page until it is truthy; its value."""
        try:
            return await self.call(
                "waitFor", {"expr": expr, "timeout": int(timeout * 1000)}, timeout=timeout + 5
            )
        except BrowserCommandError as exc:
            raise BrowserCommandError(f"waited {timeout}s for {expr}: {exc}") from None

    async def eval(self, expr: str) -> Any:
        return await self.call("eval", {"expr": expr})

    async def text(self, selector: str) -> str:
        return str(await self.eval(f"document.querySelector({json.dumps(selector)}).textContent"))

    async def fill(self, selector: str, value: str) -> None:
        await self.call("fill", {"selector": selector, "value": value})

    async def click(self, selector: str) -> None:
        await self.call("click", {"selector": selector})

    async def submit(self, selector: str, value: str) -> None:
        """Type ``value`` into the input ``selector`` and press Enter."""
        await self.call("submit", {"selector": selector, "value": value})

    async def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        await self.call("screenshot", {"path": str(path), "fullPage": True})
        return path

    def problems(self) -> list[dict[str, Any]]:
        """Uncaught page errors, console errors, failed requests and HTTP errors."""
        return [
            e
            for e in self.events
            if e.get("event") in ("pageerror", "requestfailed", "httperror")
            or (e.get("event") == "console" and e.get("type") == "error")
        ]

    async def close(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                await self.call("close", timeout=5)
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            try:
                async with asyncio.timeout(10):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
