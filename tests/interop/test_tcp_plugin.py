"""STOMP over plain TCP: the real rabbitmq_stomp plugin (127.0.0.1:61613) and the
gateway's TCP port answer the same bytes.

Every scenario runs against both (``tcp_target``) and compares the whole byte stream the
server sent, after normalising what is random: the session id (also inside message ids)
and the ``server`` header. TCP-specific facts checked here (3.10.8, live):

* The trailing LF after every frame's NUL, heart-beats as bare ``\\n``.
* A framing error ends the connection with **no ERROR frame** (rabbitmq_stomp logs the
  parse error and closes; frames before it in the same packet are still handled).
* Unlike Web STOMP 3.10.8, the TCP plugin **does** deliver the DISCONNECT receipt and
  the ERROR before a fatal close (channel errors, duplicate subscription): so does the
  gateway, on both transports.
* Where they differ (a second CONNECT: the plugin just closes, the gateway says why
  first) the test name says so.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.tcpclient import StompTcp, connect_tcp

pytestmark = pytest.mark.interop

PLUGIN_HOST = "127.0.0.1"
PLUGIN_TCP_PORT = 61613
STOMP_PLUGIN = "rabbitmq_stomp"

SESSION_RE = re.compile(rb"session-[A-Za-z0-9_-]{22}")
SERVER_RE = re.compile(rb"\nserver:[^\n]*\n")


def normalise(data: bytes) -> bytes:
    return SERVER_RE.sub(b"\nserver:X\n", SESSION_RE.sub(b"S", data))


# -- targets ----------------------------------------------------------------------------------
def _stomp_answers(timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((PLUGIN_HOST, PLUGIN_TCP_PORT), timeout=timeout) as s:
            s.sendall(b"CONNECT\naccept-version:1.2\nlogin:guest\npasscode:guest\n\n\x00")
            return s.recv(10).startswith(b"CONNECTED")
    except OSError:
        return False


def _plugins(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("rabbitmq-plugins")
    assert exe is not None
    return subprocess.run(
        [exe, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="session")
def plugin_tcp_port() -> Iterator[int]:
    """61613 of the real rabbitmq_stomp plugin; enabled here (and disabled again at the
    end) if it is not answering yet."""
    enabled_here = False
    if not _stomp_answers():
        if shutil.which("rabbitmq-plugins") is None:
            pytest.skip("rabbitmq_stomp is not answering on 61613 and rabbitmq-plugins is absent")
        result = _plugins("enable", STOMP_PLUGIN)
        if result.returncode != 0:
            pytest.skip(f"rabbitmq-plugins enable {STOMP_PLUGIN} failed: {result.stderr}")
        enabled_here = True
        deadline = time.monotonic() + 60
        while not _stomp_answers():
            if time.monotonic() > deadline:
                pytest.fail("rabbitmq_stomp did not answer on 61613 within 60 s")
            time.sleep(0.5)
    try:
        yield PLUGIN_TCP_PORT
    finally:
        if enabled_here:
            _plugins("disable", STOMP_PLUGIN)


@dataclass(frozen=True)
class TcpTarget:
    name: str  # "plugin" or "gateway"
    port: int


@pytest.fixture(params=["plugin", "gateway"])
async def tcp_target(request: pytest.FixtureRequest, gateway_factory) -> TcpTarget:
    if request.param == "plugin":
        return TcpTarget("plugin", request.getfixturevalue("plugin_tcp_port"))
    gw = await gateway_factory(tcp_port=0)
    return TcpTarget("gateway", gw.server.tcp_port)


@pytest.fixture
async def client(tcp_target):
    """``c = await client()``: a StompTcp to the target, closed at teardown."""
    opened: list[StompTcp] = []

    async def open_client() -> StompTcp:
        c = await connect_tcp(PLUGIN_HOST, tcp_target.port)
        opened.append(c)
        return c

    yield open_client
    for c in opened:
        await c.close()


async def transcript(c: StompTcp, steps: list[tuple[bytes, int]], eof: bool) -> bytes:
    """Send each chunk and read that many frames; then (``eof``) wait for the end of the
    stream. Returns everything the server sent, normalised."""
    for data, frames in steps:
        await c.send_raw(data)
        if frames:
            await c.recv_frames(frames)
    if eof:
        await c.recv_close()
    return normalise(bytes(c.received))


def session_of(c: StompTcp) -> str:
    """The session id of the CONNECTED this client received."""
    found = SESSION_RE.search(bytes(c.received))
    assert found is not None, bytes(c.received)
    return found.group().decode()


def receipt(rid: str) -> bytes:
    return f"RECEIPT\nreceipt-id:{rid}\n\n\x00\n".encode()


def error(message: str, body: bytes) -> bytes:
    return (
        f"ERROR\nmessage:{message}\ncontent-type:text/plain\nversion:1.0,1.1,1.2\n"
        f"content-length:{len(body)}\n\n".encode()
        + body
        + b"\x00\n"
    )


CONNECTED_10 = b"CONNECTED\nserver:X\nsession:S\nheart-beat:0,0\nversion:1.0\n\n\x00\n"
CONNECTED_12 = b"CONNECTED\nserver:X\nsession:S\nheart-beat:0,0\nversion:1.2\n\n\x00\n"
CONNECT_12 = b"CONNECT\naccept-version:1.2\nlogin:guest\npasscode:guest\n\n\x00"


# -- the telnet session -----------------------------------------------------------------------
@pytest.mark.parametrize("eol", [b"\n", b"\r\n"], ids=["lf", "crlf"])
async def test_telnet_session(client, amqp, unique, eol):
    queue = amqp.track_queue(f"testSTOMP-{unique}")
    c = await client()

    def typed(text: str) -> bytes:
        return text.replace("\n", "\r\n" if eol == b"\r\n" else "\n").encode()

    steps = [
        (typed("CONNECT\n\n") + b"\x00" + eol, 1),
        (typed(f"SEND\ndestination:{queue}\nreceipt:123\n\nhello\n") + b"\x00" + eol, 1),
        (typed("DISCONNECT\nreceipt:123\n\n") + b"\x00" + eol, 0),
    ]
    got = await transcript(c, steps, eof=True)
    assert got == CONNECTED_10 + receipt("123") + receipt("123")
    assert (await amqp.get(queue)).body == typed("hello\n")


async def test_php_stomp_flow(client, amqp, unique):
    # What PHP's Stomp extension sends for the manual's example (captured live).
    queue = amqp.track_queue(f"foo-{unique}")
    c = await client()
    steps = [
        (b"CONNECT\n\n\x00", 1),
        (f"SEND\ndestination:/queue/{queue}\ncontent-length:3\n\nbar\x00".encode(), 0),
        (f"SUBSCRIBE\nack:client\ndestination:/queue/{queue}\n\n\x00".encode(), 1),
    ]
    got = await transcript(c, steps, eof=False)
    message = (
        f"MESSAGE\ndestination:/queue/{queue}\nmessage-id:Q_/queue/{queue}@@S@@1\n"
        "redelivered:false\ncontent-length:3\n\nbar\x00\n"
    ).encode()
    assert got == CONNECTED_10 + message
    ack = (
        f"ACK\ndestination:/queue/{queue}\nmessage-id:Q_/queue/{queue}@@{session_of(c)}@@1\n"
        "redelivered:false\n\n\x00DISCONNECT\n\n\x00"
    )
    await c.send_raw(ack)
    await c.recv_close()
    assert c.drained_frames == []
    assert await amqp.message_count(queue) == 0  # acked


# -- round trip and receipts ------------------------------------------------------------------
async def test_round_trip_client_individual(client, amqp, unique):
    queue = amqp.track_queue(unique)
    c = await client()
    steps = [
        (CONNECT_12, 1),
        (
            f"SUBSCRIBE\ndestination:/queue/{queue}\nid:s1\nack:client-individual\n"
            "receipt:sub\n\n\x00".encode(),
            1,
        ),
        (f"SEND\ndestination:/queue/{queue}\nx-h:a\\cb\n\nhi\x00".encode(), 1),
    ]
    got = await transcript(c, steps, eof=False)
    message = (
        f"MESSAGE\nsubscription:s1\ndestination:/queue/{queue}\nmessage-id:T_s1@@S@@1\n"
        "redelivered:false\nack:T_s1@@S@@1\nx-h:a\\cb\ncontent-length:2\n\nhi\x00\n"
    ).encode()
    assert got == CONNECTED_12 + receipt("sub") + message
    await c.send_raw(f"ACK\nid:T_s1@@{session_of(c)}@@1\nreceipt:a\n\n\x00DISCONNECT\n\n\x00")
    await c.recv_close()
    assert normalise(bytes(c.received)) == got + receipt("a")


@pytest.mark.parametrize("with_receipt", [True, False])
async def test_disconnect(client, with_receipt):
    c = await client()
    frame = b"DISCONNECT\nreceipt:bye\n\n\x00" if with_receipt else b"DISCONNECT\n\n\x00"
    got = await transcript(c, [(CONNECT_12, 1), (frame, 0)], eof=True)
    assert got == CONNECTED_12 + (receipt("bye") if with_receipt else b"")


# -- errors -----------------------------------------------------------------------------------
async def test_errors_that_keep_the_connection(client, unique):
    c = await client()
    steps = [
        (b"SEND\ndestination:/queue/x\n\nx\x00", 1),
        (b"CONNECT\nlogin:guest\npasscode:wrong\n\n\x00", 1),
        (CONNECT_12, 1),
        (b"SEND\ndestination:/foo/bar\n\n\x00", 1),
        (b"FOO\n\n\x00", 1),
        (b"UNSUBSCRIBE\nid:nope\n\n\x00", 1),
    ]
    got = await transcript(c, steps, eof=False)
    assert got == (
        error("Illegal command", b"You must log in using CONNECT first")
        + error("Bad CONNECT", b"Access refused for user 'guest'\n")
        + CONNECTED_12
        + error(
            "Unknown destination",
            b"'/foo/bar' is not a valid destination.\nValid destination types are: "
            b"/temp-queue, /exchange, /topic, /queue, /amq/queue, /reply-queue/.\n",
        )
        + error("Bad command", b'Could not interpret command "FOO"\n')
        + error(
            "No subscription found",
            b"UNSUBSCRIBE must refer to an existing subscription.\n"
            b"Subscription to \"id='nope'\" not found.\n",
        )
    )
    assert await c.is_open(0.2)


async def test_channel_error_sends_error_then_closes(client, unique):
    c = await client()
    send = f"SEND\ndestination:/exchange/{unique}-missing/k\n\nx\x00".encode()
    got = await transcript(c, [(CONNECT_12, 1), (send, 0)], eof=True)
    body = f"NOT_FOUND - no exchange '{unique}-missing' in vhost '/'".encode()
    assert got == CONNECTED_12 + error("not_found", body)


async def test_duplicate_subscription_sends_error_then_closes(client, amqp, unique):
    queue = amqp.track_queue(unique)
    c = await client()
    sub = f"SUBSCRIBE\ndestination:/queue/{queue}\nid:1\n\n\x00".encode()
    got = await transcript(c, [(CONNECT_12, 1), (sub, 0), (sub, 0)], eof=True)
    assert got == CONNECTED_12 + error(
        "Duplicated subscription identifier",
        b"A subscription identified by 'T_1' already exists.",
    )


@pytest.mark.parametrize(
    "bad",
    [
        b"SEND\ndestination:/queue/x\nfoo\n\nx\x00",
        b"SEND\ndestination:/queue/x\nfoo:a\\tb\n\nx\x00",
        b"SEND\ndestination:/queue/x\nfoo:a\rob\n\nx\x00",
        b"SEND\ndestination:/queue/x\ncontent-length:1\n\nxy\x00",
    ],
    ids=["header-without-colon", "bad-escape", "bare-cr", "content-length-mismatch"],
)
async def test_parse_error_closes_without_error_frame(client, bad):
    # Same packet as the CONNECT: the CONNECT is still answered, then the stream ends.
    c = await client()
    got = await transcript(c, [(CONNECT_12 + bad, 0)], eof=True)
    assert got == CONNECTED_12


async def test_parse_error_before_connect_closes(client):
    c = await client()
    got = await transcript(c, [(b"CONNECT\nlogin:guest\npasscode:gu\\est\n\n\x00", 0)], eof=True)
    assert got == b""


async def test_second_connect__error_in_gateway(client, tcp_target):
    # 3.10.8 closes the connection with no word; the gateway says why, then closes.
    c = await client()
    got = await transcript(c, [(CONNECT_12, 1), (CONNECT_12, 0)], eof=True)
    if tcp_target.name == "plugin":
        assert got == CONNECTED_12
    else:
        assert got == CONNECTED_12 + error("Bad CONNECT", b"Already connected")


# -- heart-beats ------------------------------------------------------------------------------
async def test_server_heart_beats_are_bare_lf(client):
    c = await client()
    await c.send_raw(b"CONNECT\naccept-version:1.2\nheart-beat:0,1000\n\n\x00")
    assert (await c.recv_frame()).header("heart-beat") == "1000,0"
    await c.expect_no_frame(1.3)
    assert c.heartbeats_received >= 1
    tail = bytes(c.received).split(b"\x00\n", 1)[1]
    assert tail == b"\n" * c.heartbeats_received


async def test_client_silence_ends_the_stream(client):
    # heart-beat:1000,0: no beat from the client -> closed after 2-3 s, no ERROR frame.
    c = await client()
    await c.send_raw(b"CONNECT\naccept-version:1.2\nheart-beat:1000,0\n\n\x00")
    assert (await c.recv_frame()).header("heart-beat") == "0,1000"
    started = time.monotonic()
    await c.recv_close(timeout=5)
    assert c.drained_frames == []
    assert 1.5 < time.monotonic() - started < 4.0


# -- sanity: the client sees an EOF as a close ------------------------------------------------
async def test_is_open_after_connect(client):
    c = await client()
    await c.send_raw(CONNECT_12)
    await c.recv_frame()
    assert await asyncio.wait_for(c.is_open(0.2), 1)
