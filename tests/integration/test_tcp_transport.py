"""What only the TCP transport has: the telnet session, raw stream handling, TLS,
backpressure, the settings and the CLI flag (shared session behaviours run over both
transports in test_tcp_sessions.py)."""

# polling with short sleeps is bounded by asyncio.timeout
# ruff: noqa: ASYNC110

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

import gateway.transport.tcp as tcp_module
from gateway import __version__
from gateway.settings import load_settings
from tests.interop.helpers import assert_connected, assert_receipt
from tests.support.tcpclient import connect_tcp

ROOT = Path(__file__).resolve().parent.parent.parent
SESSION_RE = re.compile(rb"session:session-[A-Za-z0-9_-]{22}\n")


async def read_until_eof(reader: asyncio.StreamReader, within: float = 5) -> bytes:
    async with asyncio.timeout(within):
        return await reader.read()


async def read_exactly_frames(reader: asyncio.StreamReader, count: int) -> bytes:
    """``count`` frames with their trailing LF (``\\x00\\n`` ends each)."""
    data = b""
    async with asyncio.timeout(5):
        while data.count(b"\x00\n") < count:
            chunk = await reader.read(65536)
            assert chunk, f"EOF after {data!r}"
            data += chunk
    return data


# -- the telnet session of the article (tests/README: "Try it with telnet") ---------------
TELNET = {
    # what a terminal sends: each line ends with LF (or CR LF in telnet's default mode);
    # ^@ types the NUL, and telnet sends the Enter that follows it too.
    "lf": [
        b"CONNECT\n\n\x00",
        b"SEND\ndestination:{queue}\nreceipt:123\n\nhello\n\x00",
        b"DISCONNECT\nreceipt:123\n\n\x00",
    ],
    "crlf": [
        b"CONNECT\r\n\r\n\x00\r\n",
        b"SEND\r\ndestination:{queue}\r\nreceipt:123\r\n\r\nhello\r\n\x00\r\n",
        b"DISCONNECT\r\nreceipt:123\r\n\r\n\x00\r\n",
    ],
}
SERVER_HEADER = f"server:stomp-gateway/{__version__}\n".encode()
TELNET_CONNECTED = (
    b"CONNECTED\n" + SERVER_HEADER + b"session:S\nheart-beat:0,0\nversion:1.0\n\n\x00\n"
)
TELNET_RECEIPT = b"RECEIPT\nreceipt-id:123\n\n\x00\n"


@pytest.mark.parametrize("eol", ["lf", "crlf"])
async def test_telnet_session_byte_for_byte(gateway_factory, amqp, unique, eol):
    gw = await gateway_factory(tcp_port=0)
    queue = amqp.track_queue(f"testSTOMP-{unique}")
    typed = [line.replace(b"{queue}", queue.encode()) for line in TELNET[eol]]
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.server.tcp_port)
    try:
        writer.write(typed[0])
        connected = await read_exactly_frames(reader, 1)
        assert SESSION_RE.search(connected), connected
        assert SESSION_RE.sub(b"session:S\n", connected) == TELNET_CONNECTED

        writer.write(typed[1])
        assert await read_exactly_frames(reader, 1) == TELNET_RECEIPT
        message = await amqp.get(queue)  # a bare name is /queue/<name>
        assert message.body == (b"hello\n" if eol == "lf" else b"hello\r\n")

        writer.write(typed[2])
        assert await read_until_eof(reader) == TELNET_RECEIPT  # then EOF
    finally:
        writer.close()


async def test_client_half_close_still_gets_its_receipts(gateway_factory, amqp, unique):
    # printf 'CONNECT...SEND...' | nc -N host port: the client shuts its side after the
    # last frame; the answers still arrive, then the gateway ends the stream.
    gw = await gateway_factory(tcp_port=0)
    queue = amqp.track_queue(unique)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.server.tcp_port)
    writer.write(
        b"CONNECT\naccept-version:1.2\n\n\x00"
        + f"SEND\ndestination:/queue/{queue}\nreceipt:r\n\nlast words\x00".encode()
    )
    writer.write_eof()
    data = await read_until_eof(reader)
    writer.close()
    assert data.startswith(b"CONNECTED\n")
    assert data.endswith(b"\x00\nRECEIPT\nreceipt-id:r\n\n\x00\n")
    assert (await amqp.get(queue)).body == b"last words"
    async with asyncio.timeout(5):
        while gw.server.sessions:
            await asyncio.sleep(0.01)


async def test_one_byte_at_a_time(gateway_factory):
    gw = await gateway_factory(tcp_port=0)
    c = await connect_tcp("127.0.0.1", gw.server.tcp_port)
    try:
        data = b"CONNECT\r\naccept-version:1.1\r\nheart-beat:0,0\r\n\r\n\x00"
        await c.send_split(data, len(data))
        assert_connected(await c.recv_frame(), "gateway", version="1.1")
    finally:
        await c.close()


async def test_client_heart_beats_keep_the_session(gateway_factory):
    # heart-beat:1000,0: EOLs from the client (LF or CR LF) count as beats.
    gw = await gateway_factory(tcp_port=0)
    c = await connect_tcp("127.0.0.1", gw.server.tcp_port)
    try:
        await c.connect_stomp(heart_beat="1000,0")
        for beat in (b"\n", b"\r\n") * 3:
            await c.send_raw(beat)
            await c.expect_no_frame(0.4)  # raises if the stream ends
        assert len(gw.server.sessions) == 1
        code, _ = await c.recv_close(timeout=4)  # silence: closed, no ERROR
        assert code is None
        assert c.drained_frames == []
    finally:
        await c.close()


async def test_reading_pauses_while_the_session_is_behind(
    gateway_factory, amqp, unique, monkeypatch
):
    monkeypatch.setattr(tcp_module, "READ_HIGH_WATER", 8192)
    pauses: list[int] = []
    original = tcp_module.StompTcpProtocol._pause_reading

    def counting(self: tcp_module.StompTcpProtocol) -> None:
        pauses.append(self._inbox_size)
        original(self)

    monkeypatch.setattr(tcp_module.StompTcpProtocol, "_pause_reading", counting)
    gw = await gateway_factory(tcp_port=0)
    queue = amqp.track_queue(unique)
    c = await connect_tcp("127.0.0.1", gw.server.tcp_port)
    try:
        await c.connect_stomp()
        body = "x" * 1000
        burst = b"".join(
            f"SEND\ndestination:/queue/{queue}\n\n{i:04d}{body}\x00".encode() for i in range(400)
        )
        await c.send_raw(burst + f"SEND\ndestination:/queue/{queue}\nreceipt:end\n\n\x00".encode())
        assert_receipt(await c.recv_frame(timeout=10), "end")
        assert pauses, "reading never paused"
        got = [(await amqp.get(queue)).body[:4] for _ in range(400)]
        assert got == [f"{i:04d}".encode() for i in range(400)]
    finally:
        await c.close()


N_SLOW = 500


async def test_slow_reader_loses_nothing(gateway_factory, amqp, unique, monkeypatch):
    # 6 MB of MESSAGEs (more than the kernel's 4 MB send buffer) towards a client that
    # does not read: the transport's write buffer passes its
    # high-water mark, the client's own frames wait, and everything arrives once it reads.
    paused: list[bool] = []
    original = tcp_module.StompTcpProtocol.pause_writing

    def spy(self: tcp_module.StompTcpProtocol) -> None:
        paused.append(True)
        original(self)

    monkeypatch.setattr(tcp_module.StompTcpProtocol, "pause_writing", spy)
    gw = await gateway_factory(tcp_port=0)
    queue = amqp.track_queue(unique)
    c = await connect_tcp("127.0.0.1", gw.server.tcp_port, rcvbuf=4096)
    try:
        await c.connect_stomp()
        await c.subscribe(f"/queue/{queue}", id="s")
        for i in range(N_SLOW):
            await amqp.publish("", queue, f"{i:04d}".encode() + b"y" * 12_000)
        async with asyncio.timeout(10):
            while not paused:
                await asyncio.sleep(0.01)
        await c.send_frame("SEND", {"destination": f"/topic/{queue}", "receipt": "r"})
        commands = []
        bodies = []
        async with asyncio.timeout(20):
            while len(commands) < N_SLOW + 1:
                frame = await c.recv_frame()
                commands.append(frame.command)
                if frame.command == "MESSAGE":
                    bodies.append(frame.body[:4])
        assert bodies == [f"{i:04d}".encode() for i in range(N_SLOW)]
        assert commands.count("RECEIPT") == 1
    finally:
        await c.close()


# -- TLS --------------------------------------------------------------------------------------
def make_cert(directory: Path, name: str, cn: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={cn}",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A self-signed server certificate and a self-signed client certificate."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    directory = tmp_path_factory.mktemp("certs")
    server_cert, server_key = make_cert(directory, "server", "localhost")
    client_cert, client_key = make_cert(directory, "client", "stomp-client")
    return {
        "server_cert": server_cert,
        "server_key": server_key,
        "client_cert": client_cert,
        "client_key": client_key,
    }


def client_context(certs: dict[str, Path], with_cert: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs["server_cert"]))
    if with_cert:
        ctx.load_cert_chain(certs["client_cert"], certs["client_key"])
    return ctx


async def test_tls_round_trip(gateway_factory, certs, unique):
    gw = await gateway_factory(
        tcp_port=0,
        tcp_ssl_port=0,
        ssl_certfile=certs["server_cert"],
        ssl_keyfile=certs["server_key"],
    )
    assert gw.server.tcp_ssl_port not in (None, gw.server.tcp_port)
    c = await connect_tcp(
        "127.0.0.1",
        gw.server.tcp_ssl_port,
        ssl_context=client_context(certs),
        server_hostname="localhost",
    )
    try:
        assert_connected(await c.connect_stomp(), "gateway")
        await c.subscribe(f"/topic/{unique}", id="s")
        await c.send_frame("SEND", {"destination": f"/topic/{unique}", "receipt": "r"}, "secret")
        frames = [await c.recv_frame()]
        if frames[0].command == "RECEIPT":
            frames.append(await c.recv_frame())
        assert frames[-1].body == b"secret"
        await c.send_frame("DISCONNECT", {"receipt": "bye"})
        await c.recv_close()
        assert [f.header("receipt-id") for f in c.drained_frames if f.command == "RECEIPT"][
            -1
        ] == "bye"
    finally:
        await c.close()


async def test_tls_verify_peer_requires_a_client_certificate(gateway_factory, certs):
    gw = await gateway_factory(
        tcp_ssl_port=0,
        ssl_certfile=certs["server_cert"],
        ssl_keyfile=certs["server_key"],
        ssl_cacertfile=certs["client_cert"],  # self-signed: its own CA
        ssl_verify="verify_peer",
        ssl_fail_if_no_peer_cert=True,
    )
    port = gw.server.tcp_ssl_port
    ok = await connect_tcp(
        "127.0.0.1", port, ssl_context=client_context(certs, True), server_hostname="localhost"
    )
    try:
        assert_connected(await ok.connect_stomp(), "gateway")
    finally:
        await ok.close()
    # Without a certificate: TLS 1.3 completes the client's side of the handshake, then
    # the server's alert ends the connection before any STOMP frame.
    try:
        anon = await connect_tcp(
            "127.0.0.1", port, ssl_context=client_context(certs), server_hostname="localhost"
        )
    except (ssl.SSLError, ConnectionError):
        return
    try:
        await anon.send_raw(b"CONNECT\n\n\x00")
        await anon.recv_close()
        assert anon.drained_frames == []
    except (ssl.SSLError, ConnectionError):
        pass
    finally:
        await anon.close()


# -- settings and CLI -------------------------------------------------------------------------
async def test_tcp_is_off_unless_configured(gateway_factory):
    gw = await gateway_factory()
    assert gw.settings.tcp_port is None
    assert gw.server.tcp_port is None
    assert gw.server.tcp_ssl_port is None


async def test_tcp_host_defaults_to_host(gateway_factory):
    gw = await gateway_factory(host="127.0.0.1", tcp_port=0)
    assert gw.settings.tcp_host is None
    with socket.create_connection(("127.0.0.1", gw.server.tcp_port), timeout=2):
        pass
    assert f"tcp_port={gw.server.tcp_port}" in repr(gw.server)


def test_settings_names_and_validation(monkeypatch, certs):
    monkeypatch.setenv("GATEWAY_TCP_PORT", "61613")
    monkeypatch.setenv("GATEWAY_SSL_VERIFY", "verify_peer")
    s = load_settings()
    assert (s.tcp_port, s.tcp_host, s.tcp_ssl_port, s.ssl_verify) == (61613, None, None, "peer")
    with pytest.raises(ValueError, match="tcp_ssl_port needs ssl_certfile and ssl_keyfile"):
        load_settings(tcp_ssl_port=61614)
    with pytest.raises(ValueError):
        load_settings(ssl_verify="sometimes")
    s = load_settings(
        tcp_ssl_port=61614, ssl_certfile=certs["server_cert"], ssl_keyfile=certs["server_key"]
    )
    # verify_peer without fail_if_no_peer_cert: ask for a certificate, check it if sent.
    assert tcp_module.make_ssl_context(s).verify_mode == ssl.CERT_OPTIONAL
    monkeypatch.delenv("GATEWAY_SSL_VERIFY")
    s = load_settings(
        tcp_ssl_port=61614, ssl_certfile=certs["server_cert"], ssl_keyfile=certs["server_key"]
    )
    assert tcp_module.make_ssl_context(s).verify_mode == ssl.CERT_NONE


def test_cli_tcp_flags():
    from gateway.__main__ import parse_args

    args = parse_args(["--tcp-port", "61613", "--tcp-ssl-port", "61614", "--ssl-verify", "peer"])
    assert (args.tcp_port, args.tcp_ssl_port, args.ssl_verify) == (61613, 61614, "peer")
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        check=True,
    )
    for flag in ("--tcp-port", "--tcp-host", "--tcp-ssl-port", "--ssl-certfile", "--ssl-verify"):
        assert flag in result.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_cli_serves_tcp(amqp, unique):
    # stomp-gateway --tcp-port P, then the one-liner from docs/tcp.md (what
    # `printf ... | nc localhost P` sends): every answer, then the end of the stream.
    queue = amqp.track_queue(f"testSTOMP-{unique}")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "--host", "127.0.0.1", "--port", str(free_port()),
        "--tcp-port", str(port), "--log-level", "warning",
        cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with asyncio.timeout(20):
            while True:
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    break
                except OSError:
                    await asyncio.sleep(0.1)
        writer.write(
            f"CONNECT\n\n\0SEND\ndestination:{queue}\nreceipt:1\n\nhello\0"
            "DISCONNECT\nreceipt:2\n\n\0".encode()
        )
        data = await read_until_eof(reader)
        writer.close()
        assert SESSION_RE.sub(b"session:S\n", data) == (
            TELNET_CONNECTED
            + b"RECEIPT\nreceipt-id:1\n\n\x00\n"
            + b"RECEIPT\nreceipt-id:2\n\n\x00\n"
        )
        assert (await amqp.get(queue)).body == b"hello"
    finally:
        proc.terminate()
        async with asyncio.timeout(15):
            await proc.wait()


async def test_tcp_port_taken_fails_start_and_releases_the_websocket_port():
    from gateway.server import Server

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = load_settings(host="127.0.0.1", port=0, tcp_port=taken.getsockname()[1])
        server = Server(settings)
        with pytest.raises(OSError):
            await server.start()
    assert not server.ready()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
