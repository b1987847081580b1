"""A fault-injecting TCP relay for tests: the gateway talks AMQP to RabbitMQ through it.

``proxy = await FaultProxy.start(target_port=5672)`` listens on 127.0.0.1 and a free
port (``proxy.port``, ``proxy.url``) and relays every connection to the target. Faults:

* ``cut()``: abort every relayed connection now (both sides get a reset), as a network
  cut or a killed broker would; new connections are still relayed.
* ``refuse()`` / ``accept()``: close the listening socket, so new connections are
  refused (ECONNREFUSED, as a stopped broker answers), and open it again on the
  same port.
* ``stall()`` / ``resume()``: a black hole: bytes are no longer relayed in either
  direction (queued until ``resume``) and the sockets stay open; new connections are
  accepted but not relayed either, as a partitioned network behaves.
* ``cut_after(n)``: cut every connection once ``n`` more bytes went from the client to
  the target (a cut in the middle of a stream of publishes).

``relayed`` is the number of open relays; ``connections`` counts every connection
accepted. ``await proxy.close()`` stops everything. ``until(check)`` polls a
condition that has no event to wait on (a broker-side count) with a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
from collections.abc import Callable
from typing import Any


class _Relay:
    def __init__(
        self,
        proxy: FaultProxy,
        client_reader: asyncio.StreamReader,
        client_writer: asyncio.StreamWriter,
    ) -> None:
        self.proxy = proxy
        self.client_reader = client_reader
        self.client_writer = client_writer
        self.target_writer: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        try:
            await self.proxy._flowing.wait()
            reader, writer = await asyncio.open_connection(
                self.proxy.target_host, self.proxy.target_port
            )
        except OSError:
            self.abort()
            return
        self.target_writer = writer
        self.tasks = [
            asyncio.ensure_future(self._pipe(self.client_reader, writer, upstream=True)),
            asyncio.ensure_future(self._pipe(reader, self.client_writer, upstream=False)),
        ]
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.abort()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await self.proxy._flowing.wait()
                budget = self.proxy._budget
                if upstream and budget is not None:
                    if len(data) >= budget:  # relay up to the budget, then cut
                        self.proxy._budget = None
                        writer.write(data[:budget])
                        await writer.drain()
                        self.proxy.cut()
                        return
                    self.proxy._budget = budget - len(data)
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                if writer.can_write_eof():
                    writer.write_eof()

    def abort(self) -> None:
        for task in self.tasks:
            task.cancel()
        for writer in (self.client_writer, self.target_writer):
            if writer is not None:
                sock = writer.get_extra_info("socket")
                if sock is not None:
                    # SO_LINGER 0: close with a reset, as a cut cable or a dead peer.
                    with contextlib.suppress(OSError):
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                        )
                writer.transport.abort()
        self.proxy._relays.discard(self)


class FaultProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._relays: set[_Relay] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._budget: int | None = None

    @classmethod
    async def start(cls, target_host: str = "127.0.0.1", target_port: int = 5672) -> FaultProxy:
        proxy = cls(target_host, target_port)
        await proxy.accept()
        return proxy

    @property
    def url(self) -> str:
        return f"amqp://127.0.0.1:{self.port}/"

    @property
    def relayed(self) -> int:
        return len(self._relays)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        relay = _Relay(self, reader, writer)
        self._relays.add(relay)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await relay.run()
        finally:
            self._tasks.discard(task)

    # -- faults -----------------------------------------------------------------------------
    async def accept(self) -> None:
        """Listen (again, on the same port once one was chosen)."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def refuse(self) -> None:
        """Stop listening: new connections are refused; open ones go on."""
        server, self._server = self._server, None
        if server is not None:
            server.close()  # no wait_closed(): on 3.12+ it waits for every relay

    def cut(self) -> None:
        """Reset every relayed connection now."""
        for relay in list(self._relays):
            relay.abort()

    def cut_after(self, nbytes: int) -> None:
        """Cut every connection once ``nbytes`` more bytes went client -> target."""
        self._budget = nbytes

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def close(self) -> None:
        self._flowing.set()
        await self.refuse()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def until(check: Callable[[], Any], within: float = 5.0, step: float = 0.05) -> None:
    """Poll ``check()`` (a bool, or an awaitable of one) until true; TimeoutError after
    ``within`` seconds. For states with no event to wait on (broker-side counts)."""
    async with asyncio.timeout(within):
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await asyncio.sleep(step)
