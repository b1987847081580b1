"""gateway.mapping: SEND headers -> AMQP properties, deliveries -> MESSAGE headers.

Expected values follow rabbit_stomp_util:message_properties/1 and headers/5 of
RabbitMQ 3.10.8 (and the reference's live observations), with the collision
handling difference the gateway chose.
"""

from __future__ import annotations

import datetime
import decimal
from typing import Any

import pytest

from gateway.broker.base import Delivery, Properties
from gateway.errors import ProcessingError
from gateway.mapping import message_headers, reply_to_header, send_properties

# --------------------------------------------------------------------------
# SEND -> basic properties


def test_send_properties_all_mapped_headers() -> None:
    headers = {
        "destination": "/queue/q",
        "content-type": "text/plain",
        "content-encoding": "gzip",
        "persistent": "true",
        "priority": "5",
        "correlation-id": "c-1",
        "reply-to": "/queue/replies",
        "expiration": "60000",
        "amqp-message-id": "m-1",
        "timestamp": "1700000000",
        "type": "order",
        "user-id": "guest",
        "app-id": "shop",
    }
    assert send_properties(headers) == Properties(
        content_type="text/plain",
        content_encoding="gzip",
        headers={},
        delivery_mode=2,
        priority=5,
        correlation_id="c-1",
        reply_to="/queue/replies",
        expiration="60000",
        message_id="m-1",
        timestamp=1700000000,
        type="order",
        user_id="guest",
        app_id="shop",
    )


def test_send_properties_minimal() -> None:
    # The headers table is always there, possibly empty, as in the plugin.
    assert send_properties({"destination": "/topic/t"}) == Properties(headers={})


def test_send_properties_every_other_header_goes_to_the_table() -> None:
    headers = {
        "destination": "/queue/q",
        "receipt": "r",
        "content-length": "2",
        "x-max-length": "5",
        "transaction": "tx1",
        "ack": "client",
        "id": "7",
        "durable": "true",
        "auto-delete": "false",
        "heart-beat": "0,0",
        "x-stream-filter-value": "eu",
        "persistent": "true",
        "content-type": "text/plain",
        "x-custom": "a:b\\c\n",
        "": "empty name",
    }
    props = send_properties(headers)
    assert props.headers is not None
    # Reverse frame order: the plugin's parser keeps headers newest-first.
    assert list(props.headers.items()) == [
        ("", "empty name"),
        ("x-custom", "a:b\\c\n"),
        ("x-stream-filter-value", "eu"),
        ("heart-beat", "0,0"),
        ("auto-delete", "false"),
        ("durable", "true"),
        ("id", "7"),
        ("ack", "client"),
        ("transaction", "tx1"),
        ("x-max-length", "5"),
        ("content-length", "2"),
        ("receipt", "r"),
    ]
    assert (props.delivery_mode, props.content_type) == (2, "text/plain")


@pytest.mark.parametrize(
    ("value", "mode"),
    [("true", 2), ("True", 2), ("false", None), ("yes", None), ("TRUE", None), ("", None)],
)
def test_send_persistent(value: str, mode: int | None) -> None:
    assert send_properties({"persistent": value}).delivery_mode == mode


@pytest.mark.parametrize(
    ("value", "expected"), [("0", 0), ("5", 5), (" 9 ", 9), ("+3", 3), ("255", 255)]
)
def test_send_priority(value: str, expected: int) -> None:
    assert send_properties({"priority": value}).priority == expected


@pytest.mark.parametrize("value", ["high", "", "5.0", "0x5", "256", "-1", "1_0"])
def test_send_priority_invalid(value: str) -> None:
    with pytest.raises(ProcessingError) as info:
        send_properties({"priority": value})
    assert (info.value.message, info.value.body) == ("Processing error", "Processing error")


@pytest.mark.parametrize(
    ("value", "expected"), [("0", 0), (" 1700000000 ", 1700000000), (str(2**64 - 1), 2**64 - 1)]
)
def test_send_timestamp(value: str, expected: int) -> None:
    assert send_properties({"timestamp": value}).timestamp == expected


@pytest.mark.parametrize("value", ["now", "", "1.5", "-1", str(2**64)])
def test_send_timestamp_invalid(value: str) -> None:
    with pytest.raises(ProcessingError):
        send_properties({"timestamp": value})


def test_send_expiration_is_verbatim() -> None:
    # The broker, not the gateway, refuses a non-numeric expiration.
    assert send_properties({"expiration": " soon "}).expiration == " soon "


def test_send_reply_to_override() -> None:
    headers = {"reply-to": "/temp-queue/t1"}
    assert send_properties(headers).reply_to == "/temp-queue/t1"
    props = send_properties(headers, reply_to="amq.gen-XYZ")
    assert (props.reply_to, props.headers) == ("amq.gen-XYZ", {})


# --------------------------------------------------------------------------
# Delivery -> MESSAGE headers


def delivery(
    properties: Properties,
    *,
    exchange: str = "amq.topic",
    routing_key: str = "a.b",
    redelivered: bool = False,
) -> Delivery:
    return Delivery(
        consumer_tag="T_sub-0",
        delivery_tag=1,
        redelivered=redelivered,
        exchange=exchange,
        routing_key=routing_key,
        properties=properties,
        body=b"hi",
    )


MID = "T_sub-0@@session-x@@1"


def test_message_headers_full_order() -> None:
    props = Properties(
        content_type="text/plain",
        content_encoding="utf-8",
        headers={"x-custom": "v", "x-count": 3},
        delivery_mode=2,
        priority=4,
        correlation_id="c-1",
        reply_to="amq.gen-R",
        expiration="1000",
        message_id="m-1",
        timestamp=1700000000,
        type="t",
        user_id="guest",
        app_id="app",
    )
    assert message_headers(
        delivery(props, redelivered=True), subscription="sub-0", message_id=MID, ack=MID
    ) == [
        ("subscription", "sub-0"),
        ("destination", "/topic/a.b"),
        ("message-id", MID),
        ("redelivered", "true"),
        ("ack", MID),
        ("x-custom", "v"),
        ("x-count", "3"),
        ("app-id", "app"),
        ("user-id", "guest"),
        ("type", "t"),
        ("timestamp", "1700000000"),
        ("amqp-message-id", "m-1"),
        ("expiration", "1000"),
        ("reply-to", "/reply-queue/amq.gen-R"),
        ("correlation-id", "c-1"),
        ("priority", "4"),
        ("persistent", "true"),
        ("content-encoding", "utf-8"),
        ("content-type", "text/plain"),
    ]


def test_message_headers_minimal() -> None:
    # No subscription header for an id-less (Q_) subscription, no ack in auto mode.
    props = Properties()
    assert message_headers(
        delivery(props, exchange="", routing_key="q"), subscription=None, message_id=MID, ack=None
    ) == [("destination", "/queue/q"), ("message-id", MID), ("redelivered", "false")]


def test_message_headers_empty_strings_are_set_values() -> None:
    props = Properties(content_type="", correlation_id="", headers={"x-e": ""})
    assert message_headers(delivery(props), subscription=None, message_id=MID, ack=None)[3:] == [
        ("x-e", ""),
        ("correlation-id", ""),
        ("content-type", ""),
    ]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [(2, [("persistent", "true")]), (1, [("persistent", "1")]), (None, [])],
)
def test_message_persistent(mode: int | None, expected: list[tuple[str, str]]) -> None:
    # maybe_header(persistent, 2) gives "true"; other modes are integers in decimal.
    props = Properties(delivery_mode=mode)
    assert message_headers(delivery(props), subscription=None, message_id=MID, ack=None)[3:] == (
        expected
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("text", "text"),
        ("", ""),
        ("ünï", "ünï"),
        (b"\xc3\xa9", "é"),
        (b"\xff\xfe", "\udcff\udcfe"),  # non-UTF-8 longstr: raw bytes, surrogate-escaped
        (0, "0"),
        (-42, "-42"),
        (2**40, "1099511627776"),
        (True, None),  # bool is an int subclass, still dropped
        (False, None),
        (1.5, None),
        (decimal.Decimal("1.5"), None),
        (datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC), None),
        ([{"count": 1}], None),  # x-death
        ({"a": "b"}, None),
        (None, None),
        (bytearray(b"raw"), None),  # AMQP byte array 'x'
    ],
)
def test_message_table_value_types(value: Any, expected: str | None) -> None:
    props = Properties(headers={"before": "1", "h": value, "after": "2"})
    headers = message_headers(delivery(props), subscription=None, message_id=MID, ack=None)[3:]
    middle = [] if expected is None else [("h", expected)]
    assert headers == [("before", "1"), *middle, ("after", "2")]


def test_message_table_bytes_key() -> None:
    props = Properties(headers={b"k\xc3\xa9": "v", 5: "dropped"})  # type: ignore[dict-item]
    assert message_headers(delivery(props), subscription=None, message_id=MID, ack=None)[3:] == [
        ("ké", "v")
    ]


def test_message_collisions_are_dropped() -> None:
    forged = {
        "destination": "/queue/forged",
        "message-id": "forged",
        "subscription": "forged",
        "content-length": "999",
        "ack": "forged",
        "redelivered": "true",
        "x-kept": "yes",
        "content-type": "from-table",  # not a frame header: kept, like the plugin
    }
    props = Properties(headers=forged, content_type="text/plain")
    assert message_headers(delivery(props), subscription="s", message_id=MID, ack=MID) == [
        ("subscription", "s"),
        ("destination", "/topic/a.b"),
        ("message-id", MID),
        ("redelivered", "false"),
        ("ack", MID),
        ("x-kept", "yes"),
        ("content-type", "from-table"),
        ("content-type", "text/plain"),
    ]


def test_message_broker_added_headers() -> None:
    props = Properties(
        headers={"x-delivery-count": 2, "x-stream-offset": 17, "x-death": [{"count": 1}]}
    )
    assert message_headers(delivery(props), subscription=None, message_id=MID, ack=None)[3:] == [
        ("x-delivery-count", "2"),
        ("x-stream-offset", "17"),
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("amq.gen-X", "/reply-queue/amq.gen-X"),
        ("", "/reply-queue/"),
        ("plain text", "/reply-queue/plain text"),
        ("/temp-queue/t", "/reply-queue//temp-queue/t"),
        ("/reply-queue", "/reply-queue//reply-queue"),
        ("/reply-queue/q", "/reply-queue/q"),
        ("/queue/q", "/queue/q"),
        ("/queuefoo", "/queuefoo"),  # a plain prefix test, as lists:prefix
        ("/topic/t", "/topic/t"),
        ("/exchange/x/k", "/exchange/x/k"),
        ("/amq/queue/q", "/amq/queue/q"),
        ("/amq/other", "/reply-queue//amq/other"),
    ],
)
def test_reply_to_prefixing(value: str, expected: str) -> None:
    assert reply_to_header(value) == expected
    props = Properties(reply_to=value)
    assert message_headers(delivery(props), subscription=None, message_id=MID, ack=None)[3:] == [
        ("reply-to", expected)
    ]


def test_reply_to_in_the_table_is_post_processed_too() -> None:
    props = Properties(headers={"reply-to": "amq.gen-T"})
    assert message_headers(delivery(props), subscription=None, message_id=MID, ack=None)[3:] == [
        ("reply-to", "/reply-queue/amq.gen-T")
    ]


@pytest.mark.parametrize(
    ("exchange", "routing_key", "destination"),
    [
        ("", "q", "/queue/q"),
        ("amq.topic", "a/b%c.d", "/topic/a%2Fb%25c.d"),
        ("x", "", "/exchange/x"),
        ("x", "k", "/exchange/x/k"),
    ],
)
def test_message_destination(exchange: str, routing_key: str, destination: str) -> None:
    d = delivery(Properties(), exchange=exchange, routing_key=routing_key)
    assert message_headers(d, subscription=None, message_id=MID, ack=None)[0] == (
        "destination",
        destination,
    )


def test_round_trip_send_to_message() -> None:
    # A SEND's custom headers come back on the MESSAGE (in the plugin's order).
    props = send_properties(
        {"destination": "/topic/a.b", "receipt": "r1", "x-app": "1", "persistent": "true"}
    )
    assert message_headers(delivery(props), subscription="s", message_id=MID, ack=None) == [
        ("subscription", "s"),
        ("destination", "/topic/a.b"),
        ("message-id", MID),
        ("redelivered", "false"),
        ("x-app", "1"),
        ("receipt", "r1"),
        ("persistent", "true"),
    ]
