"""The real broker restarts (``rabbitmqctl stop_app`` / ``start_app``) under the gateway.

Marked ``broker_restart``: these tests disturb everything else that uses the local
RabbitMQ, so tests/conftest.py runs them after every other test of the session, and
``-m "not broker_restart"`` leaves them out.

One scenario, to restart the broker once: persistent messages to a durable queue
are received after the restart; every session gets an ERROR and a close when the broker
goes; /readyz is 503 while it is away and a CONNECT gets a prompt ERROR; the gateway
serves again once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx
import pytest

from tests.support.amqp import AMQP_URL, rabbitmqctl
from tests.support.faultproxy import until
from tests.support.wsclient import StompWs, connect_ws

pytestmark = [pytest.mark.broker_restart, pytest.mark.timeout(120)]

SHUTDOWN = (
    "ERROR",
    "connection_forced",
    "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'",
)


async def readyz(port: int) -> int:
    async with httpx.AsyncClient(timeout=5) as http:
        return (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code


async def amqp_answers() -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", 5672)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def start_broker() -> None:
    await rabbitmqctl("start_app", timeout=90)
    await until(amqp_answers, within=60, step=0.2)
    await rabbitmqctl("await_startup", timeout=90)


async def send_all(client: StompWs, destination: str, count: int) -> None:
    """SEND persistent messages m0..m<count-1>, each with a receipt; wait for all."""
    for i in range(count):
        await client.send_frame(
            "SEND",
            {"destination": destination, "persistent": "true", "receipt": f"r{i}"},
            f"m{i}",
        )
    receipts = await client.recv_frames(count, timeout=20)
    assert [r.header("receipt-id") for r in receipts] == [f"r{i}" for i in range(count)]


async def test_persistent_messages_survive_and_sessions_recover(
    gateway_factory: Any, unique: str
) -> None:
    count = 100
    queue = f"{unique}-durable"
    gw = await gateway_factory(connect_timeout=2)
    assert await readyz(gw.port) == 200
    sender, idle = await connect_ws(gw.url), await connect_ws(gw.url)
    await sender.connect_stomp()
    await idle.connect_stomp()
    await idle.subscribe(f"/queue/{unique}-idle", id="i", extra={"ack": "client"})
    await send_all(sender, f"/queue/{queue}", count)
    stopped = False
    try:
        await rabbitmqctl("stop_app", timeout=90)
        stopped = True
        for client in (sender, idle):
            error = await client.recv_frame(timeout=15)
            assert (error.command, error.header("message"), error.text) == SHUTDOWN
            assert await client.recv_close() == (1000, "STOMP died")
        await until(lambda: not gw.server.sessions)
        await until(lambda: _is(readyz(gw.port), 503), within=15)
        late = await connect_ws(gw.url)
        started = time.monotonic()
        error = await late.connect_stomp(expect="ERROR")
        assert (error.header("message"), error.text) == (
            "Bad CONNECT",
            "RabbitMQ is not reachable",
        )
        assert time.monotonic() - started < 0.5
        assert await late.recv_close() == (1000, "STOMP died")  # the client reconnects
        await start_broker()
        stopped = False
        await until(lambda: _is(readyz(gw.port), 200), within=15)
        late = await connect_ws(gw.url)
        await late.connect_stomp()
        await late.subscribe(f"/queue/{queue}", id="d")
        messages = await late.recv_frames(count, timeout=20)
        assert [m.body for m in messages] == [f"m{i}".encode() for i in range(count)]
        assert {m.header("persistent") for m in messages} == {"true"}
        await late.expect_no_frame()
        await late.close()
    finally:
        if stopped:
            await start_broker()
        await _delete_queues(queue, f"{unique}-idle")


async def _is(status: Any, expected: int) -> bool:
    return bool(await status == expected)


async def _delete_queues(*names: str) -> None:
    import aio_pika

    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        for name in names:
            await channel.queue_delete(name)
    finally:
        await connection.close()
