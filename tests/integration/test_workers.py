"""``--workers 2``: two processes serve the same port (SO_REUSEPORT), a supervisor
restarts one that dies, and SIGTERM drains them all and exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

from tests.support.faultproxy import until
from tests.support.wsclient import StompWs, connect_ws

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.update(int(child) for child in text)
    return found


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def sockets_on(port: int, state: str) -> set[str]:
    """Inodes of the TCP sockets in ``state`` (01 established, 0A listen) on ``port``."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == state and int(fields[1].split(":")[1], 16) == port:
            found.add(fields[9])
    return found


def listening(pids: set[int], port: int) -> bool:
    """Every one of ``pids`` has its own socket listening on ``port``."""
    sockets = sockets_on(port, "0A")
    return all(socket_inodes(pid) & sockets for pid in pids)


def serving(pids: set[int], port: int) -> dict[int, int]:
    """pid -> client connections it holds on ``port``."""
    sockets = sockets_on(port, "01")
    return {pid: len(socket_inodes(pid) & sockets) for pid in pids}


async def test_two_workers_share_the_port_restart_and_stop_on_sigterm() -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "--host", "127.0.0.1", "--port", str(port),
        "--workers", "2", "--log-level", "warning",
        cwd=ROOT,
        env={**os.environ, "GATEWAY_LOG_FORMAT": "json"},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    clients: list[StompWs] = []
    try:
        await until(lambda: len(children(proc.pid)) == 2, within=20)
        workers = children(proc.pid)
        await until(lambda: listening(workers, port), within=20)

        async def connect_one() -> None:
            client = await connect_ws(f"ws://127.0.0.1:{port}/ws")
            connected = await client.connect_stomp()
            assert connected.command == "CONNECTED"
            clients.append(client)

        # Both listening: connect until each worker holds sessions (the kernel
        # spreads connections over the two; 64 all on one: odds 2 in 10^19).
        for _ in range(64):
            await connect_one()
            if all(serving(workers, port).values()):
                break
        load = serving(workers, port)
        assert set(load) == workers and all(load.values())
        assert sum(load.values()) == len(clients)

        # A worker that dies is replaced; its clients lost their connection.
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        await until(lambda: len(children(proc.pid)) == 2 and victim not in children(proc.pid))
        [replacement] = children(proc.pid) - workers
        await until(lambda: listening({replacement}, port), within=20)
        [kept] = workers - {victim}
        workers = children(proc.pid)
        assert workers == {kept, replacement}
        survivors = [c for c in clients if await c.is_open(2)]
        assert len(survivors) == load[kept]

        # SIGTERM: every session is told, every worker drains, the supervisor exits 0.
        proc.send_signal(signal.SIGTERM)
        for client in survivors:
            error = await client.recv_frame(timeout=10)
            assert (error.command, error.header("message")) == ("ERROR", "server shutting down")
            code, _ = await client.recv_close(timeout=10)
            assert code == 1001
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        assert not any(alive(pid) for pid in workers)
    finally:
        for client in clients:
            await client.close()
        if proc.returncode is None:
            proc.kill()  # its workers get SIGTERM from the kernel (PR_SET_PDEATHSIG)
            await proc.wait()


async def test_workers_do_not_outlive_a_killed_supervisor() -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "--host", "127.0.0.1", "--port", str(port),
        "--workers", "2", "--log-level", "warning",
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await until(lambda: len(children(proc.pid)) == 2, within=20)
        workers = children(proc.pid)
        await until(lambda: listening(workers, port), within=20)
    finally:
        proc.kill()
        await proc.wait()
    await until(lambda: not any(alive(pid) for pid in workers), within=15)


async def test_ctrl_c_to_the_whole_process_group_drains_every_worker() -> None:
    # A terminal's Ctrl+C signals the foreground process group: supervisor and workers
    # alike. Workers have a group of their own, so each sees one SIGINT (forwarded by
    # the supervisor) and drains, instead of taking a second one for "exit now".
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "--host", "127.0.0.1", "--port", str(port),
        "--workers", "2",
        cwd=ROOT,
        env={**os.environ, "GATEWAY_LOG_FORMAT": "json"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        await until(lambda: len(children(proc.pid)) == 2, within=20)
        workers = children(proc.pid)
        await until(lambda: listening(workers, port), within=20)
        # Sessions to drain, so a worker is still draining when a second signal comes.
        clients = [await connect_ws(f"ws://127.0.0.1:{port}/ws") for _ in range(4)]
        for client in clients:
            await client.connect_stomp()
        os.killpg(proc.pid, signal.SIGINT)
        for client in clients:
            error = await client.recv_frame(timeout=10)
            assert (error.command, error.header("message")) == ("ERROR", "server shutting down")
            assert (await client.recv_close(timeout=10))[0] == 1001
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0
        assert b"second signal" not in out
        assert b'"exit_codes": [0, 0]' in out
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
