"""The gateway's session behaviours over both transports: WebSocket and plain TCP.

Each scenario runs twice (``transport`` = ``ws`` / ``tcp``) against an in-process
gateway with its TCP listener on (port 0), through clients with the same API
(``tests/support/wsclient.py``, ``tests/support/tcpclient.py``). What differs is only
how a connection ends: WebSocket closes with a code (1000 "STOMP died", 1007 for a
framing error), TCP just ends the stream (EOF; ``recv_close`` gives ``(None, "")``),
which is what rabbitmq_stomp does (tests/interop/test_tcp_plugin.py checks that).
"""

# polling the broker with short sleeps is bounded by asyncio.timeout
# ruff: noqa: ASYNC110

from __future__ import annotations

import asyncio

import pytest

from tests.interop.helpers import assert_connected, assert_error, assert_receipt

ILLEGAL_BODY = b"You must log in using CONNECT first"


def close_code(transport: str, ws_code: int) -> int | None:
    """What ``recv_close`` returns as the code: TCP has none."""
    return None if transport == "tcp" else ws_code


# -- CONNECT ----------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["CONNECT", "STOMP"])
@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
async def test_connect_each_version(gateway_client, command, version):
    c = await gateway_client(connect=False)
    frame = await c.connect_stomp(version=version, command=command)
    assert_connected(frame, "gateway", version=version)
    assert c.raw_messages[-1] == frame.raw + b"\n"  # trailing LF after the NUL


async def test_version_mismatch_then_good_connect(gateway_client):
    c = await gateway_client(connect=False)
    frame = await c.connect_stomp(version="100.1", expect="ERROR")
    assert_error(frame, "Version mismatch", b"Supported versions are 1.0,1.1,1.2\n")
    assert await c.is_open(0.1)
    assert_connected(await c.connect_stomp(version="1.2"), "gateway")


@pytest.mark.parametrize(
    ("client", "server"), [("10000,20000", "20000,10000"), ("500,1500", "1000,1000")]
)
async def test_heart_beat_negotiation(gateway_client, client, server):
    c = await gateway_client(connect=False)
    assert_connected(await c.connect_stomp(heart_beat=client), "gateway", heart_beat=server)


async def test_heart_beat_malformed(gateway_client):
    c = await gateway_client(connect=False)
    frame = await c.connect_stomp(heart_beat="abc", expect="ERROR")
    assert_error(frame, "Processing error", b"Processing error")
    assert await c.is_open(0.1)


async def test_bad_password_then_retry(gateway_client):
    c = await gateway_client(connect=False)
    frame = await c.connect_stomp(passcode="wrong", expect="ERROR")
    assert_error(frame, "Bad CONNECT", b"Access refused for user 'guest'\n")
    await c.send_frame("SUBSCRIBE", {"destination": "/queue/x", "id": "1"})
    assert_error(await c.recv_frame(), "Illegal command", ILLEGAL_BODY)
    assert_connected(await c.connect_stomp(), "gateway")


async def test_unknown_vhost(gateway_client):
    c = await gateway_client(connect=False)
    frame = await c.connect_stomp(host="nope", expect="ERROR")
    assert_error(frame, "Bad CONNECT", b"Virtual host 'nope' access denied")
    assert await c.is_open(0.1)


@pytest.mark.parametrize("command", ["SEND", "SUBSCRIBE", "DISCONNECT", "FOO"])
async def test_frame_before_connect_is_illegal(gateway_client, command):
    c = await gateway_client(connect=False)
    await c.send_frame(command, {"destination": "/queue/x", "id": "1", "receipt": "r"})
    assert_error(await c.recv_frame(), "Illegal command", ILLEGAL_BODY)
    assert await c.is_open(0.1)
    assert_connected(await c.connect_stomp(), "gateway")


async def test_bad_command_after_connect(gateway_client):
    c = await gateway_client()
    await c.send_frame("WRONGCOMMAND", {})
    frame = await c.recv_frame()
    assert_error(frame, "Bad command", b'Could not interpret command "WRONGCOMMAND"\n')
    assert await c.is_open(0.1)


# -- heart-beats ------------------------------------------------------------------------------
async def test_server_heart_beats_arrive(gateway_client):
    # heart-beat:0,1000 -> the server sends EOLs; on TCP they are bare "\n" in the stream.
    c = await gateway_client(heart_beat="0,1000")
    assert c.connected.header("heart-beat") == "1000,0"
    await c.expect_no_frame(1.3)
    assert c.heartbeats_received >= 2
    assert b"\n" in c.raw_messages


async def test_client_silence_closes_without_error(gateway_client, transport):
    # heart-beat:1000,0 -> the server expects a beat a second; two silent checks in a row
    # end the session with no ERROR frame (RabbitMQ).
    c = await gateway_client(heart_beat="1000,0")
    assert c.connected.header("heart-beat") == "0,1000"
    code, _ = await c.recv_close(timeout=4)
    assert code == close_code(transport, 1000)
    assert c.drained_frames == []


# -- destinations -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["queue", "bare", "topic", "exchange", "amq-queue"])
async def test_round_trip_each_destination(gateway_client, amqp, unique, kind):
    destination = {
        "queue": f"/queue/{unique}",
        "bare": unique,
        "topic": f"/topic/{unique}.k",
        "exchange": f"/exchange/amq.direct/{unique}",
        "amq-queue": f"/amq/queue/{unique}",
    }[kind]
    if kind == "amq-queue":
        await amqp.declare_queue(unique, auto_delete=True)
    else:
        amqp.track_queue(unique)
    c = await gateway_client()
    await c.subscribe(destination, id="s1")
    await c.send_frame(
        "SEND", {"destination": destination, "x-custom": "v:1", "receipt": "r1"}, "hi over the wire"
    )
    # The MESSAGE may overtake the RECEIPT (the receipt waits for the confirm).
    got = await c.recv_frame()
    if got.command == "RECEIPT":
        assert_receipt(got, "r1")
        got = await c.recv_frame()
    else:
        assert_receipt(await c.recv_frame(), "r1")
    assert got.command == "MESSAGE"
    assert got.body == b"hi over the wire"
    assert got.header("subscription") == "s1"
    assert got.header("x-custom") == "v:1"
    assert got.header("message-id") == f"T_s1@@{c.session}@@1"
    # A MESSAGE names where it was published: /amq/queue/q and q are /queue/q.
    expected_dest = f"/queue/{unique}" if kind in ("bare", "amq-queue") else destination
    assert got.header("destination") == expected_dest


async def test_temp_queue_reply(gateway_client, amqp, unique):
    amqp.track_queue(unique)
    requester = await gateway_client()
    responder = await gateway_client()
    await responder.subscribe(f"/queue/{unique}", id="rq")
    await requester.send(f"/queue/{unique}", "question", {"reply-to": "/temp-queue/t"})
    request = await responder.recv_frame()
    reply_to = request.header("reply-to")
    assert reply_to is not None and reply_to.startswith("/reply-queue/amq.gen-")
    await responder.send(reply_to, "answer")
    reply = await requester.recv_frame()
    assert reply.command == "MESSAGE"
    assert reply.body == b"answer"
    assert reply.header("subscription") == "/temp-queue/t"


# -- receipts ---------------------------------------------------------------------------------
async def test_receipts_exact_bytes(gateway_client, unique):
    c = await gateway_client()
    await c.send_frame("SUBSCRIBE", {"destination": f"/topic/{unique}", "id": "s", "receipt": "a"})
    assert_receipt(await c.recv_frame(), "a")
    assert c.raw_messages[-1] == b"RECEIPT\nreceipt-id:a\n\n\x00\n"
    await c.send_frame("UNSUBSCRIBE", {"id": "s", "receipt": "b:c"})
    assert_receipt(await c.recv_frame(), "b:c")
    assert c.raw_messages[-1] == b"RECEIPT\nreceipt-id:b\\cc\n\n\x00\n"


async def test_disconnect_receipt_then_close(gateway_client, transport):
    c = await gateway_client()
    await c.send_frame("DISCONNECT", {"receipt": "bye"})
    code, _ = await c.recv_close()
    assert code == close_code(transport, 1000)
    assert len(c.drained_frames) == 1
    assert_receipt(c.drained_frames[0], "bye")


async def test_pipelined_sends_keep_order(gateway_client, amqp, unique):
    # Many frames in one write (TCP) / message (WS): handled one by one, in order.
    amqp.track_queue(unique)
    c = await gateway_client()
    frames = b"".join(f"SEND\ndestination:/queue/{unique}\n\nm{i}\x00".encode() for i in range(50))
    await c.send_raw(frames + f"SEND\ndestination:/queue/{unique}\nreceipt:end\n\nm50\x00".encode())
    assert_receipt(await c.recv_frame(), "end")
    bodies = [(await amqp.get(unique)).body for _ in range(51)]
    assert bodies == [f"m{i}".encode() for i in range(51)]


async def test_frame_split_into_pieces(gateway_client, unique):
    c = await gateway_client()
    await c.subscribe(f"/topic/{unique}", id="s")
    data = f"SEND\ndestination:/topic/{unique}\nreceipt:r\n\nsplit body\x00".encode()
    await c.send_split(data, 7)
    frames = [await c.recv_frame(), await c.recv_frame()]
    assert sorted(f.command for f in frames) == ["MESSAGE", "RECEIPT"]
    assert next(f for f in frames if f.command == "MESSAGE").body == b"split body"


# -- errors -----------------------------------------------------------------------------------
async def test_non_fatal_errors_keep_the_session(gateway_client, unique):
    c = await gateway_client()
    await c.send_frame("SEND", {"destination": "/foo/bar"})
    frame = await c.recv_frame()
    assert frame.command == "ERROR"
    assert frame.header("message") == "Unknown destination"
    await c.send_frame("SEND", {})
    assert_error(
        await c.recv_frame(),
        "Missing destination",
        b"\"SEND\" must include a 'destination' header\n",
    )
    await c.subscribe(f"/topic/{unique}", id="s")
    await c.send(f"/topic/{unique}", "still here")
    assert (await c.recv_frame()).body == b"still here"


async def test_channel_error_sends_error_then_closes(gateway_client, transport, unique):
    c = await gateway_client()
    await c.send_frame("SEND", {"destination": f"/exchange/{unique}-missing/k"}, "x")
    code, _ = await c.recv_close()
    assert code == close_code(transport, 1000)
    assert len(c.drained_frames) == 1
    body = f"NOT_FOUND - no exchange '{unique}-missing' in vhost '/'".encode()
    assert_error(c.drained_frames[0], "not_found", body)


@pytest.mark.parametrize(
    "bad",
    [
        b"SEND\ndestination:/queue/x\nfoo\n\nx\x00",
        b"SEND\ndestination:/queue/x\nfoo:a\\tb\n\nx\x00",
        b"SEND\ndestination:/queue/x\nfoo:a\rob\n\nx\x00",
    ],
    ids=["header-without-colon", "bad-escape", "bare-cr"],
)
async def test_parse_error_closes_without_error_frame(gateway_client, transport, bad):
    # A CONNECT in the same write is still answered; then the connection ends with no
    # ERROR frame (WebSocket: 1007 + reason; TCP: EOF, as rabbitmq_stomp).
    c = await gateway_client(connect=False)
    await c.send_raw(b"CONNECT\naccept-version:1.2\nlogin:guest\npasscode:guest\n\n\x00" + bad)
    code, _ = await c.recv_close()
    assert code == close_code(transport, 1007)
    assert [f.command for f in c.drained_frames] == ["CONNECTED"]


async def test_duplicate_subscription_is_fatal(gateway_client, transport, amqp, unique):
    amqp.track_queue(unique)
    c = await gateway_client()
    await c.subscribe(f"/queue/{unique}", id="1")
    await c.send_frame("SUBSCRIBE", {"destination": f"/queue/{unique}", "id": "1"})
    code, _ = await c.recv_close()
    assert code == close_code(transport, 1000)
    assert len(c.drained_frames) == 1
    assert_error(
        c.drained_frames[0],
        "Duplicated subscription identifier",
        b"A subscription identified by 'T_1' already exists.",
    )


# -- timeouts and limits ----------------------------------------------------------------------
async def test_login_timeout(gateway_factory, gateway_client, transport):
    gw = await gateway_factory(tcp_port=0, login_timeout=0.3)
    idle = await gateway_client(gateway=gw, connect=False)
    logged_in = await gateway_client(gateway=gw)
    code, _ = await idle.recv_close(timeout=3)
    assert code == close_code(transport, 1000)
    assert idle.drained_frames == []
    assert await logged_in.is_open(0.2)


async def test_pre_auth_frame_size_limit(gateway_factory, gateway_client, transport):
    gw = await gateway_factory(tcp_port=0, max_frame_size_unauthenticated=1024)
    c = await gateway_client(gateway=gw, connect=False)
    await c.send_frame("CONNECT", {"login": "guest", "passcode": "guest", "x-pad": "p" * 2000})
    code, _ = await c.recv_close()
    assert code == close_code(transport, 1007)
    assert c.drained_frames == []
    # After login the frame size limit is max_frame_size.
    ok = await gateway_client(gateway=gw)
    await ok.send_frame("SEND", {"destination": "/topic/x", "receipt": "big"}, "b" * 4000)
    assert_receipt(await ok.recv_frame(), "big")


# -- acks and transactions --------------------------------------------------------------------
async def test_client_individual_ack_and_nack(gateway_client, amqp, unique):
    amqp.track_queue(unique)
    c = await gateway_client()
    await c.send(f"/queue/{unique}", "one", receipt="p1")
    await c.send(f"/queue/{unique}", "two", receipt="p2")
    await c.subscribe(f"/queue/{unique}", id="s", extra={"ack": "client-individual"})
    first, second = await c.recv_frames(2)
    assert (first.body, second.body) == (b"one", b"two")
    assert first.header("ack") == first.header("message-id")  # STOMP 1.2
    await c.send_frame("ACK", {"id": first.header("ack"), "receipt": "a1"})
    assert_receipt(await c.recv_frame(), "a1")
    await c.send_frame("NACK", {"id": second.header("ack"), "requeue": "false", "receipt": "n1"})
    assert_receipt(await c.recv_frame(), "n1")
    await c.send_frame("UNSUBSCRIBE", {"id": "s", "receipt": "u"})
    assert_receipt(await c.recv_frame(), "u")
    assert await amqp.message_count(unique) == 0


async def test_transaction_commit_and_abort(gateway_client, amqp, unique):
    amqp.track_queue(unique)
    c = await gateway_client()
    await c.send(f"/queue/{unique}", "declare", receipt="d")
    await amqp.get(unique)
    await c.send_frame("BEGIN", {"transaction": "tx1", "receipt": "b1"})
    assert_receipt(await c.recv_frame(), "b1")
    await c.send_frame("SEND", {"destination": f"/queue/{unique}", "transaction": "tx1"}, "a")
    await c.send_frame("SEND", {"destination": f"/queue/{unique}", "transaction": "tx1"}, "b")
    await c.send_frame("BEGIN", {"transaction": "tx2"})
    await c.send_frame("SEND", {"destination": f"/queue/{unique}", "transaction": "tx2"}, "no")
    await c.send_frame("ABORT", {"transaction": "tx2", "receipt": "ab"})
    assert_receipt(await c.recv_frame(), "ab")
    assert await amqp.message_count(unique) == 0
    await c.send_frame("COMMIT", {"transaction": "tx1", "receipt": "c1"})
    assert_receipt(await c.recv_frame(), "c1")
    assert [(await amqp.get(unique)).body for _ in range(2)] == [b"a", b"b"]
    await amqp.expect_empty(unique, 0.1)
    await c.send_frame("COMMIT", {"transaction": "tx2"})
    assert_error(
        await c.recv_frame(), "Bad transaction", b'Invalid transaction identifier: "tx2"\n'
    )


# -- server side ------------------------------------------------------------------------------
async def test_sessions_registry_and_shutdown(gateway_factory, gateway_client, transport):
    gw = await gateway_factory(tcp_port=0)
    c = await gateway_client(gateway=gw)
    assert len(gw.server.sessions) == 1
    stopping = asyncio.ensure_future(gw.server.stop())
    code, _ = await c.recv_close()
    async with asyncio.timeout(5):
        await stopping
    assert code == close_code(transport, 1001)
    assert len(c.drained_frames) == 1
    assert_error(c.drained_frames[0], "server shutting down", b"The gateway is shutting down\n")
    async with asyncio.timeout(5):
        while gw.server.sessions:
            await asyncio.sleep(0.01)
