"""STOMP headers <-> AMQP properties, both ways (webstomp.md 4)."""

from __future__ import annotations

import datetime
import decimal
import json

import pytest

from tests.interop.helpers import assert_headers
from tests.support.amqp import props

pytestmark = pytest.mark.interop


# -- SEND -> AMQP ---------------------------------------------------------------------------
async def test_send_properties_and_headers_to_amqp(target, stomp, amqp, unique):
    await amqp.declare_queue(unique, auto_delete=True)
    ws = await stomp(target.url)
    headers = [
        ("destination", f"/amq/queue/{unique}"),
        ("content-type", "text/plain; charset=utf-8"),
        ("content-encoding", "identity"),
        ("persistent", "true"),
        ("priority", "7"),
        ("correlation-id", "corr-1"),
        ("reply-to", "/queue/x"),
        ("expiration", "60000"),
        ("amqp-message-id", "amid-1"),
        ("timestamp", "1700000000"),
        ("type", "my-type"),
        ("app-id", "my-app"),
        ("user-id", "guest"),
        ("x-custom", "v:1"),
        ("x-newline", "a\nb"),
        ("x-backslash", "c\\d"),
        ("dup", "first"),
        ("dup", "second"),
        ("durable", "true"),
        ("x-max-length", "5"),
        ("id", "some-id"),
        ("ack", "client"),
        ("héader", "välue"),
        ("empty", ""),
        ("receipt", "r-1"),
    ]
    body = b"bo\x00dy"
    await ws.send_frame("SEND", headers, body, content_length=True)
    frame = await ws.recv_frame()
    assert frame.command == "RECEIPT"

    message = await amqp.get(unique)
    assert message.body == body
    properties = props(message)
    table = properties.pop("headers")
    assert properties == {
        "content_type": "text/plain; charset=utf-8",
        "content_encoding": "identity",
        "delivery_mode": 2,
        "priority": 7,
        "correlation_id": "corr-1",
        "reply_to": "/queue/x",
        "expiration": "60000",
        "message_id": "amid-1",
        "timestamp": datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=datetime.UTC),
        "message_type": "my-type",
        "user_id": "guest",
        "app_id": "my-app",
    }
    # Every other header goes into the table as a longstr, first duplicate only,
    # receipt and content-length included.
    assert table == {
        "x-custom": "v:1",
        "x-newline": "a\nb",
        "x-backslash": "c\\d",
        "dup": "first",
        "durable": "true",
        "x-max-length": "5",
        "id": "some-id",
        "ack": "client",
        "héader": "välue",
        "empty": "",
        "receipt": "r-1",
        "content-length": str(len(body)),
    }


@pytest.mark.parametrize(
    ("value", "delivery_mode"), [("true", 2), ("True", 2), ("false", None), ("yes", None)]
)
async def test_send_persistent_values(target, stomp, amqp, unique, value, delivery_mode):
    await amqp.declare_queue(unique, auto_delete=True)
    ws = await stomp(target.url)
    await ws.send(f"/amq/queue/{unique}", "p", {"persistent": value}, receipt="r")
    message = await amqp.get(unique)
    assert message.header.properties.delivery_mode == delivery_mode
    # "persistent" is not forwarded; the receipt header is
    assert message.header.properties.headers == {"receipt": "r"}


async def test_send_minimal_has_no_properties(target, stomp, amqp, unique):
    await amqp.declare_queue(unique, auto_delete=True)
    ws = await stomp(target.url)
    await ws.send(f"/amq/queue/{unique}", "")
    message = await amqp.get(unique)
    assert message.body == b""
    properties = props(message)
    assert not properties.pop("headers", None)
    assert properties == {}


@pytest.mark.parametrize("header", ["priority", "timestamp"])
async def test_send_non_integer_property_is_processing_error(target, stomp, amqp, unique, header):
    await amqp.declare_queue(unique, auto_delete=True)
    ws = await stomp(target.url)
    await ws.send_frame("SEND", {"destination": f"/amq/queue/{unique}", header: "x"}, "z")
    frame = await ws.recv_frame()
    assert frame.command == "ERROR"
    assert frame.header("message") == "Processing error"
    assert frame.body == b"Processing error"
    assert await ws.is_open()
    await amqp.expect_empty(unique, 0.2)


# -- AMQP -> MESSAGE ------------------------------------------------------------------------
async def test_amqp_properties_and_table_to_stomp(target, stomp, amqp, unique):
    await amqp.declare_queue(unique, auto_delete=True)
    ws = await stomp(target.url)
    await ws.subscribe(f"/amq/queue/{unique}", id="s")
    table = {
        "s": "str",
        "with:colon": "v:1\nline2\\x",
        "int8": 3,  # b: dropped
        "int16": 1000,  # s: dropped
        "uint16": 40000,  # u: dropped
        "int32": 100000,  # I: kept
        "neg32": -100000,  # I: kept
        "uint32": 3000000000,  # i: dropped
        "int64": 2**40,  # l: kept
        "bool": True,
        "float": 1.5,
        "decimal": decimal.Decimal("1.5"),
        "ts": datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
        "list": [1, "a"],
        "table": {"k": "v"},
        "bytes": bytearray(b"raw"),
        "void": None,
    }
    await amqp.publish(
        "",
        unique,
        b"body",
        content_type="application/json",
        content_encoding="gzip",
        delivery_mode=2,
        priority=5,
        correlation_id="c-1",
        reply_to="amq.gen-X",
        expiration="60000",
        message_id="mid-1",
        timestamp=datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        message_type="t1",
        user_id="guest",
        app_id="app1",
        headers=table,
    )
    frame = await ws.recv_frame()
    assert frame.body == b"body"
    assert_headers(
        frame,
        [
            ("subscription", "s"),
            ("destination", f"/queue/{unique}"),
            ("message-id", f"T_s@@{ws.session}@@1"),
            ("redelivered", "false"),
            ("int32", "100000"),
            ("int64", str(2**40)),
            ("neg32", "-100000"),
            ("s", "str"),
            ("with:colon", "v:1\nline2\\x"),
            ("app-id", "app1"),
            ("user-id", "guest"),
            ("type", "t1"),
            ("timestamp", "1704164645"),
            ("amqp-message-id", "mid-1"),
            ("expiration", "60000"),
            ("reply-to", "/reply-queue/amq.gen-X"),
            ("correlation-id", "c-1"),
            ("priority", "5"),
            ("persistent", "true"),
            ("content-encoding", "gzip"),
            ("content-type", "application/json"),
            ("content-length", "4"),
        ],
    )


async def test_amqp_delivery_mode_1_gives_persistent_1(target, stomp, amqp, unique):
    # 3.10.8 prints any delivery_mode other than 2 as a number: aio-pika's default
    # (delivery_mode=1, priority=0) shows up as persistent:1 and priority:0.
    await amqp.declare_queue(unique, auto_delete=True)
    ws = await stomp(target.url)
    await ws.subscribe(f"/amq/queue/{unique}", id="s")
    await amqp.publish("", unique, b"x", delivery_mode=1, priority=0, message_id="m")
    frame = await ws.recv_frame()
    assert_headers(
        frame,
        [
            ("subscription", "s"),
            ("destination", f"/queue/{unique}"),
            ("message-id", f"T_s@@{ws.session}@@1"),
            ("redelivered", "false"),
            ("amqp-message-id", "m"),
            ("priority", "0"),
            ("persistent", "1"),
            ("content-length", "1"),
        ],
    )


@pytest.mark.parametrize(
    ("reply_to", "shown"),
    [
        ("/queue/rr", "/queue/rr"),
        ("/exchange/x/y", "/exchange/x/y"),
        ("/topic/t", "/topic/t"),
        ("/amq/queue/q", "/amq/queue/q"),
        ("/reply-queue/q", "/reply-queue/q"),
        ("plain text", "/reply-queue/plain text"),
        ("amq.gen-abc", "/reply-queue/amq.gen-abc"),
    ],
)
async def test_amqp_reply_to_prefixing(target, stomp, amqp, unique, reply_to, shown):
    await amqp.declare_queue(unique, auto_delete=True)
    ws = await stomp(target.url)
    await ws.subscribe(f"/amq/queue/{unique}", id="s")
    await amqp.publish("", unique, b"", reply_to=reply_to, message_id="m")
    frame = await ws.recv_frame()
    # empty body: no content-length header
    assert_headers(
        frame,
        [
            ("subscription", "s"),
            ("destination", f"/queue/{unique}"),
            ("message-id", f"T_s@@{ws.session}@@1"),
            ("redelivered", "false"),
            ("amqp-message-id", "m"),
            ("reply-to", shown),
        ],
    )


async def test_amqp_headers_colliding_with_stomp_headers__dropped_in_gateway(
    target, stomp, amqp, unique
):
    # 3.10.8 appends colliding AMQP headers after the real ones (a STOMP 1.2 client
    # takes the first); the reference asks a replacement to drop them. A stored
    # content-length is always replaced by the real one.
    await amqp.declare_queue(unique, auto_delete=True)
    ws = await stomp(target.url)
    await ws.subscribe(f"/amq/queue/{unique}", id="s")
    await amqp.publish(
        "",
        unique,
        b"body",
        message_id="m",
        headers={
            "destination": "/queue/forged",
            "message-id": "forged",
            "subscription": "forged",
            "content-length": "999",
            "x-ok": "1",
        },
    )
    frame = await ws.recv_frame()
    real = [
        ("subscription", "s"),
        ("destination", f"/queue/{unique}"),
        ("message-id", f"T_s@@{ws.session}@@1"),
        ("redelivered", "false"),
        ("x-ok", "1"),
        ("amqp-message-id", "m"),
        ("content-length", "4"),
    ]
    if target.name == "plugin":
        forged = [
            ("destination", "/queue/forged"),
            ("message-id", "forged"),
            ("subscription", "forged"),
        ]
        assert_headers(frame, real + forged)
    else:
        assert_headers(frame, real)


async def test_seed_scenario_topic_exchange_json(target, stomp, amqp, unique):
    # The project's seed scenario: a backend publishes JSON to a durable topic exchange,
    # a browser subscribed to /exchange/stomp_exchange/user.42 receives it.
    await amqp.channel.declare_exchange("stomp_exchange", "topic", durable=True)
    ws = await stomp(target.url)
    await ws.subscribe("/exchange/stomp_exchange/user.42", id="sub-0")
    body = json.dumps({"user": 42, "text": f"hello {unique}", "ok": True}).encode()
    await amqp.publish(
        "stomp_exchange",
        "user.42",
        body,
        content_type="application/json",
        delivery_mode=2,
        message_id=unique,
    )
    frame = await ws.recv_frame()
    assert frame.command == "MESSAGE"
    assert frame.body == body
    assert json.loads(frame.body)["text"] == f"hello {unique}"
    assert_headers(
        frame,
        [
            ("subscription", "sub-0"),
            ("destination", "/exchange/stomp_exchange/user.42"),
            ("message-id", f"T_sub-0@@{ws.session}@@1"),
            ("redelivered", "false"),
            ("amqp-message-id", unique),
            ("persistent", "true"),
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
        ],
    )


async def test_custom_headers_round_trip_stomp_to_stomp(target, stomp, unique):
    ws = await stomp(target.url)
    await ws.subscribe(f"/topic/{unique}", id="s")
    await ws.send(
        f"/topic/{unique}",
        "b",
        [("x-a", "1"), ("x-colon", "a:b"), ("x-nl", "l1\nl2"), ("x-utf8", "é✓"), ("x-a", "2")],
    )
    frame = await ws.recv_frame()
    assert_headers(
        frame,
        [
            ("subscription", "s"),
            ("destination", f"/topic/{unique}"),
            ("message-id", f"T_s@@{ws.session}@@1"),
            ("redelivered", "false"),
            ("x-a", "1"),
            ("x-colon", "a:b"),
            ("x-nl", "l1\nl2"),
            ("x-utf8", "é✓"),
            ("content-length", "1"),
        ],
    )
    raw = ws.raw_messages[-1]
    assert b"\nx-colon:a\\cb\n" in raw
    assert b"\nx-nl:l1\\nl2\n" in raw
