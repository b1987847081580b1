"""Round trips per destination kind, with the exact MESSAGE headers (webstomp.md 3, 4.2).

Observed 3.10.8 MESSAGE header order: subscription, destination, message-id,
redelivered, [ack], <AMQP header-table entries, sorted>, app-id, user-id, type,
timestamp, amqp-message-id, expiration, reply-to, correlation-id, priority, persistent,
content-encoding, content-type, content-length. Headers are compared as multisets.
"""

from __future__ import annotations

import pytest

from tests.interop.helpers import AMQ_GEN_RE, assert_headers

pytestmark = pytest.mark.interop


def msg_headers(sub, destination, message_id, body, *extra):
    headers = []
    if sub is not None:
        headers.append(("subscription", sub))
    headers += [("destination", destination), ("message-id", message_id), ("redelivered", "false")]
    headers += list(extra)
    if body:
        headers.append(("content-length", str(len(body))))
    return headers


async def test_queue_send_then_subscribe(target, stomp, amqp, unique):
    amqp.track_queue(unique)
    ws = await stomp(target.url)
    await ws.send(f"/queue/{unique}", "hello", receipt="r1")  # receipt = publisher confirm
    await ws.subscribe(f"/queue/{unique}", id="s1", receipt=None)
    frame = await ws.recv_frame()
    assert frame.command == "MESSAGE"
    assert frame.body == b"hello"
    # the SEND's receipt header travels as an AMQP header
    assert_headers(
        frame,
        msg_headers(
            "s1", f"/queue/{unique}", f"T_s1@@{ws.session}@@1", b"hello", ("receipt", "r1")
        ),
    )


async def test_queue_subscribe_then_send(target, stomp, amqp, unique):
    amqp.track_queue(unique)
    sub = await stomp(target.url)
    pub = await stomp(target.url)
    await sub.subscribe(f"/queue/{unique}", id="s1")
    for i in range(3):
        await pub.send(f"/queue/{unique}", f"m{i}")
    for i in range(3):
        frame = await sub.recv_frame()
        assert frame.command == "MESSAGE"
        assert frame.body == f"m{i}".encode()
        assert_headers(
            frame,
            msg_headers(
                "s1", f"/queue/{unique}", f"T_s1@@{sub.session}@@{i + 1}", f"m{i}".encode()
            ),
        )


async def test_bare_name_is_a_queue(target, stomp, amqp, unique):
    amqp.track_queue(unique)
    ws = await stomp(target.url)
    await ws.subscribe(unique, id="s1")
    await ws.send(unique, "bare")
    frame = await ws.recv_frame()
    assert_headers(frame, msg_headers("s1", f"/queue/{unique}", f"T_s1@@{ws.session}@@1", b"bare"))
    assert await amqp.queue_exists(unique)


async def test_subscribe_without_id(target, stomp, amqp, unique):
    # No id: consumer tag Q_<destination>, and MESSAGE has no subscription header.
    amqp.track_queue(unique)
    ws = await stomp(target.url)
    await ws.subscribe(f"/queue/{unique}", id=None)
    await ws.send(f"/queue/{unique}", "x")
    frame = await ws.recv_frame()
    assert frame.header("subscription") is None
    assert_headers(
        frame, msg_headers(None, f"/queue/{unique}", f"Q_/queue/{unique}@@{ws.session}@@1", b"x")
    )


async def test_topic_two_subscribers(target, stomp, unique):
    key = f"{unique}.news"
    a = await stomp(target.url)
    b = await stomp(target.url)
    await a.subscribe(f"/topic/{key}", id="ta")
    await b.subscribe(f"/topic/{key}", id="tb")
    await a.send(f"/topic/{key}", "news", {"content-type": "text/plain"})
    for ws, sub in ((a, "ta"), (b, "tb")):
        frame = await ws.recv_frame()
        assert frame.body == b"news"
        assert_headers(
            frame,
            msg_headers(
                sub,
                f"/topic/{key}",
                f"T_{sub}@@{ws.session}@@1",
                b"news",
                ("content-type", "text/plain"),
            ),
        )


async def test_topic_wildcard_subscription_shows_publish_key(target, stomp, unique):
    ws = await stomp(target.url)
    await ws.subscribe(f"/topic/{unique}.*", id="w")
    await ws.send(f"/topic/{unique}.a", "1")
    frame = await ws.recv_frame()
    assert_headers(frame, msg_headers("w", f"/topic/{unique}.a", f"T_w@@{ws.session}@@1", b"1"))


async def test_exchange_amq_direct(target, stomp, unique):
    destination = f"/exchange/amq.direct/{unique}"
    ws = await stomp(target.url)
    await ws.subscribe(destination, id="d")
    await ws.send(destination, "direct")
    frame = await ws.recv_frame()
    assert_headers(frame, msg_headers("d", destination, f"T_d@@{ws.session}@@1", b"direct"))


async def test_exchange_amq_fanout(target, stomp, unique):
    ws = await stomp(target.url)
    await ws.subscribe("/exchange/amq.fanout", id="f")
    await ws.send("/exchange/amq.fanout", unique)
    frame = await ws.recv_frame()
    assert frame.body == unique.encode()
    assert_headers(
        frame, msg_headers("f", "/exchange/amq.fanout", f"T_f@@{ws.session}@@1", unique.encode())
    )


async def test_exchange_fanout_with_pattern_shows_send_key(target, stomp, amqp, unique):
    await amqp.declare_exchange(unique, "fanout", auto_delete=True)
    ws = await stomp(target.url)
    await ws.subscribe(f"/exchange/{unique}/ignored", id="f")
    await ws.send(f"/exchange/{unique}/other", "x")
    await ws.send(f"/exchange/{unique}", "y")
    frame = await ws.recv_frame()
    assert_headers(
        frame, msg_headers("f", f"/exchange/{unique}/other", f"T_f@@{ws.session}@@1", b"x")
    )
    frame = await ws.recv_frame()
    assert_headers(frame, msg_headers("f", f"/exchange/{unique}", f"T_f@@{ws.session}@@2", b"y"))


async def test_exchange_amq_topic_arrives_as_topic(target, stomp, unique):
    ws = await stomp(target.url)
    await ws.subscribe(f"/exchange/amq.topic/{unique}", id="t")
    await ws.send(f"/exchange/amq.topic/{unique}", "x")
    frame = await ws.recv_frame()
    assert_headers(frame, msg_headers("t", f"/topic/{unique}", f"T_t@@{ws.session}@@1", b"x"))
    # and a /topic SEND reaches an /exchange/amq.topic subscription
    await ws.send(f"/topic/{unique}", "y")
    frame = await ws.recv_frame()
    assert_headers(frame, msg_headers("t", f"/topic/{unique}", f"T_t@@{ws.session}@@2", b"y"))


async def test_destination_name_escaping(target, stomp, amqp, unique):
    # %2F in a name segment is unescaped to "/"; on MESSAGE, "/" -> %2F and "%" -> %25.
    await amqp.declare_exchange(f"{unique}/x", "topic", auto_delete=True)
    ws = await stomp(target.url)
    await ws.subscribe(f"/exchange/{unique}%2Fx/a%2Fb", id="e")
    await ws.send(f"/exchange/{unique}%2Fx/a%2Fb", "z")
    frame = await ws.recv_frame()
    assert_headers(
        frame, msg_headers("e", f"/exchange/{unique}%2Fx/a%2Fb", f"T_e@@{ws.session}@@1", b"z")
    )


async def test_amq_queue(target, stomp, amqp, unique):
    await amqp.declare_queue(unique, auto_delete=True)
    ws = await stomp(target.url)
    await ws.subscribe(f"/amq/queue/{unique}", id="aq")
    await ws.send(f"/amq/queue/{unique}", "via-stomp")
    frame = await ws.recv_frame()
    # shows the publish path (default exchange), not the subscription
    assert_headers(
        frame, msg_headers("aq", f"/queue/{unique}", f"T_aq@@{ws.session}@@1", b"via-stomp")
    )
    await amqp.publish("", unique, b"via-amqp", message_id="m-1")
    frame = await ws.recv_frame()
    assert_headers(
        frame,
        msg_headers(
            "aq",
            f"/queue/{unique}",
            f"T_aq@@{ws.session}@@2",
            b"via-amqp",
            ("amqp-message-id", "m-1"),
        ),
    )


async def test_amq_queue_send_to_missing_queue_is_silently_dropped(target, stomp, unique):
    ws = await stomp(target.url)
    await ws.send(f"/amq/queue/{unique}-missing", "lost", receipt="r1")
    await ws.expect_no_frame(0.2)
    assert await ws.is_open()


async def test_reply_queue(target, stomp, amqp, unique):
    await amqp.declare_queue(unique, auto_delete=True)
    ws = await stomp(target.url)
    await ws.subscribe(f"/reply-queue/{unique}", id="rq")
    await ws.send(f"/reply-queue/{unique}", "r")
    frame = await ws.recv_frame()
    assert_headers(frame, msg_headers("rq", f"/queue/{unique}", f"T_rq@@{ws.session}@@1", b"r"))


async def test_temp_queue_request_reply(target, stomp, amqp, unique):
    amqp.track_queue(unique)
    requester = await stomp(target.url)
    replier = await stomp(target.url)
    await replier.subscribe(f"/queue/{unique}", id="req")
    await requester.send(f"/queue/{unique}", "question", {"reply-to": "/temp-queue/foo"})

    request = await replier.recv_frame()
    reply_to = request.header("reply-to")
    assert reply_to is not None
    assert reply_to.startswith("/reply-queue/amq.gen-"), reply_to
    temp_queue = reply_to.removeprefix("/reply-queue/")
    assert AMQ_GEN_RE.match(temp_queue), temp_queue
    assert_headers(
        request,
        msg_headers(
            "req",
            f"/queue/{unique}",
            f"T_req@@{replier.session}@@1",
            b"question",
            ("reply-to", reply_to),
        ),
    )

    await replier.send(reply_to, "answer")
    reply = await requester.recv_frame()
    assert reply.body == b"answer"
    assert_headers(
        reply,
        msg_headers(
            "/temp-queue/foo",
            f"/queue/{temp_queue}",
            f"T_/temp-queue/foo@@{requester.session}@@1",
            b"answer",
        ),
    )

    # The same temp id reuses the same queue within the session.
    await requester.send(f"/queue/{unique}", "again", {"reply-to": "/temp-queue/foo"})
    request = await replier.recv_frame()
    assert request.header("reply-to") == reply_to
    # ... and the temp-queue subscription cannot be cancelled
    await requester.send_frame("UNSUBSCRIBE", {"id": "/temp-queue/foo"})
    frame = await requester.recv_frame()
    assert frame.command == "ERROR"
    assert frame.header("message") == "Invalid id"


async def test_temp_queue_reply_to_in_amqp_property_is_bare_name(target, stomp, amqp, unique):
    await amqp.declare_queue(unique, auto_delete=True)
    ws = await stomp(target.url)
    await ws.send(f"/amq/queue/{unique}", "q", {"reply-to": "/temp-queue/t1"}, receipt="r")
    message = await amqp.get(unique)
    reply_to = message.header.properties.reply_to
    assert AMQ_GEN_RE.match(reply_to), reply_to
    # the temp queue is exclusive to the STOMP session's connection
    assert await amqp.queue_is_exclusive_elsewhere(reply_to)
    # a reply published by an AMQP client reaches the session
    await amqp.publish("", reply_to, b"amqp-answer", message_id="m1")
    frame = await ws.recv_frame()
    assert_headers(
        frame,
        msg_headers(
            "/temp-queue/t1",
            f"/queue/{reply_to}",
            f"T_/temp-queue/t1@@{ws.session}@@1",
            b"amqp-answer",
            ("amqp-message-id", "m1"),
        ),
    )
    # exclusive: it goes away with the session
    await ws.disconnect()
    await ws.recv_close()
    await amqp.wait_queue(reply_to, exists=False)
