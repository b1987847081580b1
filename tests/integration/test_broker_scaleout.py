"""Scale-out: two gateway processes (``python -m gateway``) on one broker, as behind the
HAProxy of docker-compose.cluster.yml. A session on one receives what a session on the
other sent; a client whose gateway is killed (SIGKILL) reconnects to the other one, as
stomp.js does, and its durable subscription's queued messages are delivered there."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from tests.support.faultproxy import until
from tests.support.wsclient import StompWs, StompWsClosed, connect_ws

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]


class GatewayProcess:
    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port
        self.url = f"ws://127.0.0.1:{port}/ws"

    async def ready(self) -> bool:
        try:
            async with httpx.AsyncClient(timeout=2) as http:
                return (await http.get(f"http://127.0.0.1:{self.port}/readyz")).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def gateway_process() -> AsyncIterator[Callable[[], Awaitable[GatewayProcess]]]:
    started: list[GatewayProcess] = []

    async def start() -> GatewayProcess:
        port = free_port()
        env = {**os.environ, "GATEWAY_LOG_LEVEL": "warning"}
        env.pop("GATEWAY_CONFIG", None)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        gateway = GatewayProcess(proc, port)
        started.append(gateway)
        await until(gateway.ready, within=20, step=0.1)
        return gateway

    try:
        yield start
    finally:
        for gateway in started:
            if gateway.proc.returncode is None:
                gateway.proc.terminate()
        for gateway in started:
            try:
                async with asyncio.timeout(15):
                    await gateway.proc.wait()
            except TimeoutError:
                gateway.kill()
                await gateway.proc.wait()


async def connected(url: str) -> StompWs:
    client = await connect_ws(url)
    await client.connect_stomp()
    return client


async def test_two_gateways_share_one_broker_and_a_client_fails_over(gateway_process, unique, amqp):
    one, two = await gateway_process(), await gateway_process()
    listener, talker = await connected(one.url), await connected(two.url)
    topic = f"/topic/{unique}"
    queue = amqp.track_queue(f"{unique}-dur")  # deleted at teardown
    durable = {"durable": "true", "auto-delete": "false", "ack": "client", "x-queue-name": queue}
    clients = [listener, talker]
    try:
        # Across processes: sent on gateway two, received on gateway one.
        await listener.subscribe(topic, id="live")
        await listener.subscribe(f"{topic}.d", id="dur", extra=durable)
        await talker.send(topic, "across", receipt="r1")
        message = await listener.recv_frame()
        assert (message.command, message.header("subscription"), message.body) == (
            "MESSAGE",
            "live",
            b"across",
        )
        await talker.send(f"{topic}.d", "before", receipt="r2")
        held = await listener.recv_frame()
        assert (held.header("subscription"), held.body) == ("dur", b"before")  # not acked

        one.kill()  # SIGKILL: no goodbye, the broker sees the AMQP sockets drop
        with pytest.raises(StompWsClosed):
            await listener.recv_frame(timeout=10)
        assert await one.proc.wait() == -signal.SIGKILL
        # Publish only once the broker has noticed the dead consumer; before that it
        # could still hand the messages to the dead channel (they would come back
        # redelivered, which is correct but not what this test pins down).
        deadline = asyncio.get_running_loop().time() + 10
        while (await amqp.raw.queue_declare(queue, passive=True)).consumer_count:
            assert asyncio.get_running_loop().time() < deadline, "consumer never went away"
            await asyncio.sleep(0.05)
        for i in range(3):
            await talker.send(f"{topic}.d", f"away {i}", receipt=f"a{i}")

        # The client reconnects to the other gateway and subscribes again, as stomp.js
        # does on a reconnect: the durable queue kept what came meanwhile.
        again = await connected(two.url)
        clients.append(again)
        await again.subscribe(f"{topic}.d", id="dur", extra=durable)
        frames = await again.recv_frames(4)
        assert [(f.body, f.header("redelivered")) for f in frames] == [
            (b"before", "true"),
            (b"away 0", "false"),
            (b"away 1", "false"),
            (b"away 2", "false"),
        ]
        await again.send_frame("ACK", {"id": frames[-1].header("ack"), "receipt": "ack"})
        assert (await again.recv_frame()).header("receipt-id") == "ack"
        await again.expect_no_frame()
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()
