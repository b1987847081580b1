"""allow_origins: cross-site WebSocket hijacking is refused at the upgrade (403)."""

from __future__ import annotations

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from tests.support.wsclient import connect_ws


async def refused_status(url: str, origin: str) -> tuple[int, str | None, bytes]:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, origin=Origin(origin)):
            pass
    reply = info.value.response
    return reply.status_code, reply.headers.get("Connection"), reply.body or b""


async def test_foreign_page_cannot_open_a_websocket(gateway_factory):
    gw = await gateway_factory(allow_origins=["https://app.example.com"])
    # A page on evil.example makes the visitor's browser open ws://gateway/ws.
    assert await refused_status(gw.url, "https://evil.example") == (
        403,
        "close",
        b"Origin not allowed\n",
    )
    # The application's own page works, and so does a non-browser client (no Origin).
    ws = await connect_ws(gw.url, origin=Origin("https://app.example.com"))
    try:
        await ws.connect_stomp()
    finally:
        await ws.close()
    ws = await connect_ws(gw.url)
    try:
        await ws.connect_stomp()
    finally:
        await ws.close()


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://a.example.com", True),
        ("https://deep.a.example.com", True),
        ("HTTPS://A.Example.COM", True),
        ("https://example.com", False),
        ("http://a.example.com", False),
        ("https://a.example.com.evil.example", False),
        ("https://evilexample.com", False),
        ("http://localhost:8080", True),
        ("http://localhost", False),
        ("null", False),
    ],
)
async def test_wildcard_origins(gateway_factory, origin: str, allowed: bool):
    gw = await gateway_factory(allow_origins=["https://*.example.com", "http://localhost:*"])
    if allowed:
        async with connect(gw.url, origin=Origin(origin)) as ws:
            await ws.send("CONNECT\naccept-version:1.2\n\n\x00")
            assert str(await ws.recv()).startswith("CONNECTED\n")
    else:
        assert (await refused_status(gw.url, origin))[0] == 403


async def test_no_allow_list_accepts_any_origin(gateway_url):
    async with connect(gateway_url, origin=Origin("https://evil.example")) as ws:
        await ws.send("CONNECT\naccept-version:1.2\n\n\x00")
        assert str(await ws.recv()).startswith("CONNECTED\n")
