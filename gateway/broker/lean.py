"""Lighter aiormq objects: a session's channel holds queues and futures it barely uses.

An aiormq channel (one per session) made two asyncio.Queues and an asyncio.Event: seven
deques of ~760 bytes each (a deque allocates a 64-slot block when made), about 7 KiB of
a session's memory for queues that hold a handful of frames at most. ``LeanQueue`` and
``LeanEvent`` are the same algorithms (asyncio 3.11's, line for line where it matters)
with lists made on first use; ``LeanFutureStore`` drops a closure per future.
``gateway.broker.hotpath.install`` puts them in aiormq's place.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import aiormq.base
import aiormq.channel
from aiormq.abc import TaskWrapper


def _wake_next(waiters: list[asyncio.Future[None]] | None) -> None:
    while waiters:
        waiter = waiters.pop(0)
        if not waiter.done():
            waiter.set_result(None)
            break


class LeanQueue:
    """The part of ``asyncio.Queue`` aiormq's channel uses: bounded ``put``/``get``
    (FIFO, waiters woken in order, cancellation as asyncio's), ``task_done``."""

    __slots__ = ("_getters", "_items", "_putters", "_unfinished", "maxsize")

    def __init__(self, maxsize: int = 0) -> None:
        self.maxsize = maxsize
        self._items: list[Any] = []
        self._getters: list[asyncio.Future[None]] | None = None
        self._putters: list[asyncio.Future[None]] | None = None
        self._unfinished = 0

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return 0 < self.maxsize <= len(self._items)

    async def put(self, item: Any) -> None:
        while self.full():
            putter = asyncio.get_running_loop().create_future()
            if self._putters is None:
                self._putters = []
            self._putters.append(putter)
            try:
                await putter
            except BaseException:
                putter.cancel()
                if putter in self._putters:
                    self._putters.remove(putter)
                if not self.full() and not putter.cancelled():
                    _wake_next(self._putters)
                raise
        self.put_nowait(item)

    def put_nowait(self, item: Any) -> None:
        if self.full():
            raise asyncio.QueueFull
        self._items.append(item)
        self._unfinished += 1
        _wake_next(self._getters)

    async def get(self) -> Any:
        while not self._items:
            getter = asyncio.get_running_loop().create_future()
            if self._getters is None:
                self._getters = []
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()
                if getter in self._getters:
                    self._getters.remove(getter)
                if self._items and not getter.cancelled():
                    _wake_next(self._getters)
                raise
        return self.get_nowait()

    def get_nowait(self) -> Any:
        if not self._items:
            raise asyncio.QueueEmpty
        item = self._items.pop(0)
        _wake_next(self._putters)
        return item

    def task_done(self) -> None:
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1


class LeanEvent:
    """``asyncio.Event`` with its waiter list made on first ``wait``."""

    __slots__ = ("_value", "_waiters")

    def __init__(self) -> None:
        self._value = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        if not self._value:
            self._value = True
            for fut in self._waiters or ():
                if not fut.done():
                    fut.set_result(None)

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> bool:
        if self._value:
            return True
        fut = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(fut)
        try:
            await fut
            return True
        finally:
            self._waiters.remove(fut)


class LeanChannel(aiormq.channel.Channel):
    """aiormq's channel with ``LeanQueue``s and a ``LeanEvent`` (same behaviour).

    They replace the originals at once: the channel's reader task has not run yet,
    and nothing else holds them.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frames = LeanQueue(self.frames.maxsize)  # type: ignore[assignment]
        self.rpc_frames = LeanQueue(self.rpc_frames.maxsize)  # type: ignore[assignment]
        self._Channel__close_event = LeanEvent()


# _Forget reads no context variable: one empty Context for all, not a copy each.
_NO_CONTEXT = contextvars.Context()


class _Forget:
    """Takes a done future out of a FutureStore's set (aiormq's ``remover`` closure:
    a function and two cells; this is one small object)."""

    __slots__ = ("future", "futures")

    def __init__(self, futures: set[Any], future: Any) -> None:
        self.futures = futures
        self.future = future

    def __call__(self, *_: Any) -> None:
        self.futures.discard(self.future)


class LeanFutureStore(aiormq.base.FutureStore):
    """aiormq's FutureStore; ``add`` is aiormq's with ``_Forget`` for the closure.

    Every channel adds its closing future and its reader task to its store and to its
    connection's: four closures a session.
    """

    __slots__ = ()

    def add(self, future: asyncio.Future[Any] | TaskWrapper) -> None:
        if self.reject_reason is not False:
            if isinstance(future, TaskWrapper):
                future.throw(self.reject_reason or Exception)
            elif isinstance(future, asyncio.Future):
                future.set_exception(self.reject_reason or Exception)
        self.futures.add(future)
        future.add_done_callback(_Forget(self.futures, future), context=_NO_CONTEXT)
        if self.parent:
            self.parent.add(future)
