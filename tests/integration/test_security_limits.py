"""Limits: connections (global, per address), subscriptions, transactions, outbound
buffer. Each breach is answered (ERROR where the client can still read, then a close)
and counted in stomp_gateway_limit_breaches_total{limit=...}."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from websockets.exceptions import ConnectionClosed

from gateway.metrics import METRICS
from tests.support.security import wait_until
from tests.support.tcpclient import connect_tcp
from tests.support.wsclient import connect_ws


def breaches(limit: str) -> float:
    return METRICS.limit_breaches.get(limit)


async def test_max_connections_over_both_transports(gateway_factory):
    gw = await gateway_factory(max_connections=2, tcp_port=0)
    before = breaches("max_connections")
    first = await connect_ws(gw.url)
    second = await connect_tcp("127.0.0.1", gw.server.tcp_port)
    try:
        await first.connect_stomp()
        await second.connect_stomp()
        third = await connect_ws(gw.url)
        error = await third.recv_frame()
        assert (error.command, error.header("message"), error.text) == (
            "ERROR",
            "Bad CONNECT",
            "Connection refused: node connection limit reached",
        )
        assert await third.recv_close() == (1013, "connection limit")
        fourth = await connect_tcp("127.0.0.1", gw.server.tcp_port)
        error = await fourth.recv_frame()
        assert error.text == "Connection refused: node connection limit reached"
        assert await fourth.recv_close() == (None, "")
        assert breaches("max_connections") == before + 2
        # A slot frees up when a client leaves.
        await first.close()
        await wait_until(lambda: gw.server.limiter.total == 1)
        again = await connect_ws(gw.url)
        try:
            await again.connect_stomp()
        finally:
            await again.close()
    finally:
        await first.close()
        await second.close()


async def test_max_connections_per_ip_uses_the_forwarded_address(gateway_factory):
    # Behind a trusted proxy (here: loopback), X-Forwarded-For names the client.
    gw = await gateway_factory(max_connections_per_ip=1, trusted_proxies=["127.0.0.0/8"])
    before = breaches("max_connections_per_ip")

    async def client(address: str):
        return await connect_ws(gw.url, additional_headers={"X-Forwarded-For": address})

    a1, b1 = await client("203.0.113.7"), await client("198.51.100.1, 203.0.113.9")
    try:
        await a1.connect_stomp(login="someone", passcode="x", expect="ERROR")
        await b1.connect_stomp(login="someone", passcode="x", expect="ERROR")
        a2 = await client("203.0.113.7")
        error = await a2.recv_frame()
        assert error.text == "Connection refused: per-address connection limit reached"
        assert await a2.recv_close() == (1013, "connection limit")
        assert breaches("max_connections_per_ip") == before + 1
        assert sorted(gw.server.limiter.per_ip) == ["203.0.113.7", "203.0.113.9"]
        # The forwarded address is the client's for the loopback rule too: guest is
        # refused from 203.0.113.7, as the plugin refuses it from a remote browser.
        error = await a1.connect_stomp(expect="ERROR")
        assert (error.header("message"), error.text) == (
            "Bad CONNECT",
            "non-loopback access denied",
        )
    finally:
        await a1.close()
        await b1.close()


async def test_x_forwarded_for_is_ignored_from_untrusted_peers(gateway_factory):
    gw = await gateway_factory(max_connections_per_ip=1, trusted_proxies=["10.0.0.0/8"])
    first = await connect_ws(gw.url, additional_headers={"X-Forwarded-For": "203.0.113.1"})
    try:
        await first.connect_stomp()  # guest from loopback: the header was not believed
        second = await connect_ws(gw.url, additional_headers={"X-Forwarded-For": "203.0.113.2"})
        error = await second.recv_frame()
        assert error.text == "Connection refused: per-address connection limit reached"
        assert list(gw.server.limiter.per_ip) == ["127.0.0.1"]
    finally:
        await first.close()


async def test_max_subscriptions(transport, gateway_factory, gateway_client, unique):
    gw = await gateway_factory(max_subscriptions=3, tcp_port=0)
    before = breaches("max_subscriptions")
    c = await gateway_client(gateway=gw)
    for i in range(3):
        await c.subscribe(f"/topic/{unique}.{i}", id=f"s{i}")
    await c.send_frame("SUBSCRIBE", {"destination": f"/topic/{unique}.x", "id": "s4"})
    error = await c.recv_frame()
    assert (error.header("message"), error.text) == (
        "Subscription limit exceeded",
        "Too many subscriptions (limit 3)\n",
    )
    expected = (1008, "Subscription limit exceeded") if transport == "ws" else (None, "")
    assert await c.recv_close() == expected
    assert breaches("max_subscriptions") == before + 1


async def test_max_transactions_setting(gateway_factory, stomp):
    gw = await gateway_factory(max_transactions=2)
    before = breaches("max_transactions")
    c = await stomp(gw.url)
    for tx in ("t1", "t2"):
        await c.send_frame("BEGIN", {"transaction": tx})
    await c.send_frame("BEGIN", {"transaction": "t3", "receipt": "r"})
    error = await c.recv_frame()
    assert (error.header("message"), error.text) == (
        "Transaction limit exceeded",
        "Too many concurrent transactions (limit 2)",
    )
    await c.send_frame("ABORT", {"transaction": "t1", "receipt": "still-open"})
    receipt = await c.recv_frame()
    assert receipt.header("receipt-id") == "still-open"
    assert breaches("max_transactions") == before + 1


async def test_max_outbound_buffer_drops_a_client_that_does_not_read(
    gateway_factory, stomp, unique
):
    gw = await gateway_factory(max_outbound_buffer=64 * 1024)
    before = breaches("max_outbound_buffer")
    bystander = await stomp(gw.url)
    await bystander.subscribe(f"/topic/{unique}", id="s")
    # The victim writes and never reads: a small receive buffer, one queued message.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", gw.port))
    sock.setblocking(False)
    victim = await connect_ws(gw.url, sock=sock, max_queue=1)
    await victim.connect_stomp()
    # Each 5-byte frame is answered by a ~100-byte ERROR "Bad command".
    burst = b"X\n\n\x00" * 2000
    async with asyncio.timeout(30):
        with contextlib.suppress(ConnectionClosed):
            while breaches("max_outbound_buffer") == before:
                await victim.ws.send(burst)
                await asyncio.sleep(0)  # a send that does not block never yields
    assert breaches("max_outbound_buffer") == before + 1
    await wait_until(lambda: len(gw.server.sessions) == 1)
    # The bystander did not notice.
    await bystander.send_frame("SEND", {"destination": f"/topic/{unique}"}, "fine")
    message = await bystander.recv_frame()
    assert (message.command, message.body) == ("MESSAGE", b"fine")
    await victim.close()
