"""Local fan-out: the session's side (with the fake broker) and the routing table.

The broker side (one shared queue, binds judged per session, the broker's own topic
routing as the reference) is in tests/integration/test_local_fanout.py.
"""

from __future__ import annotations

import pytest

from gateway.broker.base import ChannelClosed
from gateway.broker.fanout import ALL, DIRECT, TOPIC, Member, Routes, topic_match, topic_words
from gateway.session import Session, State
from gateway.stomp import Frame
from tests.unit.fake_broker import FakeBroker
from tests.unit.test_session import FakeTransport, connected, frame
from tests.unit.test_session import session as session  # the session on the broker below


@pytest.fixture
def broker() -> FakeBroker:
    fake = FakeBroker()
    fake.fanout = True
    return fake


async def test_an_auto_topic_subscription_joins_and_gets_copies(
    session: tuple[Session, FakeTransport], broker: FakeBroker
) -> None:
    await connected(session)
    s, t = session
    await s.data_received(frame("SUBSCRIBE", destination="/topic/a.b", id="s1", receipt="r"))
    assert t.frames() == [Frame("RECEIPT", {"receipt-id": "r"}, b"")]
    channel = broker.channels[0]
    assert [c for c in channel.calls if c[0] != "set_handlers"] == [
        ("join_fanout", "amq.topic", "a.b")
    ]
    [member] = broker.members
    member.deliver(7, b"one", routing_key="a.b")
    [message] = t.frames()
    assert list(message.headers.items()) == [
        ("subscription", "s1"),
        ("destination", "/topic/a.b"),
        ("message-id", f"T_s1@@{s.id}@@7"),
        ("redelivered", "false"),
        ("content-length", "3"),
    ]
    assert message.body == b"one"


async def test_copies_before_the_receipt_wait_for_it(
    session: tuple[Session, FakeTransport], broker: FakeBroker
) -> None:
    await connected(session)
    s, t = session
    channel = broker.channels[0]
    joined = channel.join_fanout

    async def join_and_deliver(*args: object) -> object:
        member = await joined(*args)  # type: ignore[arg-type]
        assert member is not None
        member.deliver(1, b"early")  # the group delivers before the session has the member
        return member

    channel.join_fanout = join_and_deliver  # type: ignore[method-assign]
    await s.data_received(frame("SUBSCRIBE", destination="/topic/k", id="s1", receipt="r"))
    assert [(f.command, f.body) for f in t.frames()] == [("RECEIPT", b""), ("MESSAGE", b"early")]


@pytest.mark.parametrize(
    "headers",
    [
        {"ack": "client"},
        {"ack": "client-individual"},
        {"durable": "true", "auto-delete": "false"},
        {"exclusive": "false"},
        {"x-queue-name": "mine"},
        {"x-message-ttl": "1000"},
        {"x-priority": "3"},
    ],
)
async def test_what_local_fanout_cannot_stand_in_for(
    session: tuple[Session, FakeTransport], broker: FakeBroker, headers: dict[str, str]
) -> None:
    await connected(session)
    s, _ = session
    await s.data_received(frame("SUBSCRIBE", destination="/topic/k", id="s1", **headers))
    channel = broker.channels[0]
    assert [c[0] for c in channel.calls if c[0] in ("join_fanout", "declare", "consume")] == [
        "declare",
        "consume",
    ]
    assert broker.members == []


@pytest.mark.parametrize("destination", ["/queue/q", "/amq/queue/q", "/reply-queue/q"])
async def test_queues_are_never_shared(
    session: tuple[Session, FakeTransport], broker: FakeBroker, destination: str
) -> None:
    await connected(session)
    s, _ = session
    await s.data_received(frame("SUBSCRIBE", destination=destination, id="s1"))
    assert not [c for c in broker.channels[0].calls if c[0] == "join_fanout"]


async def test_no_group_to_be_had_subscribes_the_plugins_way(
    session: tuple[Session, FakeTransport], broker: FakeBroker
) -> None:
    broker.fanout = False  # join_fanout answers None
    await connected(session)
    s, t = session
    await s.data_received(frame("SUBSCRIBE", destination="/topic/k", id="s1", receipt="r"))
    calls = [c[0] for c in broker.channels[0].calls]
    assert calls[calls.index("join_fanout") :] == ["join_fanout", "declare", "consume", "bind"]
    assert t.frames() == [Frame("RECEIPT", {"receipt-id": "r"}, b"")]


async def test_unsubscribe_and_session_end_leave_the_group(
    session: tuple[Session, FakeTransport], broker: FakeBroker
) -> None:
    await connected(session)
    s, t = session
    await s.data_received(frame("SUBSCRIBE", destination="/topic/a", id="a"))
    await s.data_received(frame("SUBSCRIBE", destination="/exchange/amq.direct/b", id="b"))
    first, second = broker.members
    await s.data_received(frame("UNSUBSCRIBE", id="a", receipt="u"))
    assert t.frames() == [Frame("RECEIPT", {"receipt-id": "u"}, b"")]
    assert (first.left, second.left) == (True, False)
    channel = broker.channels[0]
    assert ("cancel", "T_a") not in channel.calls
    first.deliver(2)  # a copy in flight when it left: dropped
    assert t.frames() == []
    await s.data_received(frame("DISCONNECT"))
    await s.wait_closed()
    assert second.left is True


async def test_a_refused_bind_is_the_sessions_channel_error(
    session: tuple[Session, FakeTransport], broker: FakeBroker
) -> None:
    broker.missing_exchanges.add("nope")
    await connected(session)
    s, t = session
    await s.data_received(frame("SUBSCRIBE", destination="/exchange/nope/k", id="s1"))
    [error] = t.frames()
    assert (error.command, error.headers["message"]) == ("ERROR", "not_found")
    assert error.body == b"NOT_FOUND - no exchange 'nope' in vhost '/'"
    assert "T_s1" not in s.subscriptions


async def test_a_lost_group_ends_the_session_or_the_subscription(
    session: tuple[Session, FakeTransport], broker: FakeBroker
) -> None:
    await connected(session)
    s, t = session
    await s.data_received(frame("SUBSCRIBE", destination="/topic/a", id="a"))
    [member] = broker.members
    member.on_lost(None)  # the broker cancelled the group's consumer
    [error] = t.frames()
    assert (error.headers["message"], error.headers["subscription"]) == (
        "Server cancelled subscription",
        "a",
    )
    assert "T_a" not in s.subscriptions
    await s.data_received(frame("SUBSCRIBE", destination="/topic/b", id="b"))
    broker.members[1].on_lost(ChannelClosed(320, "CONNECTION_FORCED - broker forced"))
    [error] = t.frames()
    assert (error.headers["message"], error.body) == (
        "connection_forced",
        b"CONNECTION_FORCED - broker forced",
    )
    await s.wait_closed()
    assert s.state is State.CLOSED


# ---------------------------------------------------------------- matching
@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("a.b", "a.b", True),
        ("a.*", "a.b", True),
        ("a.*", "a", False),
        ("a.*", "a.b.c", False),
        ("a.#", "a", True),
        ("a.#", "a.b.c", True),
        ("#", "", True),
        ("*", "", False),
        ("", "", True),
        ("", "a", False),
        ("a.#.z", "a.z", True),
        ("a.#.z", "a.b.c.z", True),
        ("a.#.z", "a.b.c", False),
        ("*.#", "a", True),
        ("#.*", "", False),
        ("a..b", "a..b", True),
        ("a.*.b", "a..b", True),
        ("a.*", "a.", True),
        ("#.#", "a.b", True),
    ],
)
def test_topic_match(pattern: str, key: str, expected: bool) -> None:
    assert topic_match(topic_words(pattern), topic_words(key)) is expected


def _members(n: int) -> list[Member]:
    return [Member(lambda _d: None, lambda _e: None) for _ in range(n)]


def test_routes_by_kind() -> None:
    a, b, c = _members(3)
    topic = Routes(TOPIC)
    topic.add("x.y", a)
    topic.add("x.*", b)
    topic.add("x.*", c)
    assert topic.match("x.y") == [a, b, c]
    assert topic.match("x.z") == [b, c]
    assert topic.match("y") == []
    direct = Routes(DIRECT)
    direct.add("x.*", a)
    assert direct.match("x.y") == []
    assert direct.match("x.*") == [a]
    everyone = Routes(ALL)
    everyone.add("k1", a)
    everyone.add("k2", b)
    assert everyone.match("anything") == [a, b]


def test_routes_report_a_key_left_empty() -> None:
    a, b = _members(2)
    routes = Routes(TOPIC)
    routes.add("k.#", a)
    routes.add("k.#", b)
    assert routes.remove("k.#", a) is False
    assert routes.remove("k.#", a) is False  # twice: no effect
    assert routes.remove("k.#", b) is True
    assert (routes.count, routes.has("k.#"), routes.patterns) == (0, False, {})
