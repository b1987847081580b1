"""Broker faults without restarting the shared RabbitMQ: the gateway talks AMQP through
tests/support/faultproxy.py, which cuts, refuses and black-holes connections.

What must hold: every session behind a lost AMQP connection gets an ERROR and a clean
close; a CONNECT while the broker is away gets a prompt ERROR; /readyz follows the
broker; nothing is left behind (sessions, AMQP sockets); a SEND whose RECEIPT went out
is in the queue; unacknowledged client-ack deliveries go back to their queue.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pamqp.commands import Basic
from websockets.exceptions import ConnectionClosed

from tests.support.faultproxy import FaultProxy, until
from tests.support.wsclient import StompWs, StompWsClosed, connect_ws

pytestmark = pytest.mark.timeout(60)

LOST = ("ERROR", "connection_forced", "CONNECTION_FORCED - broker connection lost")


@pytest.fixture
async def proxy() -> AsyncIterator[FaultProxy]:
    proxy = await FaultProxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


async def readyz(gw: Any, path: str = "/readyz") -> int:
    async with httpx.AsyncClient(timeout=5) as http:
        reply = await http.get(f"http://127.0.0.1:{gw.port}{path}")
    return reply.status_code


async def expect_lost(client: StompWs) -> None:
    """The ERROR a session gets when its AMQP connection is lost, then the close."""
    error = await client.recv_frame(timeout=10)
    assert (error.command, error.header("message"), error.text) == LOST
    assert await client.recv_close() == (1000, "STOMP died")


@pytest.mark.parametrize("mode", ["shared", "per_session"])
async def test_cut_ends_every_session_and_refuses_promptly_until_back(gateway_factory, proxy, mode):
    tasks_before = len(asyncio.all_tasks())
    gw = await gateway_factory(amqp_url=proxy.url, amqp_connection_mode=mode, connect_timeout=2)
    assert await readyz(gw) == 200
    clients = [await connect_ws(gw.url) for _ in range(3)]
    for client in clients:
        await client.connect_stomp()
    await clients[0].subscribe("/topic/faults", id="s")
    # shared: the pool's two connections (connections_per_user); per_session: three.
    assert proxy.relayed == (2 if mode == "shared" else 3)

    await proxy.refuse()
    proxy.cut()
    for client in clients:
        await expect_lost(client)
    await until(lambda: not gw.server.sessions)
    await until(_status(gw, 503))
    assert await readyz(gw, "/healthz") == 200  # the process itself is fine

    # The broker is known to be down: a CONNECT is refused at once, no timeout waited.
    late = await connect_ws(gw.url)
    started = time.monotonic()
    error = await late.connect_stomp(expect="ERROR")
    assert (error.header("message"), error.text) == ("Bad CONNECT", "RabbitMQ is not reachable")
    assert time.monotonic() - started < 0.5
    # Then the close, so a client reconnects (stomp.js: after its reconnectDelay).
    assert await late.recv_close() == (1000, "STOMP died")

    await proxy.accept()
    await until(_status(gw, 200), within=10)
    late = await connect_ws(gw.url)
    connected = await late.connect_stomp()
    assert connected.command == "CONNECTED"
    await late.send("/topic/faults", "back", receipt="r")
    await late.close()
    await until(lambda: not gw.server.sessions)
    await gw.server.stop()
    assert gw.server.broker.connection_count == 0
    # No AMQP socket and no task outlives the gateway.
    await until(lambda: proxy.relayed == 0)
    await until(lambda: len(asyncio.all_tasks()) <= tasks_before)


def _status(gw: Any, status: int) -> Any:
    async def check() -> bool:
        return await readyz(gw) == status

    return check


async def test_broker_urls_are_tried_in_turn(gateway_factory, proxy):
    """amqp_url lists two "nodes" (two proxies to the one broker): when the one in use
    goes away, sessions end, and the reconnect lands on the other."""
    other = await FaultProxy.start()
    try:
        await proxy.refuse()  # the first node is down from the start
        gw = await gateway_factory(amqp_url=f"{proxy.url},{other.url}", connect_timeout=1)
        assert await readyz(gw) == 200  # one node answers
        client = await connect_ws(gw.url)
        await client.connect_stomp()
        assert (proxy.connections, other.relayed) == (0, 1)
        await proxy.accept()
        await other.refuse()
        other.cut()
        await expect_lost(client)
        client = await connect_ws(gw.url)
        await client.connect_stomp()  # probed, or tried in turn: the first node now
        assert (proxy.relayed, other.relayed) == (1, 0)
        await client.close()
    finally:
        await other.close()


async def test_black_hole_connect_times_out_and_readiness_follows(gateway_factory, proxy):
    gw = await gateway_factory(amqp_url=proxy.url, connect_timeout=1)
    assert await readyz(gw) == 200
    proxy.stall()
    client = await connect_ws(gw.url)
    started = time.monotonic()
    error = await client.connect_stomp(expect="ERROR", timeout=10)
    elapsed = time.monotonic() - started
    assert (error.header("message"), error.text) == ("Bad CONNECT", "RabbitMQ is not reachable")
    assert 0.9 < elapsed < 3, elapsed
    assert await client.recv_close() == (1000, "STOMP died")
    assert await readyz(gw) == 503
    proxy.resume()
    await until(_status(gw, 200), within=10)
    client = await connect_ws(gw.url)
    await client.connect_stomp()
    await client.close()


async def test_black_hole_under_live_sessions_is_noticed_by_heart_beats(gateway_factory, proxy):
    """AMQP heart-beat 1 s (?heartbeat=1): a silent connection is dead after 3 x (1 + 1) s."""
    gw = await gateway_factory(amqp_url=proxy.url + "?heartbeat=1", connect_timeout=1)
    client = await connect_ws(gw.url)
    await client.connect_stomp()
    await client.subscribe("/topic/stalled", id="s")
    proxy.stall()
    started = time.monotonic()
    await expect_lost(client)
    assert 5 < time.monotonic() - started < 10
    await until(_status(gw, 503))  # the probe sent on the loss times out too
    proxy.resume()
    await until(_status(gw, 200), within=10)
    again = await connect_ws(gw.url)
    await again.connect_stomp()
    await again.close()


async def test_receipted_sends_are_in_the_queue_after_a_cut(gateway_factory, proxy, amqp, unique):
    """1,000 SENDs with receipts; the AMQP side is cut in the middle of the publishes
    (after 40 kB of the about 90 kB they take on the wire)."""
    total = 1000
    queue = amqp.track_queue(f"{unique}-count")
    await amqp.raw.queue_declare(queue, durable=True)
    gw = await gateway_factory(amqp_url=proxy.url)
    client = await connect_ws(gw.url)
    await client.connect_stomp()
    proxy.cut_after(40_000)
    receipted: list[int] = []
    errors: list[Any] = []
    sent = 0

    progress = asyncio.Event()  # set on every RECEIPT and at the end

    async def produce() -> None:
        nonlocal sent
        # At most 100 SENDs awaiting their RECEIPT, as a client with a send window.
        try:
            for i in range(total):
                while i - len(receipted) >= 100 and not errors:
                    progress.clear()
                    await progress.wait()
                if errors:
                    return
                await client.send_frame(
                    "SEND",
                    {"destination": f"/amq/queue/{queue}", "receipt": str(i), "persistent": "true"},
                    f"m{i}",
                )
                sent += 1
        except ConnectionClosed:
            pass

    async def consume() -> None:
        while True:
            try:
                frame = await client.recv_frame(timeout=20)
            except StompWsClosed:
                progress.set()
                return
            if frame.command == "RECEIPT":
                receipted.append(int(frame.header("receipt-id") or -1))
            else:
                errors.append(frame)
            progress.set()

    await asyncio.gather(produce(), consume())
    assert [(f.command, f.header("message"), f.text) for f in errors] == [LOST]
    assert client.close_code == 1000

    bodies: Counter[bytes] = Counter()
    while True:
        message = await amqp.raw.basic_get(queue, no_ack=True)
        if not isinstance(message.delivery, Basic.GetOk):
            break
        bodies[message.body] += 1
    in_queue = {int(body[1:]) for body in bodies}
    lost = sorted(set(receipted) - in_queue)
    print(
        f"\n{sent} SENDs written, {len(receipted)} RECEIPTs, {sum(bodies.values())} messages "
        f"in the queue ({len(in_queue - set(receipted))} unreceipted), lost {len(lost)}"
    )
    assert 0 < len(receipted) < total
    assert 0 < sum(bodies.values()) < total
    assert receipted == sorted(receipted)  # RECEIPTs in SEND order
    assert lost == []
    assert max(bodies.values()) == 1  # no duplicates either


@pytest.mark.parametrize("how", ["client leaves", "broker connection cut"])
async def test_unacked_deliveries_go_back_to_the_queue(gateway_factory, proxy, amqp, unique, how):
    queue = amqp.track_queue(f"{unique}-unacked")
    await amqp.raw.queue_declare(queue, durable=True)
    for i in range(5):
        await amqp.publish("", queue, f"m{i}", message_id=str(i))
    gw = await gateway_factory(amqp_url=proxy.url)
    client = await connect_ws(gw.url)
    await client.connect_stomp()
    await client.subscribe(f"/amq/queue/{queue}", id="s", extra={"ack": "client-individual"})
    messages = await client.recv_frames(5)
    assert [m.body for m in messages] == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    for m in (messages[1], messages[3]):
        await client.send_frame("ACK", {"id": m.header("ack")})
    # A publish confirm on the same channel: the broker has processed the ACKs before.
    await client.send(f"/amq/queue/{queue}-none", "x", receipt="sync")
    if how == "client leaves":
        await client.close()
    else:
        proxy.cut()
        await expect_lost(client)
    await until(lambda: not gw.server.sessions)
    got = []
    for _ in range(3):
        message = await amqp.get(queue)
        got.append((message.body, message.delivery.redelivered))
    assert sorted(got) == [(b"m0", True), (b"m2", True), (b"m4", True)]
    await amqp.expect_empty(queue)


async def test_connect_storm_is_queued_not_refused(gateway_factory):
    """per_session: 20 CONNECTs at once against 10 connection opens per second."""
    gw = await gateway_factory(
        amqp_connection_mode="per_session", connection_open_rate=10, connect_queue_timeout=5
    )
    clients = [await connect_ws(gw.url) for _ in range(20)]
    started = time.monotonic()
    replies = await asyncio.gather(*(c.connect_stomp(timeout=10) for c in clients))
    elapsed = time.monotonic() - started
    try:
        assert [r.command for r in replies] == ["CONNECTED"] * 20
        assert gw.server.broker.connector.opened == 20
        assert elapsed >= 0.9, elapsed  # a burst of 10, then one every 0.1 s
    finally:
        await asyncio.gather(*(c.close() for c in clients))
