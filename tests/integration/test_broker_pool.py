"""Shared AMQP connections (amqp_connection_mode = "shared"): the sessions of one user
share a pool of connections, credentials are still proven for every CONNECT, a channel
error ends one session only, and exclusive queues go with the session that declared
them. Against the real RabbitMQ; the management API shows what the broker sees."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.support.amqp import rabbitmqctl
from tests.support.faultproxy import until
from tests.support.wsclient import StompWs, StompWsClosed, connect_ws

pytestmark = pytest.mark.timeout(60)


async def broker_connections(management: Any, user: str) -> list[str]:
    """Client-provided names of the broker's connections logged in as ``user``."""
    rows = await management.get("/api/connections?columns=user,client_properties")
    return sorted(
        str(row.get("client_properties", {}).get("connection_name", ""))
        for row in rows
        if row["user"] == user
    )


async def wait_broker_connections(management: Any, user: str, count: int) -> list[str]:
    """Poll until the broker lists exactly ``count`` connections of ``user``."""
    names: list[str] = []

    async def listed() -> bool:
        names[:] = await broker_connections(management, user)
        return len(names) == count

    try:
        await until(listed, within=10, step=0.2)
    except TimeoutError:
        raise AssertionError(f"expected {count} connections of {user}: {names}") from None
    return names


def gone(management: Any, *queues: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return all([await management.queue(name) is None for name in queues])

    return check


async def connect_many(url: str, n: int, **kw: Any) -> list[StompWs]:
    clients = [await connect_ws(url) for _ in range(n)]
    await asyncio.gather(*(c.connect_stomp(**kw) for c in clients))
    return clients


async def close_all(clients: list[StompWs]) -> None:
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


async def test_sessions_of_one_user_share_the_pool(gateway_factory, management, unique):
    user = f"{unique}-pool"
    async with management.user(user, "pw"):
        gw = await gateway_factory(connections_per_user=2)
        clients = await connect_many(gw.url, 10, login=user, passcode="pw")
        try:
            for i, c in enumerate(clients):
                await c.subscribe(f"/topic/{unique}", id=f"s{i}")
            await clients[0].send(f"/topic/{unique}", "to all ten")
            for c in clients:
                message = await c.recv_frame()
                assert (message.command, message.body) == ("MESSAGE", b"to all ten")
            assert gw.server.broker.pool_connections(user) == 2
            assert await wait_broker_connections(management, user, 2) == [
                f"stomp-gateway pool {user}@/ #1",
                f"stomp-gateway pool {user}@/ #2",
            ]
        finally:
            await close_all(clients)


async def test_concurrent_connects_share_one_proof(gateway_factory, management, unique):
    user = f"{unique}-burst"
    async with management.user(user, "pw"):
        gw = await gateway_factory(connections_per_user=1)
        clients = await connect_many(gw.url, 20, login=user, passcode="pw")
        try:
            # One AMQP login proved all twenty CONNECTs, and is the pool's connection.
            assert gw.server.broker.connector.opened == 1
            assert await wait_broker_connections(management, user, 1) == [
                f"stomp-gateway pool {user}@/ #1"
            ]
        finally:
            await close_all(clients)


async def test_wrong_passcode_refused_while_a_pool_connection_exists(
    gateway_factory, management, unique
):
    user = f"{unique}-auth"
    async with management.user(user, "right"):
        gw = await gateway_factory(connections_per_user=1, auth_cache_ttl=60)
        broker = gw.server.broker
        ok = await connect_ws(gw.url)
        await ok.connect_stomp(login=user, passcode="right")
        assert broker.pool_connections(user) == 1
        attempts = broker.connector.attempts
        try:
            for attempt in range(2):
                bad = await connect_ws(gw.url)
                error = await bad.connect_stomp(login=user, passcode="wrong", expect="ERROR")
                assert (error.header("message"), error.text) == (
                    "Bad CONNECT",
                    f"Access refused for user '{user}'\n",
                )
                assert await bad.is_open()  # may retry, as with the plugin
                await bad.close()
                # The first wrong passcode cost one AMQP login; the repeat was refused
                # from the remembered refusal.
                assert broker.connector.attempts == attempts + 1, attempt
            # Empty login or passcode are refused, not turned into "guest" (aiormq would).
            for login, passcode in ((user, ""), ("", "right"), ("guest", "")):
                bad = await connect_ws(gw.url)
                error = await bad.connect_stomp(login=login, passcode=passcode, expect="ERROR")
                assert (error.header("message"), error.text) == (
                    "Bad CONNECT",
                    f"Access refused for user '{login}'\n",
                )
                await bad.close()
            assert broker.pool_connections(user) == 1
            await ok.send(f"/queue/{unique}", "still here", receipt="r1")
        finally:
            await ok.close()
            await management.request("DELETE", f"/api/queues/%2F/{unique}")


async def test_changed_password_honoured_after_the_ttl(gateway_factory, management, unique):
    ttl = 4.0
    user = f"{unique}-pw"
    async with management.user(user, "old"):
        gw = await gateway_factory(connections_per_user=1, auth_cache_ttl=ttl)
        first = await connect_ws(gw.url)
        await first.connect_stomp(login=user, passcode="old")
        proven_at = time.monotonic()
        await rabbitmqctl("change_password", user, "new")
        clients = [first]
        try:
            if time.monotonic() - proven_at < ttl - 1:
                # Within the TTL the proof of "old" still stands (documented).
                cached = await connect_ws(gw.url)
                clients.append(cached)
                await cached.connect_stomp(login=user, passcode="old")
            await asyncio.sleep(max(0.0, proven_at + ttl - time.monotonic()))
            stale = await connect_ws(gw.url)
            clients.append(stale)
            error = await stale.connect_stomp(login=user, passcode="old", expect="ERROR")
            assert (error.header("message"), error.text) == (
                "Bad CONNECT",
                f"Access refused for user '{user}'\n",
            )
            fresh = await connect_ws(gw.url)
            clients.append(fresh)
            await fresh.connect_stomp(login=user, passcode="new")
            # Sessions already connected are not cut off by a password change.
            await first.subscribe(f"/topic/{unique}", id="s")
            await fresh.send(f"/topic/{unique}", "after the change", receipt="r")
            message = await first.recv_frame()
            assert (message.command, message.body) == ("MESSAGE", b"after the change")
        finally:
            await close_all(clients)


async def test_channel_error_ends_one_session_only(gateway_factory, amqp, unique):
    gw = await gateway_factory(connections_per_user=1)
    queue = amqp.track_queue(f"{unique}-q")
    a, b, c = await connect_many(gw.url, 3)
    try:
        await c.subscribe(f"/queue/{queue}", id="c")
        await a.send_frame(
            "SUBSCRIBE", {"destination": f"/amq/queue/{unique}-missing", "id": "x", "receipt": "r"}
        )
        error = await a.recv_frame()
        assert (error.command, error.header("message"), error.text) == (
            "ERROR",
            "not_found",
            f"NOT_FOUND - no queue '{unique}-missing' in vhost '/'",
        )
        assert await a.recv_close() == (1000, "STOMP died")
        await b.send(f"/queue/{queue}", "b lives", receipt="rb")
        message = await c.recv_frame()
        assert (message.command, message.body) == ("MESSAGE", b"b lives")
        # Same single connection all along: the channel error did not close it.
        assert gw.server.broker.pool_connections("guest") == 1
        assert gw.server.broker.connector.opened == 1
    finally:
        await close_all([a, b, c])


async def test_exclusive_queues_go_when_the_session_ends(gateway_factory, management, unique):
    gw = await gateway_factory(connections_per_user=1)
    keeper, leaver = await connect_many(gw.url, 2)
    try:
        await keeper.subscribe(f"/queue/{unique}-req", id="req")
        # An exclusive, not auto-delete, subscription queue; an exclusive queue declared
        # by a SEND (no consumer at all); a /temp-queue; a non-durable /topic queue.
        await leaver.subscribe(
            f"/queue/{unique}-x", id="x", extra={"durable": "false", "auto-delete": "false"}
        )
        await leaver.send(f"/queue/{unique}-y", "kept", extra={"exclusive": "true"}, receipt="ry")
        await leaver.subscribe(f"/topic/{unique}", id="t")
        await leaver.send(
            f"/queue/{unique}-req", "ping", extra={"reply-to": "/temp-queue/r"}, receipt="rr"
        )
        request = await keeper.recv_frame()
        reply_to = request.header("reply-to")
        assert reply_to is not None and reply_to.startswith("/reply-queue/amq.gen-"), request
        temp = reply_to.removeprefix("/reply-queue/")
        exclusive = [f"{unique}-x", f"{unique}-y", temp]
        for name in exclusive:
            info = await management.queue(name)
            assert info is not None and info["exclusive"] is True, (name, info)
        await leaver.disconnect(receipt="bye")
        assert (await leaver.recv_frame()).header("receipt-id") == "bye"
        assert await leaver.recv_close() == (1000, "STOMP died")
        await until(gone(management, *exclusive))
        # The connection lives on for the keeper, whose queue is untouched.
        assert gw.server.broker.pool_connections("guest") == 1
        await keeper.send(f"/queue/{unique}-req", "still")
        assert (await keeper.recv_frame()).body == b"still"
    finally:
        await close_all([keeper, leaver])
        await management.request("DELETE", f"/api/queues/%2F/{unique}-req")


async def test_an_exclusive_queue_two_sessions_declared_lives_until_both_end(
    gateway_factory, management, unique
):
    gw = await gateway_factory(connections_per_user=1)
    a, b = await connect_many(gw.url, 2)
    queue = f"{unique}-shared"
    headers = {"exclusive": "true", "auto-delete": "false"}
    try:
        # Both on the one pool connection, which owns the queue: both may consume it
        # (RabbitMQ's exclusivity is per connection; documented).
        await a.subscribe(f"/queue/{queue}", id="a", extra=headers)
        await b.subscribe(f"/queue/{queue}", id="b", extra=headers)
        await a.close()
        await until(lambda: len(gw.server.sessions) == 1)
        assert (await management.queue(queue)) is not None
        await b.send(f"/queue/{queue}", "for b")
        assert (await b.recv_frame()).body == b"for b"
        await b.close()
        await until(gone(management, queue))
    finally:
        await close_all([a, b])


async def test_channel_max_spreads_sessions_over_more_connections(gateway_factory):
    gw = await gateway_factory(connections_per_user=1, channel_max=2)
    # One CONNECT at a time: how concurrent CONNECTs share openings is another test.
    clients = [await connect_ws(gw.url) for _ in range(5)]
    for client in clients:
        await client.connect_stomp()
    try:
        assert gw.server.broker.pool_connections("guest") == 3  # 2 + 2 + 1
        await clients[4].subscribe("/topic/cm", id="s")
        await clients[0].send("/topic/cm", "over", receipt="r")
        assert (await clients[4].recv_frame()).body == b"over"
    finally:
        await close_all(clients)


async def test_idle_pool_connection_is_closed(gateway_factory):
    gw = await gateway_factory(pool_idle_timeout=0.3)
    client = await connect_ws(gw.url)
    await client.connect_stomp()
    assert gw.server.broker.connection_count == 1
    await client.close()
    await until(lambda: gw.server.broker.connection_count == 0)


async def test_per_session_mode_opens_a_connection_per_session(gateway_factory, management, unique):
    user = f"{unique}-own"
    async with management.user(user, "pw"):
        gw = await gateway_factory(amqp_connection_mode="per_session")
        clients = await connect_many(gw.url, 3, login=user, passcode="pw")
        try:
            names = await wait_broker_connections(management, user, 3)
            assert all(name.startswith("stomp-gateway 127.0.0.1:") for name in names), names
        finally:
            await close_all(clients)
        await until(lambda: gw.server.broker.connection_count == 0)


async def test_closed_socket_mid_connect_leaves_nothing(gateway_factory):
    gw = await gateway_factory()
    client = await connect_ws(gw.url)
    await client.send_frame(
        "CONNECT", {"accept-version": "1.2", "login": "guest", "passcode": "guest"}
    )
    await client.close()
    with pytest.raises(StompWsClosed):
        await client.recv_frame(timeout=1)
    await until(lambda: not gw.server.sessions)
