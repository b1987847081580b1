"""The console script and ``python -m gateway`` really serve, and stop on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

from tests.support.wsclient import connect_ws

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        *args,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def test_help_lists_the_options() -> None:
    proc = await run("--help")
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0
    text = out.decode()
    for option in ("--host", "--port", "--amqp-url", "--config", "--log-level"):
        assert option in text


async def test_invalid_settings_exit_2(tmp_path: Path) -> None:
    proc = await run("--config", str(tmp_path / "missing.toml"))
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    assert b"config file not found" in out


async def test_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "gateway.toml"
    config.write_text(f'host = "127.0.0.1"\nport = {port}\n')
    proc = await run("--config", str(config), "--log-level", "info", env={"GATEWAY_LOG_FORMAT": "json"})
    assert proc.stdout is not None
    try:
        listening = None
        seen = b""
        while listening is None:
            line = await asyncio.wait_for(proc.stdout.readline(), 20)
            seen += line
            assert line, "the gateway exited before listening"
            event = json.loads(line)
            if event.get("event") == "listening":
                listening = event
        assert listening["url"] == f"ws://127.0.0.1:{port}/ws"
        ws = await connect_ws(listening["url"])
        connected = await ws.connect_stomp(passcode="guest")
        assert connected.header("version") == "1.2"
        proc.send_signal(signal.SIGTERM)
        error = await ws.recv_frame()
        assert (error.command, error.header("message")) == ("ERROR", "server shutting down")
        code, _ = await ws.recv_close()
        assert code == 1001
        rest, _ = await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode == 0
        assert b"session closed" in rest
        assert b"passcode" not in seen + rest
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
