"""CONNECT / STOMP, version and heart-beat negotiation, authentication, frames before
CONNECT, unknown commands (webstomp.md 2.4-2.8, 2.13)."""

from __future__ import annotations

import pytest

from tests.interop.helpers import assert_connected, assert_error

pytestmark = pytest.mark.interop

VERSION_MISMATCH_BODY = b"Supported versions are 1.0,1.1,1.2\n"
ILLEGAL_BODY = b"You must log in using CONNECT first"


@pytest.mark.parametrize("command", ["CONNECT", "STOMP"])
@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
async def test_connect_each_version(target, stomp, command, version):
    ws = await stomp(target.url, connect=False)
    frame = await ws.connect_stomp(version=version, command=command)
    # 3.10.8 order: server, session, heart-beat, version
    assert_connected(frame, target.name, version=version)
    # CONNECTED is one WS message, with the trailing LF after the NUL.
    assert ws.raw_messages[-1] == frame.raw + b"\n"


@pytest.mark.parametrize(
    ("accept_version", "negotiated"),
    [("1.0,1.1", "1.1"), (None, "1.0"), ("1.1,1.0", "1.1"), ("1.2,1.0", "1.2"), ("1.1,2.0", "1.1")],
)
async def test_accept_version_negotiation(target, stomp, accept_version, negotiated):
    ws = await stomp(target.url, connect=False)
    frame = await ws.connect_stomp(version=accept_version)
    assert_connected(frame, target.name, version=negotiated)


async def test_version_mismatch_then_good_connect(target, stomp):
    ws = await stomp(target.url, connect=False)
    frame = await ws.connect_stomp(version="100.1", expect="ERROR")
    assert_error(frame, "Version mismatch", VERSION_MISMATCH_BODY)
    assert await ws.is_open()
    frame = await ws.connect_stomp(version="1.2")
    assert_connected(frame, target.name)


@pytest.mark.parametrize(
    ("client", "server"),
    [
        ("10000,20000", "20000,10000"),
        ("500,1500", "1000,1000"),
        ("0,2500", "2000,0"),
        ("0,0", "0,0"),
        ("999,1", "1000,1000"),
    ],
)
async def test_heart_beat_negotiation(target, stomp, client, server):
    ws = await stomp(target.url, connect=False)
    frame = await ws.connect_stomp(heart_beat=client)
    assert_connected(frame, target.name, heart_beat=server)


@pytest.mark.parametrize("heart_beat", ["abc", "5000", "1,2,3"])
async def test_heart_beat_malformed(target, stomp, heart_beat):
    ws = await stomp(target.url, connect=False)
    frame = await ws.connect_stomp(heart_beat=heart_beat, expect="ERROR")
    assert_error(frame, "Processing error", b"Processing error")
    assert await ws.is_open()


async def test_server_heart_beats_arrive(target, stomp):
    # heart-beat:0,1000 -> the server sends a beat ("\n" in its own WS message) about
    # every second, the first after half an interval.
    ws = await stomp(target.url, heart_beat="0,1000")
    assert ws.connected.header("heart-beat") == "1000,0"
    await ws.expect_no_frame(2.4)
    assert ws.heartbeats_received >= 2
    assert b"\n" in ws.raw_messages


async def test_bad_password_then_retry(target, stomp):
    ws = await stomp(target.url, connect=False)
    frame = await ws.connect_stomp(passcode="wrong", expect="ERROR")
    assert_error(frame, "Bad CONNECT", b"Access refused for user 'guest'\n")
    await ws.expect_no_frame(0.3)
    assert await ws.is_open()
    # still not logged in
    await ws.send_frame("SUBSCRIBE", {"destination": "/queue/x", "id": "1"})
    assert_error(await ws.recv_frame(), "Illegal command", ILLEGAL_BODY)
    frame = await ws.connect_stomp()
    assert_connected(frame, target.name)


async def test_unknown_user(target, stomp, unique):
    ws = await stomp(target.url, connect=False)
    frame = await ws.connect_stomp(login=unique, passcode="x", expect="ERROR")
    assert_error(frame, "Bad CONNECT", f"Access refused for user '{unique}'\n".encode())
    assert await ws.is_open()


async def test_unknown_vhost(target, stomp):
    ws = await stomp(target.url, connect=False)
    frame = await ws.connect_stomp(host="nope", expect="ERROR")
    # no trailing LF here, unlike "Access refused"
    assert_error(frame, "Bad CONNECT", b"Virtual host 'nope' access denied")
    assert await ws.is_open()
    frame = await ws.connect_stomp(host="/")
    assert_connected(frame, target.name)


async def test_connect_without_credentials_is_default_user(target, stomp):
    ws = await stomp(target.url, connect=False)
    frame = await ws.connect_stomp(login=None, passcode=None)
    assert_connected(frame, target.name)


async def test_login_without_passcode_uses_default_passcode(target, stomp):
    ws = await stomp(target.url, connect=False)
    frame = await ws.connect_stomp(login="guest", passcode=None)
    assert_connected(frame, target.name)


async def test_connect_receipt_is_ignored(target, stomp):
    ws = await stomp(target.url, connect=False)
    frame = await ws.connect_stomp(extra={"receipt": "r-connect"})
    assert_connected(frame, target.name)
    await ws.expect_no_frame(0.3)


async def test_passcode_escape_is_decoded_even_in_connect(target, stomp):
    # 3.10.8 decodes escapes in CONNECT too: "gu\cest" is "gu:est", a wrong password.
    ws = await stomp(target.url, connect=False)
    await ws.send_raw(b"CONNECT\naccept-version:1.2\nlogin:guest\npasscode:gu\\cest\n\n\x00")
    assert_error(await ws.recv_frame(), "Bad CONNECT", b"Access refused for user 'guest'\n")


@pytest.mark.parametrize(
    "command", ["SEND", "SUBSCRIBE", "UNSUBSCRIBE", "ACK", "BEGIN", "DISCONNECT", "connect", "FOO"]
)
async def test_frame_before_connect_is_illegal(target, stomp, command):
    ws = await stomp(target.url, connect=False)
    await ws.send_frame(command, {"destination": "/queue/x", "id": "1", "receipt": "r"})
    assert_error(await ws.recv_frame(), "Illegal command", ILLEGAL_BODY)
    await ws.expect_no_frame(0.2)
    assert await ws.is_open()
    assert_connected(await ws.connect_stomp(), target.name)


@pytest.mark.parametrize("command", ["connect", "WRONGCOMMAND", "CONNECTED", "MESSAGE", "ERROR"])
async def test_bad_command_after_connect(target, stomp, command):
    ws = await stomp(target.url)
    await ws.send_frame(command, {})
    body = f'Could not interpret command "{command}"\n'.encode()
    assert_error(await ws.recv_frame(), "Bad command", body)
    assert await ws.is_open()
    # the session still works
    await ws.send_frame("UNSUBSCRIBE", {"id": "nope", "receipt": "r1"})
    frame = await ws.recv_frame()
    assert frame.command == "ERROR"
    assert frame.header("message") == "No subscription found"
