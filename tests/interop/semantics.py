"""Helpers for the ack, transaction and subscription scenarios (test_acks.py,
test_transactions.py, test_subscriptions.py, test_broker_errors.py)."""

# polling broker state with per-call timeouts is the point of these helpers
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
from typing import Any

from tests.support.wsclient import Frame, StompWs


def ack_header(frame: Frame, version: str = "1.2") -> dict[str, str]:
    """The header an ACK/NACK of this MESSAGE carries: 1.2 ``id`` (the MESSAGE's
    ``ack``), 1.0/1.1 ``message-id``."""
    if version == "1.2":
        value = frame.header("ack")
        assert value is not None, frame
        return {"id": value}
    value = frame.header("message-id")
    assert value is not None, frame
    return {"message-id": value}


async def messages(ws: StompWs, count: int, timeout: float = 5) -> list[Frame]:
    frames = await ws.recv_frames(count, timeout=timeout)
    for frame in frames:
        assert frame.command == "MESSAGE", frame
    return frames


async def close_session(ws: StompWs) -> None:
    """DISCONNECT and wait for the close (unacked deliveries go back to their queues)."""
    await ws.send_frame("DISCONNECT", {})
    code, _ = await ws.recv_close()
    assert code == 1000


async def ready_after_consumers_left(amqp: Any, queue: str, timeout: float = 5) -> int:
    """Messages ready in ``queue`` once it has no consumer left.

    The broker drops a closed channel's consumers and requeues its unacked
    deliveries in one step, so once the consumer count is 0 the ready count tells
    which deliveries were settled (acked, or nacked without requeue) and which came
    back.
    """
    async with asyncio.timeout(timeout):
        while True:
            ok = await amqp.raw.queue_declare(queue, passive=True)
            if ok.consumer_count == 0:
                return int(ok.message_count)
            await asyncio.sleep(0.05)


async def publish(ws: StompWs, destination: str, *bodies: str) -> None:
    """SEND each body, the last with a receipt (publisher confirms are in order)."""
    for i, body in enumerate(bodies):
        receipt = "p-last" if i == len(bodies) - 1 else None
        await ws.send(destination, body, receipt=receipt)
