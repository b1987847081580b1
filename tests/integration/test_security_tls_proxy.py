"""wss (TLS on the WebSocket listener, client certificates) and the client's address
behind a balancer: PROXY protocol v1/v2 on both listeners."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import struct
from pathlib import Path

import pytest
from websockets.exceptions import InvalidMessage

from gateway.metrics import METRICS
from gateway.proxy import PROXY_V2_SIGNATURE, ProxyHeaderError, ProxyHeaderReader
from tests.support.security import make_cert
from tests.support.tcpclient import StompTcp
from tests.support.wsclient import connect_ws


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    directory = tmp_path_factory.mktemp("wss-certs")
    server_cert, server_key = make_cert(directory, "server", "localhost")
    client_cert, client_key = make_cert(directory, "client", "stomp-client")
    return {"server_cert": server_cert, "server_key": server_key,
            "client_cert": client_cert, "client_key": client_key}  # fmt: skip


def client_context(certs: dict[str, Path], with_cert: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs["server_cert"]))
    if with_cert:
        ctx.load_cert_chain(certs["client_cert"], certs["client_key"])
    return ctx


async def test_wss_listener(gateway_factory, certs, unique):
    gw = await gateway_factory(
        ws_ssl_port=0, ssl_certfile=certs["server_cert"], ssl_keyfile=certs["server_key"]
    )
    before = METRICS.sessions_total.get("wss")
    url = f"wss://localhost:{gw.server.ws_ssl_port}/ws"
    ws = await connect_ws(url, ssl=client_context(certs))
    try:
        await ws.connect_stomp()
        await ws.subscribe(f"/topic/{unique}", id="s")
        await ws.send_frame("SEND", {"destination": f"/topic/{unique}"}, "over tls")
        assert (await ws.recv_frame()).body == b"over tls"
        assert METRICS.sessions_total.get("wss") == before + 1
        assert [s.transport_name for s in gw.server.sessions] == ["wss"]
    finally:
        await ws.close()
    # The plain listener still serves ws:// beside it.
    plain = await connect_ws(gw.url)
    try:
        await plain.connect_stomp()
    finally:
        await plain.close()


async def test_wss_client_certificate_required(gateway_factory, certs):
    gw = await gateway_factory(
        ws_ssl_port=0,
        ssl_certfile=certs["server_cert"],
        ssl_keyfile=certs["server_key"],
        ssl_cacertfile=certs["client_cert"],  # self-signed: its own CA
        ssl_verify="peer",
        ssl_fail_if_no_peer_cert=True,
    )
    url = f"wss://localhost:{gw.server.ws_ssl_port}/ws"
    ws = await connect_ws(url, ssl=client_context(certs, with_cert=True))
    try:
        await ws.connect_stomp()
    finally:
        await ws.close()
    # TLS 1.3: the client's side of the handshake completes, then the server's alert
    # ends the connection before the HTTP upgrade is answered.
    with pytest.raises(InvalidMessage):
        await connect_ws(url, ssl=client_context(certs))


def proxy_v1(source: str, port: int) -> bytes:
    family = "TCP6" if ":" in source else "TCP4"
    dest = "::1" if family == "TCP6" else "127.0.0.1"
    return f"PROXY {family} {source} {dest} {port} 15674\r\n".encode()


def proxy_v2(source: str, port: int, *, local: bool = False) -> bytes:
    if local:
        return PROXY_V2_SIGNATURE + struct.pack("!BBH", 0x20, 0x00, 0)
    addresses = (
        socket.inet_aton(source) + socket.inet_aton("127.0.0.1") + struct.pack("!HH", port, 61613)
    )
    return PROXY_V2_SIGNATURE + struct.pack("!BBH", 0x21, 0x11, len(addresses)) + addresses


def connected_socket(port: int, header: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(header)
    sock.setblocking(False)
    return sock


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_proxy_protocol_on_the_websocket_listener(gateway_factory, version):
    gw = await gateway_factory(proxy_protocol=True)
    header = proxy_v1("203.0.113.5", 5555) if version == "v1" else proxy_v2("203.0.113.5", 5555)
    ws = await connect_ws(gw.url, sock=connected_socket(gw.port, header))
    try:
        # guest is loopback-only: the PROXY source, not the balancer, is the client.
        error = await ws.connect_stomp(expect="ERROR")
        assert error.text == "non-loopback access denied"
        assert [s.peer for s in gw.server.sessions] == ["203.0.113.5:5555"]
    finally:
        await ws.close()
    # A LOCAL (health check) connection keeps the socket's own address.
    ws = await connect_ws(gw.url, sock=connected_socket(gw.port, proxy_v2("", 0, local=True)))
    try:
        await ws.connect_stomp()
    finally:
        await ws.close()


async def test_proxy_protocol_required_when_on(gateway_factory):
    gw = await gateway_factory(proxy_protocol=True)
    with pytest.raises(InvalidMessage):  # no header: dropped before any HTTP answer
        await connect_ws(gw.url)


async def tcp_client(port: int, header: bytes) -> StompTcp:
    reader, writer = await asyncio.open_connection(sock=connected_socket(port, header))
    return StompTcp(reader, writer, True)


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_proxy_protocol_on_the_tcp_listener(gateway_factory, version):
    gw = await gateway_factory(proxy_protocol=True, tcp_port=0)
    port = gw.server.tcp_port
    header = proxy_v1("198.51.100.7", 4242) if version == "v1" else proxy_v2("198.51.100.7", 4242)
    c = await tcp_client(port, header)
    try:
        error = await c.connect_stomp(expect="ERROR")
        assert error.text == "non-loopback access denied"
        assert [s.peer for s in gw.server.sessions] == ["198.51.100.7:4242"]
    finally:
        await c.close()
    bad = await tcp_client(port, b"GET / HTTP/1.1\r\n\r\n")
    assert await bad.recv_close() == (None, "")


def test_proxy_header_reader() -> None:
    reader = ProxyHeaderReader()
    assert reader.feed(b"PROXY TCP4 192.0.2.1 ") is None  # split anywhere
    assert reader.feed(b"192.0.2.2 1234 80\r\nCONNECT") == (("192.0.2.1", 1234), b"CONNECT")
    assert ProxyHeaderReader().feed(b"PROXY UNKNOWN\r\n") == (None, b"")
    v6 = ProxyHeaderReader().feed(b"PROXY TCP6 2001:db8::1 ::1 4000 443\r\nx")
    assert v6 == (("2001:db8::1", 4000), b"x")
    addresses = (
        socket.inet_pton(socket.AF_INET6, "2001:db8::2") + bytes(16) + struct.pack("!HH", 7, 8)
    )
    header = PROXY_V2_SIGNATURE + struct.pack("!BBH", 0x21, 0x21, len(addresses)) + addresses
    reader = ProxyHeaderReader()
    assert reader.feed(header[:20]) is None
    assert reader.feed(header[20:] + b"rest") == (("2001:db8::2", 7), b"rest")
    for bad in (
        b"GET / HTTP/1.1\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 x 80\r\n",
        b"PROXY TCP4 ::1 ::1 1 2\r\n",
        b"PROXY TCP4 " + b"1" * 120,
        PROXY_V2_SIGNATURE + b"\x31\x11\x00\x00",
    ):
        with pytest.raises(ProxyHeaderError):
            ProxyHeaderReader().feed(bad)
