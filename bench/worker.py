"""Load-generator processes and the little protocol the coordinator drives them with.

``Pool(n)`` spawns ``n`` processes (``spawn`` start method: no inherited event loop)
once per bench run. Each runs jobs one at a time, every job on a fresh uvloop loop.
A job is a *role* (``bench/roles.py``) run with a ``Control``:

    coordinator                          worker (role)
    group = await pool.start([...])  ->  setup (connect, subscribe, precompute)
    await group.collect("ready")     <-  await ctl.sync("ready", info)
    group.send_all("go")             ->  (sync returns) measured work
    await group.collect("done")      <-  await ctl.sync("done", info)
    await group.finish()             ->  cleanup (DISCONNECT, close); result

Every message a role sends carries ``t`` (``time.monotonic()``, the same clock in every
process on Linux) and ``cpu`` (the process's CPU seconds), so the coordinator can time
phases across processes and compute the load generator's own CPU share.

``group.abort()`` (on a timeout or a failed job) cancels the roles; every client a role
opened through ``ctl.open`` is aborted when the job ends, whatever happened.
"""

# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import resource
import time
import traceback
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from typing import Any

from .client import StompClient, open_stomp

Message = tuple[str, dict[str, Any]]


class Aborted(Exception):
    """The coordinator aborted the job."""


class JobFailed(Exception):
    """A worker's role raised, or a phase timed out."""


def raise_nofile() -> None:
    """Lift the soft open-files limit to the hard one (many sockets per process)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ------------------------------------------------------------------ worker side
class Control:
    """A role's handle on the coordinator and on the clients it opens."""

    def __init__(self, conn: Connection, inbox: asyncio.Queue[Message], target: dict[str, Any]):
        self._conn = conn
        self._inbox = inbox
        self.target = target  # {"host", "port", "path"}
        self.clients: list[StompClient] = []

    def send(self, tag: str, info: dict[str, Any] | None = None) -> None:
        stamp = {"t": time.monotonic(), "cpu": time.process_time()}
        self._conn.send((tag, {**stamp, **(info or {})}))

    async def sync(self, tag: str, info: dict[str, Any] | None = None) -> dict[str, Any]:
        """Report ``tag`` and wait for the coordinator's next command."""
        self.send(tag, info)
        command, payload = await self._inbox.get()
        if command == "abort":
            raise Aborted
        return payload

    async def open(self, **kw: Any) -> StompClient:
        t = self.target
        client = await open_stomp(t["host"], t["port"], t["path"], **kw)
        self.clients.append(client)
        return client

    def abort_all(self) -> None:
        for client in self.clients:
            client.abort()


async def _run_job(conn: Connection, role: str, params: dict[str, Any]) -> None:
    from .roles import ROLES

    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    ctl = Control(conn, inbox, params["target"])
    task = asyncio.ensure_future(ROLES[role](ctl, params))

    def on_command() -> None:
        message = conn.recv()
        if message[0] == "abort" and not task.done():
            task.cancel()
        inbox.put_nowait(message)

    loop.add_reader(conn.fileno(), on_command)
    os.set_blocking(conn.fileno(), True)  # uvloop made it non-blocking; recv needs blocking
    try:
        result = await task
        ctl.send("result", result)
    except asyncio.CancelledError:
        ctl.send("aborted")
    except Aborted:
        ctl.send("aborted")
    except BaseException as exc:
        ctl.send("error", {"error": f"{type(exc).__name__}: {exc}", "tb": traceback.format_exc()})
    finally:
        loop.remove_reader(conn.fileno())
        ctl.abort_all()


def _worker_main(conn: Connection) -> None:
    import uvloop

    raise_nofile()
    while True:
        try:
            command, payload = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if command == "exit":
            return
        if command == "job":
            uvloop.run(_run_job(conn, payload["role"], payload["params"]))
        # anything else (a late "abort"/"stop" for a finished job) is ignored


# ------------------------------------------------------------------ coordinator side
class Pool:
    def __init__(self, size: int) -> None:
        ctx = mp.get_context("spawn")
        self.size = size
        self._conns: list[Connection] = []
        self._procs: list[Any] = []
        self._queues: list[asyncio.Queue[Message]] = []
        for _ in range(size):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker_main, args=(child,), daemon=True)
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def attach(self) -> None:
        """Start listening to the workers on the running loop (call once, in it)."""
        loop = asyncio.get_running_loop()
        for conn in self._conns:
            queue: asyncio.Queue[Message] = asyncio.Queue()
            self._queues.append(queue)
            loop.add_reader(conn.fileno(), _reader(conn, queue))
            os.set_blocking(conn.fileno(), True)  # whole messages in recv, and in send

    def start(self, jobs: list[tuple[str, dict[str, Any]]]) -> Group:
        """Run ``jobs`` (role, params), job i on worker i (at most one job per worker)."""
        if len(jobs) > self.size:
            raise ValueError(f"{len(jobs)} jobs for {self.size} workers")
        for queue in self._queues:  # drop leftovers of an aborted job
            while not queue.empty():
                queue.get_nowait()
        for conn, (role, params) in zip(self._conns, jobs, strict=False):
            conn.send(("job", {"role": role, "params": params}))
        return Group(self._conns[: len(jobs)], self._queues[: len(jobs)])

    def detach(self) -> None:
        """Stop listening (call in the loop that ``attach`` ran in)."""
        loop = asyncio.get_running_loop()
        for conn in self._conns:
            loop.remove_reader(conn.fileno())
        self._queues.clear()

    def close(self) -> None:
        """End the worker processes (outside any event loop is fine)."""
        for conn in self._conns:
            try:
                conn.send(("exit", {}))
            except OSError:
                pass
        for proc in self._procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()


def _reader(conn: Connection, queue: asyncio.Queue[Message]) -> Callable[[], None]:
    def read() -> None:
        try:
            queue.put_nowait(conn.recv())
        except EOFError:
            queue.put_nowait(("error", {"error": "worker process died"}))

    return read


class Group:
    """The jobs of one scenario run, one per worker."""

    def __init__(self, conns: list[Connection], queues: list[asyncio.Queue[Message]]) -> None:
        self._conns = conns
        self._queues = queues
        self._ended: set[int] = set()  # jobs that already reported their end
        self.finished = False

    def __len__(self) -> int:
        return len(self._conns)

    async def collect(
        self, tag: str, timeout: float, only: list[int] | None = None
    ) -> list[dict[str, Any]]:
        """One ``tag`` message from each job (or from those in ``only``)."""
        indexes = range(len(self._conns)) if only is None else only

        async def one(i: int) -> dict[str, Any]:
            got, info = await self._queues[i].get()
            if got in ("error", "result", "aborted"):
                self._ended.add(i)
            if got == "error":
                detail = info.get("tb", "")
                raise JobFailed(f"worker {i}: {info['error']}" + (f"\n{detail}" if detail else ""))
            if got != tag:
                raise JobFailed(f"worker {i}: expected {tag!r}, got {got!r}")
            return info

        try:
            async with asyncio.timeout(timeout):
                return list(await asyncio.gather(*(one(i) for i in indexes)))
        except TimeoutError:
            raise JobFailed(f"timeout after {timeout:.0f}s waiting for {tag!r}") from None

    def send(self, i: int, command: str, payload: dict[str, Any] | None = None) -> None:
        self._conns[i].send((command, payload or {}))

    def send_all(self, command: str, payload: dict[str, Any] | None = None) -> None:
        for i in range(len(self._conns)):
            self.send(i, command, payload)

    async def finish(self, timeout: float = 60) -> list[dict[str, Any]]:
        """Let every job clean up ("stop") and return their results."""
        self.send_all("stop")
        results = await self.collect("result", timeout)
        self.finished = True
        return results

    async def abort(self, timeout: float = 30) -> None:
        """Cancel every job and wait until each has closed its clients."""
        if self.finished:
            return
        self.finished = True
        self.send_all("abort")

        async def settle(queue: asyncio.Queue[Message]) -> None:
            while (await queue.get())[0] not in ("aborted", "result", "error"):
                pass

        pending = [q for i, q in enumerate(self._queues) if i not in self._ended]
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(settle(q) for q in pending))
        except TimeoutError:
            pass


async def with_group(group: Group, body: Callable[[Group], Awaitable[Any]]) -> Any:
    """Run ``body(group)``; abort the jobs if it fails, finish them if it did not."""
    try:
        return await body(group)
    except BaseException:
        await group.abort()
        raise
