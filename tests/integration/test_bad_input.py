"""Bad input catalogue: each abuse is answered with an ERROR or a close, the gateway's
memory stays bounded, and a bystander session keeps working throughout."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time

import pytest

from tests.support.security import rss_kib
from tests.support.wsclient import connect_ws

MAX_RSS_GROWTH_KIB = 64 * 1024


@pytest.fixture
async def scene(gateway_factory, stomp, unique):
    """A gateway (login_timeout 1 s) and a bystander subscribed to its own topic."""
    gw = await gateway_factory(login_timeout=1.0)
    bystander = await stomp(gw.url)
    await bystander.subscribe(f"/topic/{unique}.bystander", id="b")
    return gw, bystander


async def bystander_still_works(bystander, unique: str, body: str) -> None:
    await bystander.send_frame("SEND", {"destination": f"/topic/{unique}.bystander"}, body)
    message = await bystander.recv_frame()
    assert (message.command, message.body) == ("MESSAGE", body.encode())


async def test_header_value_cannot_smuggle_a_header_or_a_frame(scene, stomp, unique):
    gw, bystander = scene
    receiver = await stomp(gw.url)
    await receiver.subscribe(f"/topic/{unique}.inj", id="r")
    sender = await stomp(gw.url)
    # An escaped newline is data: it stays inside the header value.
    evil = "v\nmessage-id:forged\n\nMESSAGE\ndestination:/topic/x\n\n\x00"
    await sender.send_frame("SEND", {"destination": f"/topic/{unique}.inj", "x-evil": evil}, "body")
    message = await receiver.recv_frame()
    assert message.command == "MESSAGE"
    assert message.header("x-evil") == evil
    assert len(message.header_all("message-id")) == 1
    assert message.header("message-id", "").startswith("T_r@@")
    assert message.body == b"body"
    await receiver.expect_no_frame()  # exactly one MESSAGE
    # A raw newline in a header is a new header line; a line without a colon is a
    # framing error (1007), never a second frame.
    await sender.send_raw(f"SEND\ndestination:/topic/{unique}.inj\nx:a\nSEND\n\nbody\x00")
    assert await sender.recv_close() == (1007, '{header_no_value,"SEND"}')
    await receiver.expect_no_frame()
    await bystander_still_works(bystander, unique, "after injection")


async def test_header_flood_closes_1007(scene, stomp, unique):
    gw, bystander = scene
    c = await stomp(gw.url)
    headers = [("destination", f"/topic/{unique}")] + [(f"h{i}", "x") for i in range(101)]
    await c.send_frame("SEND", headers, "x")
    assert await c.recv_close() == (1007, "{max_headers,100}")
    await bystander_still_works(bystander, unique, "after flood")


async def test_huge_content_length_is_refused_before_the_body(scene, stomp, unique):
    gw, bystander = scene
    before = rss_kib()
    c = await stomp(gw.url)
    await c.send_raw(f"SEND\ndestination:/topic/{unique}\ncontent-length:104857600\n\n")
    started = time.monotonic()
    code, reason = await c.recv_close()
    assert (code, reason) == (1007, "{frame_too_big,{104857662,4194304}}")
    assert time.monotonic() - started < 2  # no waiting for 100 MB that never comes
    assert rss_kib() - before < MAX_RSS_GROWTH_KIB
    await bystander_still_works(bystander, unique, "after content-length")


async def test_slowloris_before_connect_is_closed_by_login_timeout(scene, unique):
    gw, bystander = scene
    ws = await connect_ws(gw.url)
    started = time.monotonic()
    closed = asyncio.ensure_future(ws.recv_close(timeout=5))
    for byte in b"CONNECT\naccept-version:1.2\n":
        if closed.done():
            break
        await ws.send_raw(bytes([byte]))
        await asyncio.wait({closed}, timeout=0.1)
    assert await closed == (1000, "STOMP died")
    assert 0.9 < time.monotonic() - started < 3
    await bystander_still_works(bystander, unique, "after slowloris")


async def test_binary_garbage_closes_1007(scene, unique):
    gw, bystander = scene
    ws = await connect_ws(gw.url)
    await ws.connect_stomp()
    await ws.send_raw(b"\x00\n\n\x01\x02garbage\r\x03\xff", binary=True)
    assert await ws.recv_close() == (1007, "{unexpected_chars_in_command,[13,3]}")
    await bystander_still_works(bystander, unique, "after garbage")


async def test_invalid_utf8_in_a_text_message_closes_1007(scene, unique):
    gw, bystander = scene
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101")
    payload, mask = b"CONNECT\n\n\xff\xfe\x00", os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    writer.write(struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + masked)
    first, length = await asyncio.wait_for(reader.readexactly(2), 5)
    assert first == 0x88  # a close frame
    body = await reader.readexactly(length)
    assert struct.unpack("!H", body[:2])[0] == 1007
    writer.close()
    await bystander_still_works(bystander, unique, "after bad utf-8")


async def test_thousands_of_subscribes_hit_max_subscriptions(scene, stomp, amqp, unique):
    gw, bystander = scene
    queue = await amqp.declare_queue(f"{unique}-many")
    before = rss_kib()
    c = await stomp(gw.url)
    frames = b"".join(
        f"SUBSCRIBE\ndestination:/amq/queue/{queue}\nid:s{i}\n\n\x00".encode() for i in range(3000)
    )
    await c.send_raw(frames)
    error = await c.recv_frame(timeout=30)
    assert (error.header("message"), error.text) == (
        "Subscription limit exceeded",
        "Too many subscriptions (limit 1024)\n",
    )
    assert await c.recv_close(timeout=10) == (1008, "Subscription limit exceeded")
    assert rss_kib() - before < MAX_RSS_GROWTH_KIB
    await bystander_still_works(bystander, unique, "after subscribe flood")
