"""gateway.destinations: parsing, error texts, queue naming and AMQP plans.

Expected values come from RabbitMQ 3.10.8's rabbit_routing_util / rabbit_stomp_util
/ rabbit_stomp_processor, and from the live broker where noted.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.broker.base import QueueSpec
from gateway.destinations import (
    Destination,
    DestinationKind,
    SendPlan,
    SubscribePlan,
    _erlang_string,
    check_durable_id,
    check_not_temp,
    consumer_arguments,
    consumer_tag,
    destination_from_delivery,
    is_durable_subscription,
    parse_boolean,
    parse_destination,
    parse_integer,
    queue_arguments,
    reject_temp_queue,
    send_plan,
    subscribe_plan,
    subscription_description,
    subscription_queue_name,
    temp_queue_id,
    unsubscribe_queue_to_delete,
)
from gateway.errors import DestinationError, ProcessingError, ProtocolError

Q = DestinationKind.QUEUE
T = DestinationKind.TOPIC
X = DestinationKind.EXCHANGE
AMQ = DestinationKind.AMQ_QUEUE
TMP = DestinationKind.TEMP_QUEUE
RQ = DestinationKind.REPLY_QUEUE

VALID_TYPES = (
    "Valid destination types are: /temp-queue, /exchange, /topic, /queue, /amq/queue, "
    "/reply-queue/.\n"
)
RANDOM = bytes(range(16))


def md5_name(term: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.md5(term).digest()).rstrip(b"=").decode()
    return "stomp-subscription-" + digest


def erl_str(data: bytes) -> bytes:
    """STRING_EXT, written out by hand for short test strings."""
    return bytes([107]) + len(data).to_bytes(2, "big") + data


# --------------------------------------------------------------------------
# parse_destination


@pytest.mark.parametrize(
    ("text", "kind", "name", "key"),
    [
        ("foo", Q, "foo", ""),
        ("a%2Fb", Q, "a/b", ""),
        ("", Q, "", ""),
        ("/queue/foo", Q, "foo", ""),
        ("/queue/a%2Fb", Q, "a/b", ""),
        ("/queue/a%2fb", Q, "a%2fb", ""),  # only uppercase %2F is unescaped
        ("/queue/a%25b", Q, "a%25b", ""),  # nothing else is unescaped
        ("/queue/%2F%2F", Q, "//", ""),
        ("/queue/ünï €", Q, "ünï €", ""),
        ("/topic/a.b.#", T, "", "a.b.#"),
        ("/topic/a%2Fb", T, "", "a/b"),
        ("/exchange/x", X, "x", ""),
        ("/exchange/x/k.*", X, "x", "k.*"),
        ("/exchange/x/", X, "x", ""),
        ("/exchange/a%2Fb/c%2Fd", X, "a/b", "c/d"),
        ("/amq/queue/q", AMQ, "q", ""),
        ("/amq/queue/a%2Fb", AMQ, "a/b", ""),
        ("/reply-queue/amq.gen-1", RQ, "amq.gen-1", ""),
        ("/reply-queue/a/b", RQ, "a/b", ""),  # slashes allowed after the prefix
        ("/reply-queue/a%2Fb/c", RQ, "a/b/c", ""),
        ("/temp-queue/t1", TMP, "t1", ""),
    ],
)
def test_parse_valid(text: str, kind: DestinationKind, name: str, key: str) -> None:
    assert parse_destination(text) == Destination(kind, name, key, text)


@pytest.mark.parametrize(
    ("text", "body"),
    [
        ("/queue", "'' is not a valid queue destination\n"),
        ("/queue/", "'/' is not a valid queue destination\n"),
        ("/queue/a/b", "'/a/b' is not a valid queue destination\n"),
        ("/queue/a%2Fb/c", "'/a%2Fb/c' is not a valid queue destination\n"),  # raw text
        ("/topic", "'' is not a valid topic destination\n"),
        ("/topic/", "'/' is not a valid topic destination\n"),
        ("/topic/a/b", "'/a/b' is not a valid topic destination\n"),
        ("/exchange", "'' is not a valid exchange destination\n"),
        ("/exchange/", "'/' is not a valid exchange destination\n"),
        ("/exchange//foo", "'//foo' is not a valid exchange destination\n"),
        ("/exchange/x/y/z", "'/x/y/z' is not a valid exchange destination\n"),
        ("/amq/queue", "'' is not a valid amqqueue destination\n"),
        ("/amq/queue/", "'/' is not a valid amqqueue destination\n"),
        ("/amq/queue/a/b", "'/a/b' is not a valid amqqueue destination\n"),
        ("/temp-queue", "'' is not a valid temp_queue destination\n"),
        ("/temp-queue/", "'/' is not a valid temp_queue destination\n"),
        ("/temp-queue/a/b", "'/a/b' is not a valid temp_queue destination\n"),
        ("/reply-queue/", "'/' is not a valid reply_queue destination\n"),
    ],
)
def test_parse_invalid(text: str, body: str) -> None:
    with pytest.raises(DestinationError) as info:
        parse_destination(text)
    assert (info.value.message, info.value.body, info.value.fatal) == (
        "Invalid destination",
        body,
        False,
    )


@pytest.mark.parametrize(
    "text",
    ["/foo/bar", "/amq", "/amq/foo", "/reply-queue", "queue/x", "//queue/x", "/Queue/x", "/"],
)
def test_parse_unknown(text: str) -> None:
    with pytest.raises(DestinationError) as info:
        parse_destination(text)
    assert info.value.message == "Unknown destination"
    assert info.value.body == f"'{text}' is not a valid destination.\n" + VALID_TYPES
    assert not info.value.fatal


def test_unknown_body_matches_reference_text() -> None:
    with pytest.raises(DestinationError) as info:
        parse_destination("/foo/bar")
    assert info.value.body == (
        "'/foo/bar' is not a valid destination.\nValid destination types are: /temp-queue, "
        "/exchange, /topic, /queue, /amq/queue, /reply-queue/.\n"
    )


def test_reject_temp_queue_is_check_not_temp() -> None:
    assert reject_temp_queue is check_not_temp


@pytest.mark.parametrize("command", ["SEND", "SUBSCRIBE"])
def test_check_not_temp(command: str) -> None:
    check_not_temp(parse_destination("/queue/x"), command)
    with pytest.raises(DestinationError) as info:
        check_not_temp(parse_destination("/temp-queue/x"), command)
    assert (info.value.message, info.value.body) == (
        "Invalid destination",
        f"'/temp-queue/x' is not a valid destination for '{command}'\n",
    )


@pytest.mark.parametrize(
    ("reply_to", "expected"),
    [
        ("/temp-queue/t1", "t1"),
        ("/queue/x", None),
        ("/exchange/x/y", None),
        ("amq.gen-abc", None),
        ("arbitrary text", None),
        ("", None),
    ],
)
def test_temp_queue_id(reply_to: str, expected: str | None) -> None:
    assert temp_queue_id(reply_to) == expected


@pytest.mark.parametrize("reply_to", ["/foo/bar", "/queue/", "/temp-queue/a/b"])
def test_temp_queue_id_unparseable_is_processing_error(reply_to: str) -> None:
    with pytest.raises(ProcessingError) as info:
        temp_queue_id(reply_to)
    assert (info.value.message, info.value.body) == ("Processing error", "Processing error")


# --------------------------------------------------------------------------
# destination_from_delivery


@pytest.mark.parametrize(
    ("exchange", "routing_key", "expected"),
    [
        ("", "q", "/queue/q"),
        ("", "", "/queue/"),
        ("amq.topic", "a.b", "/topic/a.b"),
        ("amq.topic", "", "/topic/"),
        ("amq.topic", "a/b%c.d", "/topic/a%2Fb%25c.d"),  # live 3.10.8
        ("x", "", "/exchange/x"),
        ("x", "k", "/exchange/x/k"),
        ("a/b", "c/d", "/exchange/a%2Fb/c%2Fd"),
        ("my.topic", "k", "/exchange/my.topic/k"),  # amq.topic is literal
        ("", "\x00\x01\x1f \x7f~", "/queue/%00%01%1F \x7f~"),  # 127 is not escaped
        ("", "é", "/queue/%C3%A9"),
        ("", "€", "/queue/%E2%82%AC"),
        ("", "\udcff", "/queue/%FF"),  # a surrogate-escaped raw byte
        ("", "a:b\\c", "/queue/a:b\\c"),
    ],
)
def test_destination_from_delivery(exchange: str, routing_key: str, expected: str) -> None:
    assert destination_from_delivery(exchange, routing_key) == expected


# --------------------------------------------------------------------------
# Integers and booleans


@pytest.mark.parametrize(
    ("value", "expected"),
    [("5", 5), (" 5 ", 5), ("+5", 5), ("-5", -5), ("007", 7), ("0", 0)],
)
def test_parse_integer(value: str, expected: int) -> None:
    assert parse_integer(value) == expected


@pytest.mark.parametrize(
    "value", ["", " ", "5a", "5.0", "0x10", "1_000", "\u0661", "\t5", "5\n", "+", "- 5", "1e3"]
)
def test_parse_integer_rejects(value: str) -> None:
    with pytest.raises(ProcessingError):
        parse_integer(value)


def test_parse_integer_without_strip() -> None:
    with pytest.raises(ProcessingError):
        parse_integer(" 5", strip=False)


@pytest.mark.parametrize(
    ("value", "expected"), [("true", True), ("True", True), ("false", False), ("False", False)]
)
def test_parse_boolean(value: str, expected: bool) -> None:
    assert parse_boolean(value) is expected


@pytest.mark.parametrize("value", ["TRUE", "yes", "1", "", " true", "true ", "tRue", "no"])
def test_parse_boolean_rejects(value: str) -> None:
    with pytest.raises(ProcessingError):
        parse_boolean(value)


# --------------------------------------------------------------------------
# Queue arguments


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, {}),
        ({"x-foo": "1", "x-overflow": "reject-publish", "x-queue-mode": "lazy"}, {}),
        ({"x-single-active-consumer": "true"}, {}),
        (
            {
                "x-dead-letter-exchange": " dlx ",
                "x-dead-letter-routing-key": "dl.key",
                "x-queue-type": " quorum",
                "x-max-age": " 1D ",
            },
            {
                "x-dead-letter-exchange": "dlx",
                "x-dead-letter-routing-key": "dl.key",
                "x-queue-type": "quorum",
                "x-max-age": "1D",
            },
        ),
        (
            {
                "x-expires": " 1000 ",
                "x-max-length": "5",
                "x-max-length-bytes": "+1048576",
                "x-max-priority": "10",
                "x-message-ttl": "0",
                "x-stream-max-segment-size-bytes": "500000000",
                "x-stream-filter-size-bytes": "26",
            },
            {
                "x-expires": 1000,
                "x-max-length": 5,
                "x-max-length-bytes": 1048576,
                "x-max-priority": 10,
                "x-message-ttl": 0,
                "x-stream-max-segment-size-bytes": 500000000,
                "x-stream-filter-size-bytes": 26,
            },
        ),
        ({"x-max-length": "-1"}, {"x-max-length": -1}),  # the broker judges the value
        ({"x-max-length": str(2**63 - 1)}, {"x-max-length": 2**63 - 1}),
    ],
)
def test_queue_arguments(headers: dict[str, str], expected: dict[str, Any]) -> None:
    assert queue_arguments(headers) == expected


@pytest.mark.parametrize(
    "name",
    [
        "x-expires",
        "x-max-length",
        "x-max-length-bytes",
        "x-max-priority",
        "x-message-ttl",
        "x-stream-max-segment-size-bytes",
        "x-stream-filter-size-bytes",
    ],
)
@pytest.mark.parametrize("value", ["abc", "", "5.5", "1k", str(2**63), str(-(2**63) - 1)])
def test_queue_arguments_bad_integer(name: str, value: str) -> None:
    with pytest.raises(ProcessingError):
        queue_arguments({name: value})


# --------------------------------------------------------------------------
# Subscription queue names


def test_live_durable_name_vector() -> None:
    # Live RabbitMQ 3.10.8: SUBSCRIBE /topic/probe-wsr-c3e30a.t3, id:t3dur, durable:true.
    assert (
        subscription_queue_name("probe-wsr-c3e30a.t3", "t3dur", b"")
        == "stomp-subscription-6s7kUzRyEaff1nDXsgqcdg"
    )


def test_live_vector_through_subscribe_plan() -> None:
    plan = subscribe_plan(
        parse_destination("/topic/probe-wsr-c3e30a.t3"),
        {"destination": "/topic/probe-wsr-c3e30a.t3", "id": "t3dur", "durable": "true"},
        subscription_id="t3dur",
    )
    assert plan.queue == "stomp-subscription-6s7kUzRyEaff1nDXsgqcdg"


@pytest.mark.parametrize(
    ("key", "sub_id", "term"),
    [
        ("k", "id", b"\x83h\x02" + erl_str(b"k") + erl_str(b"id")),
        ("", "id", b"\x83h\x02j" + erl_str(b"id")),  # "" is NIL_EXT
        ("k", "", b"\x83h\x02" + erl_str(b"k") + b"j"),
        # UTF-8 bytes, never code points: the plugin's header values are byte lists
        ("ключ", "ид€", b"\x83h\x02" + erl_str("ключ".encode()) + erl_str("ид€".encode())),
    ],
)
def test_durable_name_encoding(key: str, sub_id: str, term: bytes) -> None:
    assert subscription_queue_name(key, sub_id, b"") == md5_name(term)


def test_non_durable_name_hashes_random_binary() -> None:
    # rabbit_guid:gen_secure() is a 16-byte binary: BINARY_EXT (109).
    term = b"\x83h\x02" + erl_str(b"a.b") + b"m\x00\x00\x00\x10" + RANDOM
    assert subscription_queue_name("a.b", None, RANDOM) == md5_name(term)
    assert subscription_queue_name("a.b", None, RANDOM) != subscription_queue_name(
        "a.b", None, bytes(16)
    )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", b"j"),
        (b"ab", b"k\x00\x02ab"),
        (b"\x00\xff", b"k\x00\x02\x00\xff"),
        (b"x" * 65534, b"k\xff\xfe" + b"x" * 65534),
        (b"x" * 65535, b"l\x00\x00\xff\xff" + b"ax" * 65535 + b"j"),
        (b"\x01" * 70000, b"l\x00\x01\x11\x70" + b"a\x01" * 70000 + b"j"),
    ],
)
def test_erlang_string_encoding(data: bytes, expected: bytes) -> None:
    assert _erlang_string(data) == expected


# --------------------------------------------------------------------------
# Durable subscriptions need an id


@pytest.mark.parametrize(
    ("headers", "durable"),
    [
        ({}, False),
        ({"durable": "true"}, True),
        ({"durable": "True"}, True),
        ({"persistent": "true"}, True),
        ({"persistent": "True"}, True),
        ({"durable": "false", "persistent": "true"}, True),
        ({"durable": "false"}, False),
        ({"durable": "yes"}, False),
        ({"persistent": "1"}, False),
    ],
)
def test_is_durable_subscription(headers: dict[str, str], durable: bool) -> None:
    assert is_durable_subscription(headers) is durable


@pytest.mark.parametrize(
    "headers",
    [{"durable": "true"}, {"persistent": "true"}, {"durable": "True"}, {"persistent": "True"}],
)
def test_durable_without_id(headers: dict[str, str]) -> None:
    with pytest.raises(ProtocolError) as info:
        check_durable_id(headers)
    assert (info.value.message, info.value.body, info.value.fatal) == (
        "Missing Header",
        "Header 'id' is required for durable subscriptions",
        False,
    )
    with pytest.raises(ProtocolError):
        subscribe_plan(parse_destination("/topic/t"), headers, subscription_id=None)


@pytest.mark.parametrize(
    "headers", [{}, {"durable": "false"}, {"durable": "true", "id": "s"}, {"durable": "maybe"}]
)
def test_durable_id_ok(headers: dict[str, str]) -> None:
    check_durable_id(headers)


def test_missing_id_is_checked_before_the_destination() -> None:
    # validate_frame/3 runs first and ignores the destination kind.
    with pytest.raises(ProtocolError):
        subscribe_plan(Destination(Q, "", "", ""), {"durable": "true"}, subscription_id=None)
    with pytest.raises(ProtocolError):
        subscribe_plan(parse_destination("/queue/q"), {"durable": "true"}, subscription_id=None)


# --------------------------------------------------------------------------
# SEND plans


def spec(
    name: str,
    durable: bool,
    exclusive: bool,
    auto_delete: bool,
    arguments: dict[str, Any] | None = None,
) -> QueueSpec:
    return QueueSpec(name, durable, exclusive, auto_delete, arguments or {})


@pytest.mark.parametrize(
    ("text", "headers", "default_topic", "expected"),
    [
        ("/queue/q", {}, "amq.topic", SendPlan("", "q", spec("q", True, False, False))),
        ("q", {}, "amq.topic", SendPlan("", "q", spec("q", True, False, False))),
        (
            "/queue/q",
            {"durable": "false"},
            "amq.topic",
            SendPlan("", "q", spec("q", False, True, True)),
        ),
        (
            "/queue/q",
            {"x-max-length": "5", "x-foo": "1"},
            "amq.topic",
            SendPlan("", "q", spec("q", True, False, False, {"x-max-length": 5})),
        ),
        ("/amq/queue/q", {}, "amq.topic", SendPlan("", "q")),
        ("/reply-queue/amq.gen-1", {}, "amq.topic", SendPlan("", "amq.gen-1")),
        ("/topic/a.b", {}, "amq.topic", SendPlan("amq.topic", "a.b")),
        ("/topic/a.b", {}, "my.topic", SendPlan("my.topic", "a.b")),
        ("/exchange/x", {}, "amq.topic", SendPlan("x", "")),
        ("/exchange/x/k", {}, "my.topic", SendPlan("x", "k")),
        ("/exchange/x/", {}, "amq.topic", SendPlan("x", "")),
        # The plugin swaps amq.topic for the configured default after parse_routing.
        ("/exchange/amq.topic/k", {}, "my.topic", SendPlan("my.topic", "k")),
        # Booleans are only read where a queue is declared.
        (
            "/topic/t",
            {"durable": "bogus", "exclusive": "?"},
            "amq.topic",
            SendPlan("amq.topic", "t"),
        ),
        ("/amq/queue/q", {"auto-delete": "bogus"}, "amq.topic", SendPlan("", "q")),
    ],
)
def test_send_plan(
    text: str, headers: dict[str, str], default_topic: str, expected: SendPlan
) -> None:
    assert send_plan(parse_destination(text), headers, default_topic) == expected


def test_send_plan_blank_destination() -> None:
    with pytest.raises(DestinationError) as info:
        send_plan(parse_destination(""), {"x-max-length": "nope"})
    assert (info.value.message, info.value.body) == (
        "Invalid destination",
        "Destination cannot be blank",
    )


def test_send_plan_temp_queue() -> None:
    with pytest.raises(DestinationError) as info:
        send_plan(parse_destination("/temp-queue/x"), {})
    assert info.value.body == "'/temp-queue/x' is not a valid destination for 'SEND'\n"


@pytest.mark.parametrize("text", ["/queue/q", "/topic/t", "/exchange/x", "/amq/queue/q"])
def test_send_plan_bad_integer_argument_on_every_kind(text: str) -> None:
    with pytest.raises(ProcessingError):
        send_plan(parse_destination(text), {"x-message-ttl": "soon"})


def test_send_plan_bad_integer_before_temp_queue_error() -> None:
    with pytest.raises(ProcessingError):
        send_plan(parse_destination("/temp-queue/x"), {"x-expires": "x"})


@pytest.mark.parametrize("name", ["durable", "persistent", "exclusive", "auto-delete"])
@pytest.mark.parametrize("value", ["yes", "1", "TRUE", ""])
def test_send_plan_bad_boolean_on_queue(name: str, value: str) -> None:
    with pytest.raises(ProcessingError) as info:
        send_plan(parse_destination("/queue/q"), {name: value})
    assert (info.value.message, info.value.body) == ("Processing error", "Processing error")


# --------------------------------------------------------------------------
# Queue flags (reference section 3 table, with the two deliberate differences)


@pytest.mark.parametrize(
    ("text", "headers", "flags"),
    [
        # /queue (3.10.8 live)
        ("/queue/q", {}, (True, False, False)),
        ("/queue/q", {"durable": "true", "id": "s"}, (True, False, False)),
        ("/queue/q", {"durable": "True", "id": "s"}, (True, False, False)),
        ("/queue/q", {"durable": "false"}, (False, True, True)),
        ("/queue/q", {"persistent": "False"}, (False, True, True)),
        ("/queue/q", {"auto-delete": "true"}, (True, False, True)),
        ("/queue/q", {"exclusive": "true"}, (True, True, False)),
        ("/queue/q", {"durable": "false", "exclusive": "false"}, (False, False, True)),
        ("/queue/q", {"durable": "false", "auto-delete": "False"}, (False, True, False)),
        # durable/persistent: the first one in the frame wins
        ("/queue/q", {"id": "s", "durable": "false", "persistent": "true"}, (False, True, True)),
        ("/queue/q", {"id": "s", "persistent": "true", "durable": "false"}, (True, False, False)),
        # /topic: DIFFERENCE non-durable is exclusive (3.10.8: non-exclusive)
        ("/topic/t", {}, (False, True, True)),
        ("/topic/t", {"durable": "true", "id": "s"}, (True, False, True)),
        ("/topic/t", {"persistent": "true", "id": "s"}, (True, False, True)),
        ("/topic/t", {"durable": "true", "id": "s", "auto-delete": "false"}, (True, False, False)),
        ("/topic/t", {"exclusive": "false"}, (False, False, True)),  # explicit header wins
        # /exchange: same DIFFERENCE (3.12+ behaviour)
        ("/exchange/x/k", {}, (False, True, True)),
        ("/exchange/x", {"durable": "true", "id": "s"}, (True, False, True)),
        # quorum / stream: DIFFERENCE (4.x) forced durable and non-exclusive
        ("/queue/q", {"x-queue-type": "quorum", "durable": "false"}, (True, False, True)),
        ("/queue/q", {"x-queue-type": "stream", "exclusive": "true"}, (True, False, False)),
        ("/topic/t", {"x-queue-type": "quorum"}, (True, False, True)),
        ("/queue/q", {"x-queue-type": "classic", "durable": "false"}, (False, True, True)),
    ],
)
def test_queue_flags(text: str, headers: dict[str, str], flags: tuple[bool, bool, bool]) -> None:
    plan = subscribe_plan(
        parse_destination(text), headers, subscription_id=headers.get("id"), random_id=RANDOM
    )
    assert plan.declare is not None
    assert (plan.declare.durable, plan.declare.exclusive, plan.declare.auto_delete) == flags


# --------------------------------------------------------------------------
# SUBSCRIBE plans


def test_subscribe_queue() -> None:
    plan = subscribe_plan(
        parse_destination("/queue/q"),
        {"x-max-priority": "5", "x-queue-name": "ignored"},
        subscription_id="s",
    )
    assert plan == SubscribePlan(
        "q", spec("q", True, False, False, {"x-max-priority": 5}), True, None, False
    )
    durable = subscribe_plan(
        parse_destination("/queue/q"), {"id": "s", "durable": "true"}, subscription_id="s"
    )
    assert durable == SubscribePlan("q", spec("q", True, False, False), True, None, False, True)


@pytest.mark.parametrize("text", ["/amq/queue/q", "/reply-queue/q"])
def test_subscribe_no_declare(text: str) -> None:
    # No declare, so booleans are never looked at.
    plan = subscribe_plan(parse_destination(text), {"durable": "bogus"}, subscription_id=None)
    assert plan == SubscribePlan("q", None, False, None, False)


def test_subscribe_topic_non_durable() -> None:
    name = subscription_queue_name("a.*", None, RANDOM)
    plan = subscribe_plan(
        parse_destination("/topic/a.*"), {"id": "s"}, subscription_id="s", random_id=RANDOM
    )
    assert plan == SubscribePlan(
        name, spec(name, False, True, True), False, ("amq.topic", "a.*"), True
    )


def test_subscribe_topic_non_durable_random_by_default() -> None:
    dest = parse_destination("/topic/a")
    first = subscribe_plan(dest, {}, subscription_id=None)
    second = subscribe_plan(dest, {}, subscription_id=None)
    assert first.queue != second.queue
    assert first.queue.startswith("stomp-subscription-")
    assert len(first.queue) == len("stomp-subscription-") + 22


def test_subscribe_topic_durable() -> None:
    name = subscription_queue_name("a.b", "sub-1", b"")
    plan = subscribe_plan(
        parse_destination("/topic/a.b"),
        {"id": "sub-1", "persistent": "true", "auto-delete": "false", "x-expires": "60000"},
        subscription_id="sub-1",
        default_topic_exchange="my.topic",
    )
    assert plan == SubscribePlan(
        name,
        spec(name, True, False, False, {"x-expires": 60000}),
        False,
        ("my.topic", "a.b"),
        True,
        durable=True,
    )


def test_subscribe_exchange_keys_ignore_the_exchange() -> None:
    # Key only: /exchange/a/k and /exchange/b/k share a durable queue name.
    headers = {"id": "s", "durable": "true"}
    a = subscribe_plan(parse_destination("/exchange/a/k"), headers, subscription_id="s")
    b = subscribe_plan(parse_destination("/exchange/b/k"), headers, subscription_id="s")
    t = subscribe_plan(parse_destination("/topic/k"), headers, subscription_id="s")
    assert a.queue == b.queue == t.queue == subscription_queue_name("k", "s", b"")
    assert (a.bind, b.bind, t.bind) == (("a", "k"), ("b", "k"), ("amq.topic", "k"))
    bare = subscribe_plan(parse_destination("/exchange/x"), headers, subscription_id="s")
    assert bare.queue == subscription_queue_name("", "s", b"")
    assert bare.bind == ("x", "")


@pytest.mark.parametrize("text", ["/topic/t", "/exchange/x/k"])
def test_subscribe_x_queue_name(text: str) -> None:
    plan = subscribe_plan(parse_destination(text), {"x-queue-name": "my-q"}, subscription_id=None)
    assert plan.queue == "my-q"
    assert plan.declare == spec("my-q", False, True, True)


def test_subscribe_empty_x_queue_name_asks_for_a_server_named_queue() -> None:
    plan = subscribe_plan(parse_destination("/topic/t"), {"x-queue-name": ""}, subscription_id=None)
    assert plan.declare is not None
    assert (plan.queue, plan.declare.name) == ("", "")


def test_subscribe_errors() -> None:
    with pytest.raises(DestinationError) as info:
        subscribe_plan(parse_destination("/temp-queue/x"), {}, subscription_id=None)
    assert info.value.body == "'/temp-queue/x' is not a valid destination for 'SUBSCRIBE'\n"
    with pytest.raises(DestinationError) as info:
        subscribe_plan(parse_destination(""), {}, subscription_id=None)
    assert info.value.body == "Destination cannot be blank"
    with pytest.raises(ProcessingError):
        subscribe_plan(
            parse_destination("/amq/queue/q"), {"x-max-length": "x"}, subscription_id=None
        )
    with pytest.raises(ProcessingError):
        subscribe_plan(parse_destination("/topic/t"), {"exclusive": "nope"}, subscription_id=None)


# --------------------------------------------------------------------------
# UNSUBSCRIBE of a durable /topic subscription


@pytest.mark.parametrize(
    ("text", "headers", "expected"),
    [
        ("/topic/a.b", {"id": "s", "durable": "true"}, subscription_queue_name("a.b", "s", b"")),
        ("/topic/a.b", {"id": "s", "persistent": "True"}, subscription_queue_name("a.b", "s", b"")),
        ("/topic/a.b", {"id": "s", "durable": "true", "x-queue-name": "q2"}, "q2"),
        ("/topic/a.b", {"id": "s"}, None),
        ("/topic/a.b", {"id": "s", "durable": "false"}, None),
        ("/exchange/x/a.b", {"id": "s", "durable": "true"}, None),  # topic only
        ("/queue/q", {"id": "s", "durable": "true"}, None),
    ],
)
def test_unsubscribe_queue_to_delete(
    text: str, headers: dict[str, str], expected: str | None
) -> None:
    assert unsubscribe_queue_to_delete(parse_destination(text), headers) == expected


# --------------------------------------------------------------------------
# Consumer arguments, tags, descriptions


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, {}),
        ({"id": "s", "ack": "client"}, {}),
        ({"x-stream-offset": "first"}, {"x-stream-offset": "first"}),
        ({"x-stream-offset": "last"}, {"x-stream-offset": "last"}),
        ({"x-stream-offset": "next"}, {"x-stream-offset": "next"}),
        ({"x-stream-offset": "offset=5000"}, {"x-stream-offset": 5000}),
        ({"x-stream-offset": "offset=0"}, {"x-stream-offset": 0}),
        (
            {"x-stream-offset": "timestamp=1000"},
            {"x-stream-offset": datetime(1970, 1, 1, 0, 16, 40, tzinfo=UTC)},
        ),
        ({"x-stream-offset": "foo"}, {}),  # ignored: the broker default applies
        ({"x-stream-offset": "First"}, {}),
        ({"x-stream-offset": ""}, {}),
        ({"x-stream-filter": "a,b,,c"}, {"x-stream-filter": ["a", "b", "", "c"]}),
        ({"x-stream-filter": "only"}, {"x-stream-filter": ["only"]}),
        ({"x-stream-match-unfiltered": "true"}, {"x-stream-match-unfiltered": True}),
        ({"x-stream-match-unfiltered": "False"}, {"x-stream-match-unfiltered": False}),
        ({"x-stream-match-unfiltered": "yes"}, {}),
        ({"x-priority": " 10 "}, {"x-priority": 10}),
        ({"x-priority": "-3"}, {"x-priority": -3}),
    ],
)
def test_consumer_arguments(headers: dict[str, str], expected: dict[str, Any]) -> None:
    result = consumer_arguments(headers)
    assert result == expected
    assert [type(v) for v in result.values()] == [type(v) for v in expected.values()]


@pytest.mark.parametrize(
    "headers",
    [
        {"x-stream-offset": "offset=abc"},
        {"x-stream-offset": "offset="},
        {"x-stream-offset": "offset= 5"},  # binary_to_integer does not trim
        {"x-stream-offset": "timestamp=soon"},
        {"x-stream-offset": "timestamp=-1"},
        {"x-stream-offset": "timestamp=99999999999999999"},
        {"x-priority": "high"},
    ],
)
def test_consumer_arguments_errors(headers: dict[str, str]) -> None:
    with pytest.raises(ProcessingError):
        consumer_arguments(headers)


@pytest.mark.parametrize(
    ("headers", "tag", "description"),
    [
        ({"id": "sub-0", "destination": "/queue/x"}, "T_sub-0", "id='sub-0'"),
        ({"id": "", "destination": "/queue/x"}, "T_", "id=''"),
        ({"destination": "/queue/x"}, "Q_/queue/x", "destination='/queue/x'"),
        ({"destination": "/topic/a%2Fb"}, "Q_/topic/a%2Fb", "destination='/topic/a%2Fb'"),
        ({}, None, None),
    ],
)
def test_consumer_tag(headers: dict[str, str], tag: str | None, description: str | None) -> None:
    assert consumer_tag(headers) == tag
    assert subscription_description(headers) == description
