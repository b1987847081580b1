"""Several worker processes on the same ports (``workers``), and the open-files limit.

One Python process uses one core; a machine with N cores runs N workers. Each worker
is a full gateway (``Server``, its own event loop and broker connections) whose
listeners are bound with ``SO_REUSEPORT``, so the kernel spreads new connections over
the workers. A small supervisor process (the one started) forks them and:

* restarts a worker that dies (unless more than ``MAX_RESTARTS`` died within
  ``RESTART_WINDOW`` seconds: something is wrong, everything stops, exit 1);
* forwards SIGTERM/SIGINT to every worker, which drains its sessions as a single
  gateway does (``shutdown_timeout``); a second signal is forwarded too (workers then
  exit at once); workers still alive ``shutdown_timeout + KILL_GRACE`` seconds after
  the first signal are killed. The supervisor exits 0 when every worker did. Should
  the supervisor itself die, the kernel sends its workers SIGTERM (Linux
  ``PR_SET_PDEATHSIG``).

Ports given as 0 (a free port) are chosen once by the supervisor and held reserved
(bound, never listening) so every worker gets the same one. Only worker 0 serves
``metrics_port``; each worker answers ``/metrics`` on the WebSocket port with its own
numbers. Sessions of different workers share nothing.

``raise_open_files_limit`` lifts the soft RLIMIT_NOFILE to the hard limit: every
client costs a descriptor, and 1024 (a common soft default) is soon reached.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import socket
import time
from collections import deque
from collections.abc import Callable

import structlog

from .logging import get_logger
from .settings import Settings

log = get_logger("gateway.workers")

MAX_RESTARTS = 5
RESTART_WINDOW = 30.0  # seconds
KILL_GRACE = 5.0  # seconds past shutdown_timeout before a worker is killed
_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}
_PORT_FIELDS = ("port", "ws_ssl_port", "tcp_port", "tcp_ssl_port")
_PR_SET_PDEATHSIG = 1

WorkerMain = Callable[[Settings], None]


def raise_open_files_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit; the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return hard
    return soft


def _die_with_parent() -> None:
    """Linux: SIGTERM this worker when the supervisor dies (even by SIGKILL), so no
    orphaned worker keeps serving the ports."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() == 1:  # the supervisor died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)


def worker_count(settings: Settings) -> int:
    return settings.workers or os.cpu_count() or 1


def _reserve_ports(settings: Settings) -> tuple[Settings, list[socket.socket]]:
    """Choose a concrete port for every listener given port 0, shared by all workers."""
    updates: dict[str, int] = {}
    held: list[socket.socket] = []
    for field in _PORT_FIELDS:
        if getattr(settings, field) != 0:
            continue
        host = settings.tcp_host or settings.host if field.startswith("tcp") else settings.host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, 0))
        held.append(sock)
        updates[field] = int(sock.getsockname()[1])
    return (settings.model_copy(update=updates) if updates else settings), held


class Supervisor:
    """Forks ``count`` workers running ``main(settings)`` and looks after them."""

    def __init__(self, settings: Settings, count: int, main: WorkerMain) -> None:
        self.settings = settings
        self.count = count
        self.main = main
        self.workers: dict[int, int] = {}  # pid -> worker index
        self.codes: list[int] = []  # exit codes after the shutdown began
        self.stopping = False
        self.deadline = 0.0
        self.failed = False
        self._restarts: deque[float] = deque()
        self._held: list[socket.socket] = []

    def run(self) -> int:
        self.settings, self._held = _reserve_ports(self.settings)
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            for index in range(self.count):
                self._spawn(index)
            log.info("workers started", workers=self.count, pids=sorted(self.workers))
            while self.workers:
                info = signal.sigtimedwait(_SIGNALS, 1.0)
                if info is not None and info.si_signo != signal.SIGCHLD:
                    self._signalled(info.si_signo)
                self._reap()
                if self.stopping and time.monotonic() > self.deadline:
                    self._kill_all(signal.SIGKILL)
        finally:
            for sock in self._held:
                sock.close()
        ok = not self.failed and all(code == 0 for code in self.codes)
        log.info("stopped", workers=self.count, exit_codes=self.codes)
        return 0 if ok else 1

    def _spawn(self, index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                # A process group of its own: Ctrl+C in a terminal signals the whole
                # foreground group, and the supervisor forwards that signal; a worker
                # that got both would take the second for "exit now" and skip the drain.
                os.setpgid(0, 0)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
                _die_with_parent()
                for sock in self._held:
                    sock.close()
                structlog.contextvars.bind_contextvars(worker=index)
                settings = self.settings
                if index:
                    settings = settings.model_copy(update={"metrics_port": None})
                self.main(settings)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                log.exception("worker failed", worker=index)
            finally:
                os._exit(code)
        self.workers[pid] = index

    def _signalled(self, signo: int) -> None:
        if not self.stopping:
            self.stopping = True
            self.deadline = time.monotonic() + self.settings.shutdown_timeout + KILL_GRACE
            log.info("shutting down", workers=len(self.workers), signal=signal.Signals(signo).name)
        self._kill_all(signal.SIGTERM if signo == signal.SIGTERM else signal.SIGINT)

    def _kill_all(self, signo: int) -> None:
        for pid in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signo)

    def _reap(self) -> None:
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.workers.clear()
                return
            if pid == 0:
                return
            index = self.workers.pop(pid, None)
            if index is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if self.stopping:
                self.codes.append(code)
                continue
            log.warning("worker died", worker=index, pid=pid, exit_code=code)
            now = time.monotonic()
            self._restarts.append(now)
            while self._restarts and now - self._restarts[0] > RESTART_WINDOW:
                self._restarts.popleft()
            if len(self._restarts) > MAX_RESTARTS:
                log.error("workers keep dying: stopping", restarts=len(self._restarts))
                self.failed = self.stopping = True
                self.deadline = now + self.settings.shutdown_timeout + KILL_GRACE
                self._kill_all(signal.SIGTERM)
                continue
            self._spawn(index)
            log.info("worker restarted", worker=index)
