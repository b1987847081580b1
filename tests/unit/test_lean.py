"""``gateway.broker.lean``: aiormq's channel queues and events, lighter, same behaviour.

Each scenario runs on asyncio's own class and on the lean one, and both must log the
same events in the same order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from gateway.broker.lean import LeanEvent, LeanQueue


async def bounded_fifo(make: Callable[[int], Any]) -> list[Any]:
    log: list[Any] = []
    queue = make(2)
    await queue.put("a")
    await queue.put("b")
    log.append(("full", queue.full(), queue.qsize()))

    async def producer() -> None:
        await queue.put("c")  # waits for room
        log.append("c put")

    task = asyncio.ensure_future(producer())
    await asyncio.sleep(0)
    log.append(("waiting", not task.done()))
    log.append(await queue.get())
    await task
    log.extend([await queue.get(), await queue.get(), queue.empty()])
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()
    queue.put_nowait("d")
    queue.put_nowait("e")
    with pytest.raises(asyncio.QueueFull):
        queue.put_nowait("f")
    for _ in range(5):
        queue.task_done()
    with pytest.raises(ValueError, match="task_done"):
        queue.task_done()
    return log


async def cancelled_getter(make: Callable[[int], Any]) -> list[Any]:
    log: list[Any] = []
    queue = make(0)
    first = asyncio.ensure_future(queue.get())
    second = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    queue.put_nowait("x")
    log.append(await asyncio.wait_for(second, 1))
    log.append(first.cancelled())
    return log


async def cancelled_putter(make: Callable[[int], Any]) -> list[Any]:
    log: list[Any] = []
    queue = make(1)
    queue.put_nowait("kept")
    blocked = asyncio.ensure_future(queue.put("dropped"))
    waiting = asyncio.ensure_future(queue.put("next"))
    await asyncio.sleep(0)
    blocked.cancel()
    await asyncio.sleep(0)
    log.append(queue.get_nowait())
    await asyncio.wait_for(waiting, 1)
    log.extend([queue.get_nowait(), blocked.cancelled(), queue.empty()])
    return log


@pytest.mark.parametrize("scenario", [bounded_fifo, cancelled_getter, cancelled_putter])
async def test_lean_queue_behaves_as_asyncio_queue(scenario: Any) -> None:
    expected = await scenario(lambda n: asyncio.Queue(n))
    assert await scenario(LeanQueue) == expected
    assert expected  # the scenario logged something to compare


async def event_scenario(event: Any) -> list[Any]:
    log: list[Any] = [event.is_set()]
    waiters = [asyncio.ensure_future(event.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    waiters[1].cancel()
    event.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    log.append([r if r is True else type(r).__name__ for r in results])
    log.append(await event.wait())  # set: returns at once
    event.clear()
    log.append(event.is_set())
    late = asyncio.ensure_future(event.wait())
    await asyncio.sleep(0)
    log.append(late.done())
    event.set()
    log.append(await asyncio.wait_for(late, 1))
    return log


async def test_lean_event_behaves_as_asyncio_event() -> None:
    expected = await event_scenario(asyncio.Event())
    assert expected == [False, [True, "CancelledError", True], True, False, False, True]
    assert await event_scenario(LeanEvent()) == expected
