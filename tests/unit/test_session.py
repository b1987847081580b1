"""The session state machine against an in-memory broker (no RabbitMQ here)."""

from __future__ import annotations

import asyncio

import pytest

import gateway.heartbeats as heartbeats_module
import gateway.session as session_module
from gateway.broker.base import ChannelClosed, Properties
from gateway.errors import ProcessingError, ProtocolError
from gateway.session import (
    Session,
    State,
    is_loopback,
    negotiate_version,
    parse_heart_beat,
)
from gateway.settings import load_settings
from gateway.stomp import Frame, FrameParser, encode_frame

from .fake_broker import FakeBroker, FakeChannel


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
    """A session on ``broker`` (a test module may override that fixture)."""
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
    # RabbitMQ checks the address after the password and the vhost: the broker login
    # happened, and its channel is closed again.
    assert [c.login for c in broker.opened] == ["guest"] and broker.channels[0].closed
    assert s.state is State.AWAITING_CONNECT and t.closed is None
    # A wrong password gets the password error first, an unknown vhost the vhost error.
    await s.data_received(frame("CONNECT", login="guest", passcode="nope"))
    await s.data_received(frame("CONNECT", host="nope"))
    assert [(f.headers["message"], f.body) for f in t.frames()] == [
        ("Bad CONNECT", b"Access refused for user 'guest'\n"),
        ("Bad CONNECT", b"Virtual host 'nope' access denied"),
    ]
    # Users outside loopback_users connect from anywhere.
    broker.users["alice"] = "pw"
    await s.data_received(frame("CONNECT", login="alice", passcode="pw"))
    assert [f.command for f in t.frames()] == ["CONNECTED"]


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


async def test_client_beats_just_after_each_check_are_not_silence(
    broker: FakeBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client beating at exactly the check interval, each beat landing just after a
    (slightly late) check: every interval saw a beat, so nobody times out (RabbitMQ
    counts bytes per interval). Measuring "silent for an interval" at each check
    instead saw two misses in a row here (a flaky stomp.py test found it)."""
    clock = [100.0]

    class Clock:
        @staticmethod
        def monotonic() -> float:
            return clock[0]

    monkeypatch.setattr(session_module, "time", Clock)
    monkeypatch.setattr(heartbeats_module, "time", Clock)
    t = FakeTransport()
    s = Session(load_settings(login_timeout=0), broker, t, client_host="127.0.0.1", peer="x")
    await s.data_received(frame("CONNECT", heart_beat="1000,0"))  # at 100.0
    assert s._recv_interval == 1.0
    for check in (101.004, 102.010, 103.016, 104.022):
        clock[0] = check
        s._check_beat()
        clock[0] = check + 0.001
        await s.data_received(b"\n")  # the client's beat, a millisecond late
    assert s.state is State.CONNECTED
    # Two intervals with nothing at all: closed, without an ERROR frame.
    for check in (105.028, 106.034):
        clock[0] = check
        s._check_beat()
    await asyncio.wait_for(s.wait_closed(), 5)
    assert (s.close_reason, t.closed) == ("heart-beat timeout", (1000, "STOMP died"))
    assert [f.command for f in t.frames()] == ["CONNECTED"]


# ---------------------------------------------------------------- acks (RabbitMQ main)
def ack_id(s: Session, tag: str, delivery_tag: int) -> str:
    return f"{tag}@@{s.id}@@{delivery_tag}"


async def subscribed(
    session: tuple[Session, FakeTransport], broker: FakeBroker, *subs: tuple[str, str]
) -> FakeChannel:
    """CONNECT, then SUBSCRIBE /queue/<id> for each (id, ack mode)."""
    await connected(session)
    s, t = session
    for sub_id, mode in subs:
        await s.data_received(
            frame("SUBSCRIBE", destination=f"/queue/{sub_id}", id=sub_id, ack=mode)
        )
    assert t.frames() == []
    return broker.channels[0]


def settled(channel: FakeChannel) -> list[tuple[object, ...]]:
    return [c for c in channel.calls if c[0] in ("ack", "nack")]


async def test_ack_unknown_delivery_is_message_not_found(
    session: tuple[Session, FakeTransport], broker: FakeBroker
) -> None:
    channel = await subscribed(session, broker)
    s, t = session
    await s.data_received(frame("ACK", id=ack_id(s, "T_x", 5), receipt="r"))
    [err] = t.frames()
    assert (err.headers["message"], err.body) == ("Message not found", b"unknown delivery tag 5\n")
    assert "receipt-id" not in err.headers
    assert s.state is State.CONNECTED and settled(channel) == []


async def test_client_ack_is_cumulative_across_subscriptions(
    session: tuple[Session, FakeTransport], broker: FakeBroker
) -> None:
    # multiack_prune_is_connection_wide: an ack:client ACK also settles older
    # deliveries of other subscriptions, client-individual ones included.
    channel = await subscribed(session, broker, ("b", "client-individual"), ("a", "client"))
    s, t = session
    channel.deliver("T_b", 1)
    channel.deliver("T_a", 2)
    channel.deliver("T_a", 3)
    t.frames()
    await s.data_received(frame("ACK", id=ack_id(s, "T_a", 2), receipt="a"))
    assert settled(channel) == [("ack", 2, True)]
    assert 3 in s.acks and len(s.acks) == 1
    assert t.frames() == [Frame("RECEIPT", {"receipt-id": "a"}, b"")]
    await s.data_received(frame("ACK", id=ack_id(s, "T_b", 1)))
    [err] = t.frames()
    assert (err.headers["message"], err.body) == ("Message not found", b"unknown delivery tag 1\n")


async def test_client_individual_ack_leaves_older_deliveries(
    session: tuple[Session, FakeTransport], broker: FakeBroker
) -> None:
    channel = await subscribed(session, broker, ("s", "client-individual"))
    s, t = session
    channel.deliver("T_s", 1)
    channel.deliver("T_s", 2)
    t.frames()
    await s.data_received(frame("ACK", id=ack_id(s, "T_s", 2)))
    await s.data_received(frame("ACK", id=ack_id(s, "T_s", 2)))  # repeated
    [err] = t.frames()
    assert err.headers["message"] == "Message not found"
    assert settled(channel) == [("ack", 2, False)] and 1 in s.acks


async def test_ack_naming_another_subscription_is_rejected(
    session: tuple[Session, FakeTransport], broker: FakeBroker
) -> None:
    # reused_subscription_id_keeps_ack_mode: delivery 1 was for T_b, not T_a.
    channel = await subscribed(session, broker, ("b", "client-individual"), ("a", "client"))
    s, t = session
    channel.deliver("T_b", 1)
    t.frames()
    await s.data_received(frame("ACK", id=ack_id(s, "T_a", 1)))
    [err] = t.frames()
    assert (err.headers["message"], err.body) == ("Message not found", b"unknown delivery tag 1\n")
    assert settled(channel) == [] and 1 in s.acks


async def test_ack_of_auto_delivery_is_message_not_found(
    session: tuple[Session, FakeTransport], broker: FakeBroker
) -> None:
    channel = await subscribed(session, broker, ("s", "auto"))
    s, t = session
    channel.deliver("T_s", 1)
    t.frames()
    await s.data_received(frame("ACK", id=ack_id(s, "T_s", 1)))
    [err] = t.frames()
    assert err.headers["message"] == "Message not found" and settled(channel) == []


async def test_ack_after_unsubscribe_keeps_the_delivery_ack_mode(
    session: tuple[Session, FakeTransport], broker: FakeBroker
) -> None:
    # unsubscribe_ack + reused_subscription_id_keeps_ack_mode: deliveries stay
    # settleable, with the mode they were delivered with.
    channel = await subscribed(session, broker, ("s", "client-individual"))
    s, t = session
    channel.deliver("T_s", 1)
    channel.deliver("T_s", 2)
    await s.data_received(frame("UNSUBSCRIBE", id="s"))
    await s.data_received(frame("SUBSCRIBE", destination="/queue/s", id="s", ack="client"))
    t.frames()
    await s.data_received(frame("ACK", id=ack_id(s, "T_s", 2), receipt="r"))
    assert t.frames() == [Frame("RECEIPT", {"receipt-id": "r"}, b"")]
    assert settled(channel) == [("ack", 2, False)] and 1 in s.acks


@pytest.mark.parametrize(
    ("value", "message", "body"),
    [
        ("foo", "Invalid header", b'"ACK" must include a valid "id" header\n'),
        ("a@@b@@1@@2", "Invalid header", b'"ACK" must include a valid "id" header\n'),
        ("T_s@@session-other@@1", "Invalid header", b'"ACK" must include a valid "id" header\n'),
        ("T_s@@{sid}@@x", "Processing error", b"Processing error"),
        ("T_s@@session-other@@x", "Processing error", b"Processing error"),
        ("T_s@@{sid}@@-1", "Message not found", b"unknown delivery tag -1\n"),
    ],
)
async def test_ack_id_checks(
    session: tuple[Session, FakeTransport],
    broker: FakeBroker,
    value: str,
    message: str,
    body: bytes,
) -> None:
    await subscribed(session, broker)
    s, t = session
    await s.data_received(frame("ACK", id=value.replace("{sid}", s.id)))
    [err] = t.frames()
    assert (err.headers["message"], err.body) == (message, body)
    assert s.state is State.CONNECTED


@pytest.mark.parametrize(
    ("version", "header", "missing"),
    [("1.0", "message-id", "id"), ("1.1", "message-id", "id"), ("1.2", "id", "message-id")],
)
async def test_ack_header_by_version(
    session: tuple[Session, FakeTransport],
    broker: FakeBroker,
    version: str,
    header: str,
    missing: str,
) -> None:
    await connected(session, version)
    s, t = session
    await s.data_received(frame("SUBSCRIBE", destination="/queue/q", id="s", ack="client"))
    broker.channels[0].deliver("T_s", 1)
    [msg] = t.frames()
    assert ("ack" in msg.headers) is (version == "1.2")
    await s.data_received(frame("NACK", **{missing: msg.headers["message-id"]}))
    [err] = t.frames()
    assert (err.headers["message"], err.body) == (
        "Missing header",
        f'"NACK" must include the "{header}" header\n'.encode(),
    )
    await s.data_received(frame("NACK", **{header.replace("-", "_"): msg.headers["message-id"]}))
    assert t.frames() == []
    assert settled(broker.channels[0]) == [("nack", 1, True, True)]


@pytest.mark.parametrize(
    ("requeue", "default", "expected"),
    [
        (None, True, True),
        (None, False, False),
        ("false", True, False),
        ("False", True, False),
        ("true", False, True),
        ("yes", False, False),  # not a boolean: the default (RabbitMQ boolean_header)
    ],
)
async def test_nack_requeue(
    broker: FakeBroker, requeue: str | None, default: bool, expected: bool
) -> None:
    t = FakeTransport()
    s = Session(
        load_settings(login_timeout=0, default_nack_requeue=default),
        broker,
        t,
        client_host="127.0.0.1",
        peer="x",
    )
    channel = await subscribed((s, t), broker, ("s", "client-individual"))
    channel.deliver("T_s", 1)
    t.frames()
    headers = {"id": ack_id(s, "T_s", 1)}
    if requeue is not None:
        headers["requeue"] = requeue
    await s.data_received(frame("NACK", **headers))
    assert settled(channel) == [("nack", 1, False, expected)]


# ---------------------------------------------------------------- transactions
async def test_transaction_defers_ack_and_nack(
    session: tuple[Session, FakeTransport], broker: FakeBroker
) -> None:
    channel = await subscribed(session, broker, ("s", "client-individual"))
    s, t = session
    channel.deliver("T_s", 1)
    channel.deliver("T_s", 2)
    t.frames()
    await s.data_received(frame("BEGIN", transaction="tx"))
    # Receipts of ACK/NACK in a transaction come at once (RabbitMQ).
    await s.data_received(frame("ACK", id=ack_id(s, "T_s", 1), transaction="tx", receipt="a"))
    await s.data_received(
        frame("NACK", id=ack_id(s, "T_s", 2), transaction="tx", requeue="false", receipt="n")
    )
    assert [f.headers["receipt-id"] for f in t.frames()] == ["a", "n"]
    assert settled(channel) == []
    await s.data_received(frame("COMMIT", transaction="tx", receipt="c"))
    assert settled(channel) == [("ack", 1, False), ("nack", 2, False, False)]
    assert t.frames() == [Frame("RECEIPT", {"receipt-id": "c"}, b"")]


async def test_commit_skips_what_an_earlier_cumulative_ack_settled(
    session: tuple[Session, FakeTransport], broker: FakeBroker
) -> None:
    # unsubscribe_transaction_multiack_prune: ACK 2 (client) settles 1 too, so the
    # ACK of 1 later in the same COMMIT is redundant, not an error.
    channel = await subscribed(session, broker, ("s", "client"))
    s, t = session
    channel.deliver("T_s", 1)
    channel.deliver("T_s", 2)
    t.frames()
    await s.data_received(frame("BEGIN", transaction="tx"))
    await s.data_received(frame("ACK", id=ack_id(s, "T_s", 2), transaction="tx"))
    await s.data_received(frame("ACK", id=ack_id(s, "T_s", 1), transaction="tx"))
    await s.data_received(frame("COMMIT", transaction="tx", receipt="c"))
    assert settled(channel) == [("ack", 2, True)]
    assert t.frames() == [Frame("RECEIPT", {"receipt-id": "c"}, b"")]
    # ...but only within that COMMIT.
    await s.data_received(frame("BEGIN", transaction="tx2"))
    await s.data_received(frame("ACK", id=ack_id(s, "T_s", 1), transaction="tx2"))
    await s.data_received(frame("COMMIT", transaction="tx2", receipt="c2"))
    err, receipt = t.frames()
    assert (err.headers["message"], err.body) == ("Message not found", b"unknown delivery tag 1\n")
    assert receipt == Frame("RECEIPT", {"receipt-id": "c2"}, b"")


async def test_commit_ack_then_nack_of_the_same_delivery(
    session: tuple[Session, FakeTransport], broker: FakeBroker
) -> None:
    # transaction_ack_then_nack_same_delivery: the NACK finds nothing; the COMMIT
    # still completes, and the session goes on.
    channel = await subscribed(session, broker, ("s", "client-individual"))
    s, t = session
    channel.deliver("T_s", 1)
    t.frames()
    await s.data_received(frame("BEGIN", transaction="tx"))
    await s.data_received(frame("ACK", id=ack_id(s, "T_s", 1), transaction="tx"))
    await s.data_received(frame("NACK", id=ack_id(s, "T_s", 1), transaction="tx"))
    await s.data_received(frame("COMMIT", transaction="tx", receipt="c"))
    err, receipt = t.frames()
    assert err.headers["message"] == "Message not found"
    assert receipt.headers["receipt-id"] == "c"
    assert settled(channel) == [("ack", 1, False)] and s.state is State.CONNECTED


async def test_send_in_transaction_is_checked_at_once(
    session: tuple[Session, FakeTransport], broker: FakeBroker
) -> None:
    await connected(session)
    s, t = session
    await s.data_received(frame("BEGIN", transaction="tx"))
    await s.data_received(frame("SEND", destination="/foo", transaction="tx"))
    await s.data_received(frame("SEND", destination="/queue/a", transaction="tx", priority="x"))
    assert [f.headers["message"] for f in t.frames()] == ["Unknown destination", "Processing error"]
    await s.data_received(frame("COMMIT", transaction="tx"))
    assert not any(c[0] == "publish" for c in broker.channels[0].calls)


async def test_transaction_limits(
    session: tuple[Session, FakeTransport], broker: FakeBroker
) -> None:
    # RabbitMQ main: 16 open transactions, 1024 actions each.
    await connected(session)
    s, t = session
    for i in range(16):
        await s.data_received(frame("BEGIN", transaction=f"t{i}"))
    await s.data_received(frame("BEGIN", transaction="t16", receipt="r"))
    await s.data_received(frame("BEGIN", transaction="t0"))  # a restart counts too
    assert [(f.headers["message"], f.body) for f in t.frames()] == [
        ("Transaction limit exceeded", b"Too many concurrent transactions (limit 16)")
    ] * 2
    await s.data_received(frame("ABORT", transaction="t1"))
    await s.data_received(frame("BEGIN", transaction="t16", receipt="r"))
    assert [f.command for f in t.frames()] == ["RECEIPT"]
    data = frame("SEND", b"x", destination="/topic/k", transaction="t0") * 1025
    await s.data_received(data)
    [err] = t.frames()
    assert (err.headers["message"], err.body) == (
        "Transaction too large",
        b"Too many actions in transaction (limit 1024)",
    )
    await s.data_received(frame("COMMIT", transaction="t0"))
    assert [c[0] for c in broker.channels[0].calls].count("publish") == 1024


async def test_begin_again_restarts_the_transaction(
    session: tuple[Session, FakeTransport], broker: FakeBroker
) -> None:
    await connected(session)
    s, t = session
    await s.data_received(frame("BEGIN", transaction="tx"))
    await s.data_received(frame("SEND", b"1", destination="/topic/k", transaction="tx"))
    await s.data_received(frame("BEGIN", transaction="tx"))
    await s.data_received(frame("COMMIT", transaction="tx", receipt="c"))
    assert t.frames() == [Frame("RECEIPT", {"receipt-id": "c"}, b"")]
    assert not any(c[0] == "publish" for c in broker.channels[0].calls)


@pytest.mark.parametrize("command", ["COMMIT", "ABORT", "SEND", "ACK", "NACK"])
async def test_unknown_transaction(
    session: tuple[Session, FakeTransport], broker: FakeBroker, command: str
) -> None:
    channel = await subscribed(session, broker, ("s", "client"))
    s, t = session
    channel.deliver("T_s", 1)
    t.frames()
    headers = {"transaction": "nope", "receipt": "r"}
    if command == "SEND":
        headers["destination"] = "/topic/k"
    elif command in ("ACK", "NACK"):
        headers["id"] = ack_id(s, "T_s", 1)
    await s.data_received(frame(command, **headers))
    [err] = t.frames()
    assert (err.headers["message"], err.body) == (
        "Bad transaction",
        b'Invalid transaction identifier: "nope"\n',
    )
    assert settled(channel) == [] and s.state is State.CONNECTED


@pytest.mark.parametrize("command", ["BEGIN", "COMMIT", "ABORT"])
async def test_missing_transaction_header(
    session: tuple[Session, FakeTransport], command: str
) -> None:
    await connected(session)
    s, t = session
    await s.data_received(frame(command, receipt="r"))
    [err] = t.frames()
    assert (err.headers["message"], err.body) == (
        "Missing transaction",
        f"\"{command}\" must include a 'transaction' header\n".encode(),
    )


# ---------------------------------------------------------------- session end
async def test_broker_closed_channel_is_still_closed_on_release(
    session: tuple[Session, FakeTransport], broker: FakeBroker
) -> None:
    # The AMQP connection under a channel the broker closed must not leak.
    await connected(session)
    s, _ = session
    channel = broker.channels[0]
    assert channel.on_close is not None
    channel.on_close(ChannelClosed(404, "NOT_FOUND - no queue 'q' in vhost '/'"))
    await s.wait_closed()
    assert channel.closed


async def test_pending_receipts_go_out_before_a_fatal_error_closes(
    session: tuple[Session, FakeTransport], broker: FakeBroker
) -> None:
    await connected(session)
    s, t = session
    broker.auto_confirm = False
    await s.data_received(frame("SEND", b"x", destination="/topic/k", receipt="r1"))
    s._fail(ProtocolError("Duplicated subscription identifier", "x", fatal=True))
    await asyncio.sleep(0)
    assert t.closed is None  # waiting for the confirm
    broker.channels[0].confirms[0].set_result(None)
    await s.wait_closed()
    await asyncio.sleep(0)
    assert [f.command for f in t.frames()] == ["ERROR", "RECEIPT"]
    assert t.closed == (1000, "STOMP died")
