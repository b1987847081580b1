"""The broker adapter's parts that need no broker: the login proof cache, the rate
limit, broker URL lists, exact PLAIN credentials and the broker probe."""

from __future__ import annotations

import asyncio

import pytest

from gateway.broker.base import Credentials
from gateway.broker.connector import (
    BrokerMonitor,
    Endpoints,
    GatewayConnection,
    TokenBucket,
    parse_urls,
)
from gateway.broker.proof import ProofCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- ProofCache ---------------------------------------------------------------------------
def test_proof_is_for_one_passcode_user_and_vhost() -> None:
    clock = Clock()
    cache = ProofCache(30, clock=clock)
    key = ("alice", "/")
    right = cache.digest("alice", "/", "s3cret")
    assert right == cache.digest("alice", "/", "s3cret")
    assert not cache.proven(key, right)
    cache.remember(key, right)
    assert cache.proven(key, right)
    assert not cache.proven(key, cache.digest("alice", "/", "s3cret "))
    assert not cache.proven(key, cache.digest("alice", "/", ""))
    # The same passcode hashes differently for another user, vhost or process.
    assert cache.digest("bob", "/", "s3cret") != right
    assert cache.digest("alice", "/other", "s3cret") != right
    assert ProofCache(30).digest("alice", "/", "s3cret") != right
    assert not cache.proven(("alice", "/other"), cache.digest("alice", "/other", "s3cret"))


def test_proof_expires_after_the_ttl_counted_from_the_login() -> None:
    clock = Clock()
    cache = ProofCache(30, clock=clock)
    key, digest = ("alice", "/"), cache.digest("alice", "/", "pw")
    cache.remember(key, digest)
    clock.now += 29.9
    assert cache.proven(key, digest)  # hits do not extend it
    clock.now += 0.1
    assert not cache.proven(key, digest)
    assert len(cache) == 0


def test_refusals_are_remembered_for_the_ttl_and_cleared_by_a_login() -> None:
    clock = Clock()
    cache = ProofCache(10, clock=clock)
    key = ("alice", "/")
    wrong, right = cache.digest(*key, "wrong"), cache.digest(*key, "right")
    cache.remember_refusal(key, wrong)
    assert cache.refused(key, wrong) and not cache.refused(key, right)
    clock.now += 10
    assert not cache.refused(key, wrong)
    cache.remember_refusal(key, wrong)
    cache.remember(key, wrong)  # the password was changed to it meanwhile
    assert not cache.refused(key, wrong) and cache.proven(key, wrong)


def test_ttl_zero_remembers_nothing() -> None:
    cache = ProofCache(0)
    key, digest = ("alice", "/"), cache.digest("alice", "/", "pw")
    cache.remember(key, digest)
    cache.remember_refusal(key, digest)
    assert not cache.enabled
    assert not cache.proven(key, digest) and not cache.refused(key, digest)


def test_the_passcode_is_never_stored() -> None:
    cache = ProofCache(30)
    passcode = "a-very-recognisable-passcode"
    key = ("alice", "/")
    cache.remember(key, cache.digest(*key, passcode))
    cache.remember_refusal(key, cache.digest(*key, passcode + "x"))
    dump = repr(vars(cache)).encode() + b"".join(d for d, _ in cache._proofs.values())
    assert passcode.encode() not in dump and passcode not in repr(vars(cache))


async def test_digest_runs_off_the_event_loop() -> None:
    cache = ProofCache(30)
    assert await cache.digest_async("a", "/", "pw") == cache.digest("a", "/", "pw")


# -- TokenBucket --------------------------------------------------------------------------
def test_token_bucket_books_slots_in_order_and_bounds_the_wait() -> None:
    clock = Clock()
    bucket = TokenBucket(10, clock=clock)  # burst of 10
    assert [bucket.reserve(1.0) for _ in range(10)] == [0.0] * 10
    assert bucket.reserve(1.0) == pytest.approx(0.1)
    assert bucket.reserve(1.0) == pytest.approx(0.2)
    assert bucket.reserve(0.25) is None  # would wait 0.3 s: refused, nothing booked
    assert bucket.reserve(0.3) == pytest.approx(0.3)
    clock.now += 2.0  # idle: the burst is back
    assert [bucket.reserve(0.0) for _ in range(10)] == [0.0] * 10
    assert bucket.reserve(0.0) is None


async def test_token_bucket_acquire_waits_then_refuses() -> None:
    from gateway.broker.connector import BrokerBusy

    bucket = TokenBucket(100, burst=1)
    await bucket.acquire(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await bucket.acquire(1)  # waits its 10 ms slot
    assert loop.time() - started >= 0.009
    bucket.reserve(1)
    with pytest.raises(BrokerBusy):
        await bucket.acquire(0)


# -- broker URLs --------------------------------------------------------------------------
def test_urls_from_a_comma_separated_list_or_a_list() -> None:
    urls = parse_urls("amqp://u:p@rabbit1/, amqps://rabbit2:5999/vh,amqp://rabbit3:5673")
    assert [str(u) for u in urls] == [
        "amqp://rabbit1:5672/?heartbeat=10",
        "amqps://rabbit2:5999/?heartbeat=10",
        "amqp://rabbit3:5673/?heartbeat=10",
    ]
    assert [str(u) for u in parse_urls("ignored", ["amqp://a/?heartbeat=3"])] == [
        "amqp://a:5672/?heartbeat=3"
    ]
    for bad in ("", " , ", "http://x/", "amqp:///"):
        with pytest.raises(ValueError):
            parse_urls(bad)


def test_endpoints_start_with_the_preferred_url() -> None:
    endpoints = Endpoints(parse_urls("amqp://a/,amqp://b/,amqp://c/"))
    endpoints.preferred = 1
    assert [u.host for _, u in endpoints.in_turn()] == ["b", "c", "a"]
    assert [i for i, _ in endpoints.in_turn()] == [1, 2, 0]


async def test_plain_credentials_are_sent_as_given() -> None:
    from pamqp import commands as spec

    url = parse_urls("amqp://127.0.0.1/")[0]
    start = spec.Connection.Start(mechanisms="AMQPLAIN PLAIN")
    for login, passcode in (("", ""), ("guest", ""), ("ünï", "p:ss\0x")):
        conn = GatewayConnection(url, Credentials(login, passcode, "/v"), "n")
        assert conn.vhost == "/v" and conn.url.password is None
        auth = conn._credentials_class(start)
        assert auth.name == "PLAIN"
        assert auth.value(conn).marshal() == f"\0{login}\0{passcode}"
        assert conn._gateway_passcode is None  # used once, then forgotten


# -- the broker probe ---------------------------------------------------------------------
async def test_probe_wants_a_connection_start() -> None:
    async def amqp_like(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await reader.readexactly(8) == b"AMQP\x00\x00\x09\x01"
        writer.write(b"\x01\x00\x00\x00\x00\x01\xf0")
        await writer.drain()
        writer.close()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    good = await asyncio.start_server(amqp_like, "127.0.0.1", 0)
    mute = await asyncio.start_server(silent, "127.0.0.1", 0)
    closed = await asyncio.start_server(silent, "127.0.0.1", 0)
    ports = [s.sockets[0].getsockname()[1] for s in (good, mute, closed)]
    closed.close()
    try:
        for port, state in ((ports[0], "up"), (ports[1], "down"), (ports[2], "down")):
            monitor = BrokerMonitor(Endpoints(parse_urls(f"amqp://127.0.0.1:{port}/")), timeout=0.3)
            await monitor.start()
            try:
                assert monitor.state == state, port
                assert monitor.ready() is (state == "up")
            finally:
                await monitor.stop()
        # With several URLs, the first that answers becomes the preferred one.
        endpoints = Endpoints(
            parse_urls(f"amqp://127.0.0.1:{ports[2]}/,amqp://127.0.0.1:{ports[0]}/")
        )
        monitor = BrokerMonitor(endpoints, timeout=0.3)
        await monitor.start()
        await monitor.stop()
        assert (monitor.state, endpoints.preferred) == ("up", 1)
    finally:
        for server in (good, mute):
            server.close()
