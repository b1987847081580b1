"""Flow control (issue 6.3): a client that does not read stops the broker, not the gateway.

100,000 messages of 1 KiB wait in a queue; a client subscribes with ack:auto and then
reads nothing. Without flow control the gateway would take them all from the broker
and hold them for that socket (some 100 MiB plus Python's overhead). With it, the
broker stops once the socket's buffer is above ``write_high_water`` and the session
holds ``delivery_window`` unacknowledged deliveries:

* the gateway's memory (this process's VmRSS: the gateway runs in-process) grows by
  less than RSS_BOUND (64 MiB);
* the session holds exactly ``delivery_window`` deliveries unacknowledged, and the
  broker still has the rest of the queue;
* another client on the same gateway keeps its round trip (SEND to a topic it is
  subscribed to, MESSAGE back) under 50 ms at the 99th percentile meanwhile;
* when the stuck client goes away, the deliveries it was never sent (those held
  unacknowledged) are back in the queue, redelivered to the next consumer.

And a publisher that runs ahead of the broker is held at ``publish_window`` confirms
outstanding: its session stops reading its socket.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import aiormq
from aiormq.abc import ChannelFrame
from pamqp import commands as spec
from pamqp import frame as pamqp_frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from gateway.session import Session
from tests.support.faultproxy import until
from tests.support.security import rss_kib
from tests.support.wsclient import connect_ws

MESSAGES = 100_000
BODY = b"x" * 1024
RSS_BOUND_KIB = 64 * 1024
RTT_P99_BOUND = 0.050
WINDOW = 1000


async def prefill(amqp: Any, queue: str, count: int) -> None:
    """``count`` messages into ``queue``, written in batches of 1,000 (no confirms)."""
    connection: aiormq.Connection = amqp.raw.connection
    channel = await connection.channel(publisher_confirms=False)
    try:
        one = b"".join(
            pamqp_frame.marshal(f, channel.number)
            for f in (
                spec.Basic.Publish(routing_key=queue),
                ContentHeader(0, len(BODY), spec.Basic.Properties(headers={})),
                ContentBody(BODY),
            )
        )
        for _ in range(count // 1000):
            drained = connection.loop.create_future()
            await connection.write_queue.put(
                ChannelFrame(payload=one * 1000, should_close=False, drain_future=drained)
            )
            await drained
        await until(lambda: _ready_is(amqp, queue, count), within=30)
    finally:
        await channel.close()


async def _ready_is(amqp: Any, queue: str, count: int) -> bool:
    return bool(await amqp.message_count(queue) == count)


def session_of(server: Any, predicate: Any) -> Session:
    [session] = [s for s in server.sessions if predicate(s)]
    return session


async def test_a_client_that_does_not_read_stops_the_broker_not_the_gateway(
    gateway_factory, amqp, unique
) -> None:
    gw = await gateway_factory(delivery_window=WINDOW)
    queue = unique
    await amqp.declare_queue(queue, durable=False)
    await prefill(amqp, queue, MESSAGES)
    rss_before = rss_kib()

    # The stuck client: a tiny receive buffer, nothing read after the RECEIPT, and no
    # compression (1 KiB of "x" would shrink to a few bytes a message).
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", gw.port))
    sock.setblocking(False)
    stuck = await connect_ws(gw.url, sock=sock, max_queue=1, compression=None)
    await stuck.connect_stomp()
    await stuck.subscribe(f"/amq/queue/{queue}", id="slow")
    slow = session_of(gw.server, lambda s: "T_slow" in s.subscriptions)
    pump = slow.channel._pump  # type: ignore[union-attr]
    # The broker stops once WINDOW deliveries wait for an ack the gateway withholds.
    await until(lambda: pump.paused and len(pump.unsettled) == WINDOW, within=20)
    ready = await amqp.message_count(queue)
    delivered = slow.frames_out - 2  # CONNECTED and the RECEIPT aside
    assert ready == MESSAGES - delivered
    assert delivered < MESSAGES // 4

    # A client on the same gateway keeps its latency meanwhile.
    fast = await connect_ws(gw.url)
    await fast.connect_stomp()
    topic = f"/topic/{unique}-rtt"
    await fast.subscribe(topic, id="rtt")
    rtts = []
    for i in range(200):
        started = time.perf_counter()
        await fast.send_frame("SEND", {"destination": topic}, f"ping {i}")
        message = await fast.recv_frame()
        rtts.append(time.perf_counter() - started)
        assert (message.command, message.body) == ("MESSAGE", f"ping {i}".encode())
    rtts.sort()
    assert rtts[int(len(rtts) * 0.99) - 1] < RTT_P99_BOUND
    assert len(pump.unsettled) == WINDOW and slow.frames_out - 2 == delivered

    grown = rss_kib() - rss_before
    print(f"delivered {delivered}, RSS grown {grown} KiB")
    assert grown < RSS_BOUND_KIB, f"gateway RSS grew by {grown} KiB"

    # The stuck client goes: what it was never sent goes back to the queue.
    held = len(pump.unsettled)
    stuck.ws.transport.abort()
    await until(lambda: _ready_is(amqp, queue, MESSAGES - delivered + held), within=20)
    await fast.close()


async def test_a_publisher_ahead_of_the_broker_waits_for_confirms(
    gateway_factory, amqp, unique
) -> None:
    gw = await gateway_factory(publish_window=10)
    queue = unique
    await amqp.declare_queue(queue, durable=False)
    client = await connect_ws(gw.url)
    await client.connect_stomp()
    session = session_of(gw.server, lambda s: s.connected)
    pump = session.channel._pump  # type: ignore[union-attr]
    # Confirms held back: the session stops after 10 SENDs of the 30 it was sent.
    confirm = pump._confirm
    held: list[Any] = []
    pump._confirm = held.append
    frames = b"".join(
        f"SEND\ndestination:/amq/queue/{queue}\n\nm{i}\x00".encode() for i in range(30)
    )
    await client.send_raw(frames)
    await until(lambda: len(session.unconfirmed) == 10, within=5)
    await until(lambda: _ready_is(amqp, queue, 10), within=5)
    assert session.frames_in == 1 + 10  # CONNECT and the SENDs it could take
    # The broker's confirms arrive: the session goes on with the rest.
    pump._confirm = confirm
    for frame in held:
        confirm(frame)
    await until(lambda: _ready_is(amqp, queue, 30), within=5)
    await until(lambda: not session.unconfirmed, within=5)
    await client.close()
