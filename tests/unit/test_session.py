"""The session state machine against an in-memory broker (no RabbitMQ here)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.broker.base import ChannelClosed, Properties
from gateway.errors import ProcessingError
from gateway.session import (
    Session,
    State,
    is_loopback,
    negotiate_version,
    parse_heart_beat,
)
from gateway.settings import load_settings
from gateway.stomp import Frame, FrameParser, encode_frame

from .fake_broker import FakeBroker


class FakeTransport:
    def __init__(self) -> None:
        self.out = bytearray()
        self.closed: tuple[int, str] | None = None
        self.parser = FrameParser()
        self.heartbeats = 0

    def send_frame(self, data: bytes) -> None:
        if data == b"\n":
            self.heartbeats += 1
        self.out += data

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def frames(self) -> list[Frame]:
        data, self.out = bytes(self.out), bytearray()
        return self.parser.feed(data)


def frame(command: str, body: bytes = b"", **headers: str) -> bytes:
    return encode_frame(command, [(k.replace("_", "-"), v) for k, v in headers.items()], body)


@pytest.fixture
def broker() -> FakeBroker:
    return FakeBroker()


@pytest.fixture
async def session(broker: FakeBroker) -> tuple[Session, FakeTransport]:
    transport = FakeTransport()
    settings = load_settings(login_timeout=0)
    return Session(
        settings, broker, transport, client_host="127.0.0.1", peer="127.0.0.1:1"
    ), transport


async def connected(session: tuple[Session, FakeTransport], version: str = "1.2") -> None:
    s, t = session
    await s.data_received(frame("CONNECT", accept_version=version, login="guest", passcode="guest"))
    [f] = t.frames()
    assert f.command == "CONNECTED"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "1.0"),
        ("1.0,1.1", "1.1"),
        ("1.2,1.0", "1.2"),
        ("1.1", "1.1"),
        ("100.1", None),
        ("", None),
    ],
)
def test_negotiate_version(accept: str | None, expected: str | None) -> None:
    assert negotiate_version(accept) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10000,20000", (20, 10)),
        ("500,1500", (1, 1)),
        ("0,2500", (2, 0)),
        (None, (0, 0)),
        ("0,0", (0, 0)),
    ],
)
def test_heart_beat_negotiation(value: str | None, expected: tuple[int, int]) -> None:
    assert parse_heart_beat(value) == expected


@pytest.mark.parametrize("value", ["abc", "1", "1,2,3", "-1,0", "a,1"])
def test_malformed_heart_beat(value: str) -> None:
    with pytest.raises(ProcessingError):
        parse_heart_beat(value)


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("127.8.9.1")
    assert not is_loopback("10.1.2.3") and not is_loopback("192.168.0.1")


async def test_frames_before_connect_get_illegal_command(
    session: tuple[Session, FakeTransport],
) -> None:
    s, t = session
    await s.data_received(frame("SEND", b"hi", destination="/queue/a"))
    [err] = t.frames()
    assert err.command == "ERROR"
    assert err.headers["message"] == "Illegal command"
    assert err.body == b"You must log in using CONNECT first"
    assert s.state is State.AWAITING_CONNECT and t.closed is None


async def test_connect_sends_connected_with_negotiated_headers(
    session: tuple[Session, FakeTransport], broker: FakeBroker
) -> None:
    s, t = session
    await s.data_received(
        frame("CONNECT", accept_version="1.0,1.1,1.2", heart_beat="0,0", host="/")
    )
    [f] = t.frames()
    assert f.command == "CONNECTED"
    assert list(f.headers) == ["server", "session", "heart-beat", "version"]
    assert f.headers["version"] == "1.2" and f.headers["heart-beat"] == "0,0"
    assert f.headers["session"] == s.id and s.id.startswith("session-") and len(s.id) == 30
    assert broker.opened[0].login == "guest" and broker.opened[0].vhost == "/"


async def test_bad_password_keeps_socket_open_and_retry_works(
    session: tuple[Session, FakeTransport],
) -> None:
    s, t = session
    await s.data_received(frame("CONNECT", login="guest", passcode="nope"))
    [err] = t.frames()
    assert (err.headers["message"], err.body) == (
        "Bad CONNECT",
        b"Access refused for user 'guest'\n",
    )
    assert err.headers["version"] == "1.0,1.1,1.2" and err.headers["content-type"] == "text/plain"
    assert b"nope" not in err.body
    await connected(session)


async def test_unknown_vhost(session: tuple[Session, FakeTransport]) -> None:
    s, t = session
    await s.data_received(frame("CONNECT", host="nope"))
    [err] = t.frames()
    assert err.body == b"Virtual host 'nope' access denied"


async def test_guest_refused_from_non_loopback_address(broker: FakeBroker) -> None:
    t = FakeTransport()
    s = Session(
        load_settings(login_timeout=0), broker, t, client_host="10.0.0.7", peer="10.0.0.7:5"
    )
    await s.data_received(frame("CONNECT"))
    [err] = t.frames()
    assert (err.headers["message"], err.body) == ("Bad CONNECT", b"non-loopback access denied")
    assert broker.opened == []


async def test_send_receipt_waits_for_confirm(
    session: tuple[Session, FakeTransport], broker: FakeBroker
) -> None:
    await connected(session)
    s, t = session
    broker.auto_confirm = False
    await s.data_received(frame("SEND", b"hello", destination="/queue/a", receipt="r1"))
    assert t.frames() == []
    channel = broker.channels[0]
    assert [c[0] for c in channel.calls] == ["declare_nowait", "publish"]
    channel.confirms[0].set_result(None)
    await asyncio.sleep(0)
    [receipt] = t.frames()
    assert receipt == Frame("RECEIPT", {"receipt-id": "r1"}, b"")


async def test_broker_nack_becomes_error(
    session: tuple[Session, FakeTransport], broker: FakeBroker
) -> None:
    await connected(session)
    s, t = session
    broker.auto_confirm = False
    await s.data_received(frame("SEND", b"x", destination="/queue/a", receipt="r9"))
    from gateway.broker.base import PublishNacked

    broker.channels[0].confirms[0].set_exception(PublishNacked())
    await asyncio.sleep(0)
    [err] = t.frames()
    assert err.headers["message"] == "Message rejected" and err.headers["receipt-id"] == "r9"


async def test_subscribe_delivers_message_with_plugin_headers(
    session: tuple[Session, FakeTransport], broker: FakeBroker
) -> None:
    await connected(session)
    s, t = session
    await s.data_received(
        frame("SUBSCRIBE", destination="/queue/a", id="s1", ack="client", receipt="r")
    )
    assert t.frames() == [Frame("RECEIPT", {"receipt-id": "r"}, b"")]
    channel = broker.channels[0]
    assert ("consume", "a", "T_s1", False, None) in channel.calls
    channel.deliver(
        "T_s1", 7, b"body", routing_key="a", properties=Properties(content_type="text/plain")
    )
    [msg] = t.frames()
    assert msg.command == "MESSAGE"
    assert list(msg.headers.items()) == [
        ("subscription", "s1"),
        ("destination", "/queue/a"),
        ("message-id", f"T_s1@@{s.id}@@7"),
        ("redelivered", "false"),
        ("ack", f"T_s1@@{s.id}@@7"),
        ("content-type", "text/plain"),
        ("content-length", "4"),
    ]
    assert msg.body == b"body"


async def test_duplicate_subscription_is_fatal_and_error_comes_first(
    session: tuple[Session, FakeTransport],
) -> None:
    await connected(session)
    s, t = session
    await s.data_received(frame("SUBSCRIBE", destination="/queue/a", id="1"))
    await s.data_received(frame("SUBSCRIBE", destination="/queue/b", id="1"))
    await s.wait_closed()
    [err] = t.frames()
    assert err.headers["message"] == "Duplicated subscription identifier"
    assert err.body == b"A subscription identified by 'T_1' already exists."
    await asyncio.sleep(0)
    assert t.closed == (1000, "STOMP died")


async def test_channel_error_ends_session_with_error(
    session: tuple[Session, FakeTransport], broker: FakeBroker
) -> None:
    await connected(session)
    s, t = session
    broker.missing_exchanges.add("nope")
    await s.data_received(frame("SUBSCRIBE", destination="/exchange/nope/k", id="1"))
    await s.wait_closed()
    [err] = t.frames()
    assert err.headers["message"] == "not_found"
    assert err.body == b"NOT_FOUND - no exchange 'nope' in vhost '/'"
    assert broker.channels[0].closed


async def test_async_channel_close_is_reported(
    session: tuple[Session, FakeTransport], broker: FakeBroker
) -> None:
    await connected(session)
    s, t = session
    channel = broker.channels[0]
    assert channel.on_close is not None
    channel.on_close(ChannelClosed(406, "PRECONDITION_FAILED - inequivalent arg 'durable'"))
    await s.wait_closed()
    [err] = t.frames()
    assert err.headers["message"] == "precondition_failed"


async def test_ack_unknown_delivery_is_message_not_found(
    session: tuple[Session, FakeTransport], broker: FakeBroker
) -> None:
    await connected(session)
    s, t = session
    await s.data_received(frame("ACK", id=f"T_x@@{s.id}@@5"))
    [err] = t.frames()
    assert (err.headers["message"], err.body) == ("Message not found", b"unknown delivery tag 5")
    assert s.state is State.CONNECTED


async def test_client_ack_is_cumulative(
    session: tuple[Session, FakeTransport], broker: FakeBroker
) -> None:
    await connected(session)
    s, t = session
    await s.data_received(frame("SUBSCRIBE", destination="/queue/a", id="s", ack="client"))
    channel = broker.channels[0]
    for tag in (1, 2, 3):
        channel.deliver("T_s", tag)
    t.frames()
    await s.data_received(frame("ACK", id=f"T_s@@{s.id}@@2", receipt="a"))
    assert channel.calls[-1] == ("ack", 2, True)
    assert list(s.unacked) == [3]
    assert t.frames() == [Frame("RECEIPT", {"receipt-id": "a"}, b"")]


async def test_transaction_defers_send_until_commit(
    session: tuple[Session, FakeTransport], broker: FakeBroker
) -> None:
    await connected(session)
    s, t = session
    await s.data_received(frame("BEGIN", transaction="tx"))
    await s.data_received(
        frame("SEND", b"1", destination="/queue/a", transaction="tx", receipt="s1")
    )
    channel = broker.channels[0]
    assert not any(c[0] == "publish" for c in channel.calls)
    await s.data_received(frame("COMMIT", transaction="tx", receipt="c"))
    await asyncio.sleep(0)
    assert [c[0] for c in channel.calls].count("publish") == 1
    assert {f.headers["receipt-id"] for f in t.frames()} == {"s1", "c"}


async def test_disconnect_sends_receipt_then_closes(session: tuple[Session, FakeTransport]) -> None:
    await connected(session)
    s, t = session
    await s.data_received(frame("DISCONNECT", receipt="bye"))
    await s.wait_closed()
    assert t.frames() == [Frame("RECEIPT", {"receipt-id": "bye"}, b"")]
    await asyncio.sleep(0)
    assert t.closed == (1000, "STOMP died")


async def test_framing_error_closes_1007_without_error_frame(
    session: tuple[Session, FakeTransport],
) -> None:
    s, t = session
    await s.data_received(b"CONNECT\nfoo\n\n\x00")
    await s.wait_closed()
    await asyncio.sleep(0)
    assert t.frames() == []
    assert t.closed is not None and t.closed[0] == 1007


async def test_login_timeout_closes(broker: FakeBroker) -> None:
    t = FakeTransport()
    s = Session(load_settings(login_timeout=0.05), broker, t, client_host="127.0.0.1", peer="x")
    await asyncio.wait_for(s.wait_closed(), 2)
    await asyncio.sleep(0)
    assert t.closed == (1000, "STOMP died")


async def test_server_heart_beats_and_client_silence(broker: FakeBroker) -> None:
    t = FakeTransport()
    s = Session(load_settings(login_timeout=0), broker, t, client_host="127.0.0.1", peer="x")
    # cx=1000 (client sends every 1 s), cy=1000 (wants ours every 1 s)
    await s.data_received(frame("CONNECT", heart_beat="1000,1000"))
    await asyncio.wait_for(s.wait_closed(), 5)  # silent client: closed after 2-3 s
    assert t.heartbeats >= 2
    await asyncio.sleep(0)
    assert t.closed == (1000, "STOMP died")
