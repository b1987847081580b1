"""Queues the session declares: names and properties (webstomp.md 3), checked with
``rabbitmqctl list_queues``."""

from __future__ import annotations

import pytest

from tests.interop.helpers import assert_receipt, durable_subscription_queue
from tests.support.amqp import queue_info

pytestmark = pytest.mark.interop


def shape(info):
    assert info is not None, "queue not found"
    return {k: info[k] for k in ("durable", "auto_delete", "exclusive")}


async def test_durable_topic_subscription_queue_name(target, stomp, amqp, unique):
    key, sub_id = f"{unique}.dur", "my-durable-id"
    name = durable_subscription_queue(key, sub_id)
    amqp.track_queue(name)
    ws = await stomp(target.url)
    await ws.subscribe(
        f"/topic/{key}", id=sub_id, extra={"durable": "true", "auto-delete": "false"}
    )
    info = await queue_info(name)
    assert shape(info) == {"durable": True, "auto_delete": False, "exclusive": False}
    assert info["arguments"] == []

    # Messages sent while nobody is subscribed wait in the durable queue.
    await ws.disconnect()
    await ws.recv_close()
    other = await stomp(target.url)
    await other.send(f"/topic/{key}", "kept", receipt="r")
    again = await stomp(target.url)
    await again.subscribe(
        f"/topic/{key}", id=sub_id, extra={"durable": "true", "auto-delete": "false"}
    )
    frame = await again.recv_frame()
    assert frame.command == "MESSAGE"
    assert frame.body == b"kept"

    # UNSUBSCRIBE with durable:true deletes the queue.
    await again.send_frame("UNSUBSCRIBE", {"id": sub_id, "durable": "true", "receipt": "u"})
    assert_receipt(await again.recv_frame(), "u")
    await amqp.wait_queue(name, exists=False)


async def test_durable_topic_subscription_without_auto_delete_false(target, stomp, amqp, unique):
    # durable:true alone gives a durable *auto-delete* queue (a known surprise).
    key, sub_id = f"{unique}.dur2", "id2"
    name = durable_subscription_queue(key, sub_id)
    amqp.track_queue(name)
    ws = await stomp(target.url)
    await ws.subscribe(f"/topic/{key}", id=sub_id, extra={"persistent": "true"})
    assert shape(await queue_info(name)) == {
        "durable": True,
        "auto_delete": True,
        "exclusive": False,
    }
    await ws.disconnect()
    await ws.recv_close()
    await amqp.wait_queue(name, exists=False)


@pytest.mark.parametrize("kind", ["topic", "exchange"])
async def test_non_durable_subscription_queue__exclusive_in_gateway(
    target, stomp, amqp, unique, kind
):
    # 3.10.8: transient, auto-delete, NOT exclusive (RabbitMQ 4.3+ refuses such queues);
    # the gateway declares them exclusive, like 4.3 (topic) and 3.12+ (exchange).
    name = amqp.track_queue(f"{unique}-sub")
    destination = f"/topic/{unique}" if kind == "topic" else f"/exchange/amq.direct/{unique}"
    ws = await stomp(target.url)
    await ws.subscribe(destination, id="s", extra={"x-queue-name": name})
    expected = {"durable": False, "auto_delete": True, "exclusive": target.name == "gateway"}
    assert shape(await queue_info(name)) == expected
    # x-queue-name is the queue that gets the messages
    await ws.send(destination, "x")
    frame = await ws.recv_frame()
    assert frame.body == b"x"
    await ws.disconnect()
    await ws.recv_close()
    await amqp.wait_queue(name, exists=False)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, {"durable": True, "auto_delete": False, "exclusive": False}),
        ({"durable": "false"}, {"durable": False, "auto_delete": True, "exclusive": True}),
        ({"auto-delete": "true"}, {"durable": True, "auto_delete": True, "exclusive": False}),
    ],
    ids=["default", "durable-false", "auto-delete"],
)
async def test_queue_destination_properties(target, stomp, amqp, unique, headers, expected):
    amqp.track_queue(unique)
    ws = await stomp(target.url)
    await ws.subscribe(f"/queue/{unique}", id="s", extra=headers)
    assert shape(await queue_info(unique)) == expected


async def test_queue_arguments_from_headers(target, stomp, amqp, unique):
    amqp.track_queue(unique)
    ws = await stomp(target.url)
    await ws.subscribe(
        f"/queue/{unique}",
        id="s",
        extra={
            "x-max-length": "5",
            "x-message-ttl": "60000",
            "x-dead-letter-exchange": "dlx",
            "x-overflow": "reject-publish",  # not passed by the plugin
            "x-foo": "bar",  # ignored
        },
    )
    info = await queue_info(unique)
    # [name, AMQP type, value]: integers are "long", strings "longstr"
    assert sorted(map(tuple, info["arguments"])) == [
        ("x-dead-letter-exchange", "longstr", "dlx"),
        ("x-max-length", "long", 5),
        ("x-message-ttl", "long", 60000),
    ]
