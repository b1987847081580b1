"""Local fan-out (issue 8.5): ack:auto subscriptions to one exchange share a broker queue.

Against the real RabbitMQ: the management API shows the bindings and queues the broker
holds, plain AMQP queues bound with the same keys show what the broker itself routes,
and every subscriber's bind runs on its own channel so the broker judges it.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from pamqp.commands import Basic

from gateway.broker.fanout import topic_match, topic_words
from tests.support.amqp import rabbitmqctl
from tests.support.faultproxy import until
from tests.support.wsclient import StompWs, connect_ws

pytestmark = pytest.mark.timeout(60)
FANOUT_PREFIX = "stomp-subscription-fanout-"


async def bindings_of(management: Any, marker: str) -> dict[str, set[str]]:
    """amq.topic's bindings whose key contains ``marker``: queue -> keys."""
    rows = await management.get("/api/exchanges/%2F/amq.topic/bindings/source")
    found: dict[str, set[str]] = {}
    for row in rows:
        if marker in row["routing_key"] and row["destination_type"] == "queue":
            found.setdefault(row["destination"], set()).add(row["routing_key"])
    return found


async def sessions(url: str, n: int, **kw: Any) -> list[StompWs]:
    clients = [await connect_ws(url) for _ in range(n)]
    await asyncio.gather(*(c.connect_stomp(**kw) for c in clients))
    return clients


async def close_all(clients: list[StompWs]) -> None:
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


async def the_group_queue(management: Any, marker: str, keys: set[str]) -> str:
    """Wait until the keys are bound to one shared queue; its name."""
    seen: list[Any] = [{}]

    async def one_queue() -> bool:
        seen[0] = await bindings_of(management, marker)
        return len(seen[0]) == 1 and next(iter(seen[0].values())) == keys

    try:
        await until(one_queue, within=10, step=0.1)
    except TimeoutError:
        raise AssertionError(f"bindings: {seen[0]}") from None
    [queue] = seen[0]
    return str(queue)


async def test_subscribers_share_one_queue_and_each_gets_every_message(
    gateway_factory, management, amqp, unique
):
    gw = await gateway_factory(connections_per_user=1)
    clients = await sessions(gw.url, 3)
    key = f"{unique}.news"
    try:
        for i, c in enumerate(clients):
            await c.subscribe(f"/topic/{key}", id=f"s{i}")
        await clients[2].subscribe(f"/topic/{key}", id="again")  # a second subscription
        queue = await the_group_queue(management, unique, {key})
        assert queue.startswith(FANOUT_PREFIX)
        info = await management.queue(queue)
        assert info is not None
        assert (info["durable"], info["exclusive"], info["auto_delete"]) == (False, True, True)
        [consumer] = await management.wait_consumers(queue, count=1)
        assert consumer["ack_required"] is True  # acked under the delivery window

        for n in range(5):
            await amqp.publish("amq.topic", key, f"m{n}", message_id=f"id{n}")
        got: dict[str, list[tuple[str | None, bytes]]] = {}
        for i, c in enumerate(clients[:2]):
            frames = await c.recv_frames(5)
            got[f"s{i}"] = [(f.header("subscription"), f.body) for f in frames]
            assert all(f.header("destination") == f"/topic/{key}" for f in frames)
            assert all(f.header("message-id", "").startswith(f"T_s{i}@@") for f in frames)
            assert [f.header("amqp-message-id") for f in frames] == [f"id{n}" for n in range(5)]
        twice = await clients[2].recv_frames(10)
        assert got == {f"s{i}": [(f"s{i}", f"m{n}".encode()) for n in range(5)] for i in (0, 1)}
        assert sorted((f.header("subscription"), f.body) for f in twice) == sorted(
            (sub, f"m{n}".encode()) for sub in ("s2", "again") for n in range(5)
        )
        assert len({f.header("message-id") for f in twice}) == 10
        for c in clients:
            await c.expect_no_frame()
    finally:
        await close_all(clients)
    await until(lambda: management_queue_gone(management, queue), within=10)


async def management_queue_gone(management: Any, queue: str) -> bool:
    return await management.queue(queue) is None


# Binding keys and routing keys whose matching has edge cases: empty words, "#" that
# matches nothing, "*" next to "#", a trailing dot.
PATTERNS = ["{u}.a", "{u}.*", "{u}.#", "{u}.#.z", "{u}.*.#", "{u}.a.#.z", "{u}..b", "{u}.*.*"]
KEYS = ["{u}", "{u}.a", "{u}.b", "{u}.a.z", "{u}.a.b.z", "{u}.", "{u}..b", "{u}.z", "{u}.a.x.y"]


async def test_topic_patterns_route_as_the_broker_routes(gateway_factory, amqp, unique):
    patterns = [p.format(u=unique) for p in PATTERNS]
    keys = [k.format(u=unique) for k in KEYS]
    # What the broker itself routes: one plain queue per pattern.
    for i, pattern in enumerate(patterns):
        queue = await amqp.declare_queue(f"{unique}-p{i}", durable=False)
        await queue.bind("amq.topic", pattern)
    gw = await gateway_factory(connections_per_user=1)
    [client] = await sessions(gw.url, 1)
    try:
        for i, pattern in enumerate(patterns):
            await client.subscribe(f"/topic/{pattern}", id=f"p{i}")
        for key in keys:
            await amqp.publish("amq.topic", key, key, message_id=key)
        expected: dict[str, list[str]] = {f"p{i}": [] for i in range(len(patterns))}
        for i in range(len(patterns)):
            # The same channel published: its basic.get comes after every routing.
            while True:
                message = await amqp.raw.basic_get(f"{unique}-p{i}", no_ack=True)
                if not isinstance(message.delivery, Basic.GetOk):
                    break
                expected[f"p{i}"].append(message.body.decode())
        total = sum(len(v) for v in expected.values())
        assert total > len(keys)  # the table is not trivial
        frames = await client.recv_frames(total)
        got: dict[str, list[str]] = {f"p{i}": [] for i in range(len(patterns))}
        for frame in frames:
            got[str(frame.header("subscription"))].append(frame.body.decode())
        assert got == expected
        await client.expect_no_frame()
        # The gateway's matcher agrees with the broker on every pair.
        for i, pattern in enumerate(patterns):
            matched = [k for k in keys if topic_match(topic_words(pattern), topic_words(k))]
            assert matched == expected[f"p{i}"], pattern
    finally:
        await close_all([client])


async def test_unsubscribe_unbinds_its_key_and_the_last_one_removes_the_queue(
    gateway_factory, management, amqp, unique
):
    gw = await gateway_factory(connections_per_user=1)
    a, b = await sessions(gw.url, 2)
    try:
        await a.subscribe(f"/topic/{unique}.a", id="a")
        await b.subscribe(f"/exchange/amq.topic/{unique}.b", id="b")
        queue = await the_group_queue(management, unique, {f"{unique}.a", f"{unique}.b"})
        await a.send_frame("UNSUBSCRIBE", {"id": "a", "receipt": "gone"})
        assert (await a.recv_frame()).header("receipt-id") == "gone"
        assert await the_group_queue(management, unique, {f"{unique}.b"}) == queue
        await amqp.publish("amq.topic", f"{unique}.a", "to nobody")
        await amqp.publish("amq.topic", f"{unique}.b", "to b")
        message = await b.recv_frame()
        # As the plugin: the destination comes from the delivery (amq.topic: /topic/).
        assert (message.header("destination"), message.body) == (f"/topic/{unique}.b", b"to b")
        await a.expect_no_frame()
        await b.disconnect(receipt="bye")
        assert (await b.recv_frame()).header("receipt-id") == "bye"
        await until(lambda: management_queue_gone(management, queue), within=10)
        assert await bindings_of(management, unique) == {}
    finally:
        await close_all([a, b])


async def test_each_subscriber_is_judged_by_the_broker(gateway_factory, management, unique):
    """Topic permissions differ per key: a session of the same user is refused a key
    while the shared queue already exists, with RabbitMQ's own wording."""
    user = f"{unique}-reader"
    async with management.user(user, "pw"):
        await rabbitmqctl(
            "set_topic_permissions", "-p", "/", user, "amq.topic", ".*", f"^{unique}\\.public\\..*"
        )
        gw = await gateway_factory(connections_per_user=1)
        ok, refused = await sessions(gw.url, 2, login=user, passcode="pw")
        try:
            await ok.subscribe(f"/topic/{unique}.public.news", id="ok")
            await refused.send_frame(
                "SUBSCRIBE",
                {"destination": f"/topic/{unique}.secret.news", "id": "no", "receipt": "r"},
            )
            error = await refused.recv_frame()
            assert (error.command, error.header("message")) == ("ERROR", "access_refused")
            assert error.text == (
                f"ACCESS_REFUSED - access to topic '{unique}.secret.news' in exchange "
                f"'amq.topic' in vhost '/' refused for user '{user}'"
            )
            assert (await refused.recv_close())[0] == 1000
            # The other session and its subscription are untouched.
            await ok.send(f"/topic/{unique}.public.news", "still here")
            message = await ok.recv_frame()
            assert (message.command, message.body) == ("MESSAGE", b"still here")
        finally:
            await close_all([ok, refused])


async def test_a_broker_cancel_ends_every_member(gateway_factory, management, unique):
    gw = await gateway_factory(connections_per_user=1)
    clients = await sessions(gw.url, 2)
    try:
        for i, c in enumerate(clients):
            await c.subscribe(f"/topic/{unique}.x", id=f"s{i}")
        queue = await the_group_queue(management, unique, {f"{unique}.x"})
        # An operator deletes the queue (exclusive: the management API may not).
        await rabbitmqctl(
            "eval",
            "rabbit_amqqueue:delete_immediately_by_resource("
            f'[rabbit_misc:r(<<"/">>, queue, <<"{queue}">>)]).',
        )
        for i, c in enumerate(clients):
            error = await c.recv_frame()
            assert (error.command, error.header("message"), error.header("subscription")) == (
                "ERROR",
                "Server cancelled subscription",
                f"s{i}",
            )
        # A new subscription gets a new group.
        fresh = await connect_ws(gw.url)
        clients.append(fresh)
        await fresh.connect_stomp()
        await fresh.subscribe(f"/topic/{unique}.x", id="new")
        assert await the_group_queue(management, unique, {f"{unique}.x"}) != queue
        await fresh.send(f"/topic/{unique}.x", "after")
        assert (await fresh.recv_frame()).body == b"after"
    finally:
        await close_all(clients)


async def test_what_is_not_shared_keeps_a_queue_of_its_own(gateway_factory, management, unique):
    """Client acks, queue options (x- headers, durable) and local_fanout=false subscribe
    the plugin's way: one queue per subscription."""
    gw = await gateway_factory(connections_per_user=1)
    off = await gateway_factory(connections_per_user=1, local_fanout=False)
    clients = await sessions(gw.url, 1) + await sessions(off.url, 2)
    try:
        await clients[0].subscribe(f"/topic/{unique}.k", id="client", extra={"ack": "client"})
        await clients[0].subscribe(f"/topic/{unique}.k", id="ttl", extra={"x-message-ttl": "60000"})
        await clients[1].subscribe(f"/topic/{unique}.k", id="off1")
        await clients[2].subscribe(f"/topic/{unique}.k", id="off2")
        seen: list[Any] = [{}]

        async def four_queues() -> bool:
            seen[0] = await bindings_of(management, unique)
            return len(seen[0]) == 4

        await until(four_queues, within=10, step=0.1)
        assert all(not q.startswith(FANOUT_PREFIX) for q in seen[0]), seen[0]
        assert all(q.startswith("stomp-subscription-") for q in seen[0]), seen[0]
    finally:
        await close_all(clients)


async def test_a_subscriber_that_does_not_read_is_dropped_alone(gateway_factory, amqp, unique):
    """The shared consumer cannot wait for one browser: the one that stops reading is
    cut at max_outbound_buffer, the others get everything."""
    gw = await gateway_factory(
        connections_per_user=1, max_outbound_buffer=256 * 1024, write_high_water=32 * 1024
    )
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", gw.port))
    sock.setblocking(False)
    stuck = await connect_ws(gw.url, sock=sock, max_queue=1, compression=None)
    [reader] = await sessions(gw.url, 1)
    try:
        await stuck.connect_stomp()
        await stuck.subscribe(f"/topic/{unique}.big", id="stuck")
        await reader.subscribe(f"/topic/{unique}.big", id="reader")
        [stuck_session] = [s for s in gw.server.sessions if "T_stuck" in s.subscriptions]
        body = b"x" * 16 * 1024
        count = 200  # 3.2 MiB: far past the 256 KiB cap plus the kernel's buffers
        for n in range(count):
            await amqp.publish("amq.topic", f"{unique}.big", body, message_id=str(n))
        frames = await reader.recv_frames(count, timeout=30)
        assert [f.header("amqp-message-id") for f in frames] == [str(n) for n in range(count)]
        assert all(f.body == body for f in frames)
        await until(lambda: stuck_session not in gw.server.sessions, within=10)
        assert stuck_session.close_reason == "max_outbound_buffer"
    finally:
        stuck.ws.transport.abort()
        await close_all([reader])


async def test_a_group_nobody_joins_closes(gateway_factory, management, unique):
    """The session that asked for a group may end before it joins (a socket closed
    mid-SUBSCRIBE): the group then closes by itself instead of holding a queue."""
    gw = await gateway_factory(connections_per_user=1)
    [client] = await sessions(gw.url, 1)
    try:
        [pool] = gw.server.broker._pools.values()
        [connection] = pool.connections
        registry = connection.fanout
        group = await registry._group(("amq.topic", None))
        assert group is not None and registry.groups == {("amq.topic", None): group}
        assert (await management.queue(group.queue)) is not None
        await until(lambda: not registry.groups, within=5)
        await until(lambda: management_queue_gone(management, group.queue), within=10)
        await until(lambda: connection.load == 1, within=5)  # the client's channel only
    finally:
        await close_all([client])
