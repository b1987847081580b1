"""The gateway's own WebSocket/HTTP behaviour against real RabbitMQ (no plugin needed):
HTTP endpoints, compression, ws_frame, heart-beats both ways, login timeout, limits."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.support.wsclient import connect_ws


def http_base(url: str) -> str:
    return url.replace("ws://", "http://").rsplit("/", 1)[0]


async def test_http_endpoints(gateway_url: str) -> None:
    base = http_base(gateway_url)
    async with httpx.AsyncClient() as http:
        health = await http.get(f"{base}/healthz")
        assert (health.status_code, health.text) == (200, "ok\n")
        ready = await http.get(f"{base}/readyz")
        assert (ready.status_code, ready.text) == (200, "ready\n")
        missing = await http.get(f"{base}/nope")
        assert missing.status_code == 404
        plain = await http.get(gateway_url.replace("ws://", "http://"))
        assert plain.status_code == 426  # a GET on /ws without Upgrade, as Cowboy answers
        escape = await http.get(f"{base}/..%2f..%2fetc/passwd")
        assert escape.status_code == 404


async def test_only_ws_path_upgrades(gateway_url: str) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(gateway_url.replace("/ws", "/other")):
            pass
    assert info.value.response.status_code == 404
    # Cowboy also matches "/ws/" and ignores the query string.
    async with connect(gateway_url + "/?x=1") as ws:
        await ws.send("CONNECT\naccept-version:1.2\n\n\x00")
        assert str(await ws.recv()).startswith("CONNECTED\n")


@pytest.mark.parametrize("compress", [True, False])
async def test_permessage_deflate_follows_setting(gateway_factory, compress: bool) -> None:
    handle = await gateway_factory(compress=compress)
    async with connect(handle.url) as ws:
        assert ws.response is not None
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        assert ("permessage-deflate" in extensions) is compress


@pytest.mark.parametrize(("ws_frame", "opcode"), [("text", "text"), ("binary", "binary")])
async def test_ws_frame_sets_outbound_opcode(gateway_factory, ws_frame: str, opcode: str) -> None:
    handle = await gateway_factory(ws_frame=ws_frame)
    ws = await connect_ws(handle.url)
    try:
        await ws.connect_stomp(heart_beat="0,1000")
        await ws.send_frame("SUBSCRIBE", {"destination": "/topic/opcode-test", "receipt": "r"})
        await ws.recv_frame()
        deadline = time.monotonic() + 3
        while ws.heartbeats_received == 0 and time.monotonic() < deadline:
            with pytest.raises(TimeoutError):
                await ws.recv_frame(timeout=0.2)
        assert ws.heartbeats_received >= 1
        assert set(ws.message_opcodes) == {opcode}
    finally:
        await ws.close()


async def test_server_heart_beats_arrive_on_time(gateway_url: str) -> None:
    ws = await connect_ws(gateway_url)
    try:
        connected = await ws.connect_stomp(heart_beat="0,1000")
        assert connected.header("heart-beat") == "1000,0"
        started = time.monotonic()
        while ws.heartbeats_received < 3:
            with pytest.raises(TimeoutError):
                await ws.recv_frame(timeout=0.2)
            assert time.monotonic() - started < 3.5, "3 beats at <= 1 s each"
    finally:
        await ws.close()


async def test_silent_client_is_dropped_without_error(gateway_url: str) -> None:
    ws = await connect_ws(gateway_url)
    connected = await ws.connect_stomp(heart_beat="1000,0")
    assert connected.header("heart-beat") == "0,1000"
    started = time.monotonic()
    code, reason = await ws.recv_close(timeout=6)
    elapsed = time.monotonic() - started
    assert (code, reason) == (1000, "STOMP died")
    assert ws.drained_frames == []  # RabbitMQ sends no ERROR on a heart-beat timeout
    assert 1.5 < elapsed < 4.5  # two silent checks of 1 s in a row


async def test_client_heart_beats_keep_the_session(gateway_url: str) -> None:
    ws = await connect_ws(gateway_url)
    try:
        await ws.connect_stomp(heart_beat="500,0")
        for _ in range(8):  # 2.4 s of beats every 300 ms: longer than the 2x timeout
            await ws.send_raw("\n")
            with pytest.raises(TimeoutError):
                await ws.recv_frame(timeout=0.3)
        assert await ws.is_open()
    finally:
        await ws.close()


async def test_login_timeout_closes_idle_sockets(gateway_factory) -> None:
    handle = await gateway_factory(login_timeout=0.3)
    ws = await connect_ws(handle.url)
    assert await ws.recv_close(timeout=3) == (1000, "STOMP died")
    connected = await connect_ws(handle.url)
    try:
        await connected.connect_stomp()
        with pytest.raises(TimeoutError):
            await connected.recv_frame(timeout=0.6)  # logged in: the timer no longer applies
        assert await connected.is_open()
    finally:
        await connected.close()


async def test_pre_auth_frame_size_is_limited(gateway_factory) -> None:
    handle = await gateway_factory(max_frame_size_unauthenticated=1000)
    ws = await connect_ws(handle.url)
    # One frame split over several messages still counts as one frame.
    header = "x" * 600
    await ws.send_raw(f"CONNECT\nh1:{header}\n")
    await ws.send_raw(f"h2:{header}\n\n\x00")
    code, reason = await ws.recv_close()
    assert code == 1007
    assert reason.startswith("{frame_too_big,")
    # A single message above the per-message cap (limit + 4096) is refused by WebSocket.
    big = await connect_ws(handle.url)
    await big.send_raw("CONNECT\nh:" + "y" * 6000 + "\n\n\x00")
    code, _ = await big.recv_close()
    assert code == 1009


async def test_after_login_large_frames_pass(gateway_factory, amqp, unique) -> None:
    handle = await gateway_factory(max_frame_size_unauthenticated=1000)
    amqp.track_queue(unique)
    ws = await connect_ws(handle.url)
    try:
        await ws.connect_stomp()
        body = "z" * 200_000
        await ws.subscribe(f"/queue/{unique}", id="s")
        await ws.send(f"/queue/{unique}", body)
        message = await ws.recv_frame()
        assert message.command == "MESSAGE" and message.body == body.encode()
        assert message.header("content-length") == "200000"
    finally:
        await ws.close()


async def test_many_sessions_and_clean_release(gateway_url: str, amqp) -> None:
    clients = [await connect_ws(gateway_url) for _ in range(20)]
    await asyncio.gather(*(c.connect_stomp() for c in clients))
    sessions = {c.session for c in clients}
    assert len(sessions) == 20
    await asyncio.gather(*(c.disconnect() for c in clients))
    for c in clients:
        assert await c.recv_close() == (1000, "STOMP died")


async def test_idle_timeout_closes_silent_websockets(gateway_factory) -> None:
    # Cowboy's idle_timeout: no inbound bytes for that long -> close 1000, empty reason,
    # logged in or not (heart-beats 0,0 here, so nothing else would notice).
    handle = await gateway_factory(idle_timeout=0.5, login_timeout=0)
    ws = await connect_ws(handle.url)
    await ws.connect_stomp()
    started = time.monotonic()
    assert await ws.recv_close(timeout=3) == (1000, "")
    assert ws.drained_frames == []
    assert 0.4 < time.monotonic() - started < 2.0


async def test_inbound_bytes_reset_the_idle_timeout(gateway_factory) -> None:
    handle = await gateway_factory(idle_timeout=0.6, login_timeout=0)
    ws = await connect_ws(handle.url)
    try:
        await ws.connect_stomp()
        for _ in range(6):  # 1.2 s of EOLs every 0.2 s: longer than the timeout
            await ws.send_raw("\n")
            with pytest.raises(TimeoutError):
                await ws.recv_frame(timeout=0.2)
        assert await ws.is_open()
    finally:
        await ws.close()
