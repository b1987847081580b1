"""Non-fatal ERROR frames: each leaves the socket open (webstomp.md 2.8, 2.13, 3)."""

from __future__ import annotations

import pytest

from tests.interop.helpers import assert_error

pytestmark = pytest.mark.interop

VALID_TYPES = (
    b"Valid destination types are: /temp-queue, /exchange, /topic, /queue, /amq/queue, "
    b"/reply-queue/.\n"
)


async def check_error(ws, command, headers, message, body):
    await ws.send_frame(command, headers)
    assert_error(await ws.recv_frame(), message, body)
    await ws.expect_no_frame(0.1)
    assert await ws.is_open()


async def test_send_missing_destination(target, stomp):
    ws = await stomp(target.url)
    await check_error(
        ws, "SEND", {}, "Missing destination", b"\"SEND\" must include a 'destination' header\n"
    )


async def test_subscribe_missing_destination(target, stomp):
    ws = await stomp(target.url)
    await check_error(
        ws,
        "SUBSCRIBE",
        {"id": "1"},
        "Missing destination",
        b"\"SUBSCRIBE\" must include a 'destination' header\n",
    )


async def test_send_with_message_id_is_invalid_and_gets_no_receipt(target, stomp, unique):
    ws = await stomp(target.url)
    headers = {"destination": f"/queue/{unique}", "message-id": "1", "receipt": "r1"}
    await check_error(
        ws, "SEND", headers, "Invalid header", b"'message-id' is not allowed on 'SEND'.\n"
    )


@pytest.mark.parametrize(
    "destination",
    ["/foo/bar", "foo/bar", "/queues/x", "/reply-queue", "/amq/foo", "/amq", "/", "//"],
)
async def test_unknown_destination(target, stomp, destination):
    ws = await stomp(target.url)
    body = f"'{destination}' is not a valid destination.\n".encode() + VALID_TYPES
    for command in ("SEND", "SUBSCRIBE"):
        await check_error(
            ws, command, {"destination": destination, "id": "1"}, "Unknown destination", body
        )


@pytest.mark.parametrize(
    ("destination", "body"),
    [
        # Live 3.10.8: "/queue/" reports '/', "/queue" reports ''.
        ("/queue/", b"'/' is not a valid queue destination\n"),
        ("/queue", b"'' is not a valid queue destination\n"),
        ("/queue/a/b", b"'/a/b' is not a valid queue destination\n"),
        ("/topic/", b"'/' is not a valid topic destination\n"),
        ("/topic/a/b", b"'/a/b' is not a valid topic destination\n"),
        ("/exchange/", b"'/' is not a valid exchange destination\n"),
        ("/exchange//foo", b"'//foo' is not a valid exchange destination\n"),
        ("/exchange/a/b/c", b"'/a/b/c' is not a valid exchange destination\n"),
        ("/amq/queue/", b"'/' is not a valid amqqueue destination\n"),
        ("/amq/queue/a/b", b"'/a/b' is not a valid amqqueue destination\n"),
        ("/reply-queue/", b"'/' is not a valid reply_queue destination\n"),
        ("/topic", b"'' is not a valid topic destination\n"),
        ("/exchange", b"'' is not a valid exchange destination\n"),
        ("/amq/queue", b"'' is not a valid amqqueue destination\n"),
        ("/temp-queue", b"'' is not a valid temp_queue destination\n"),
        ("/temp-queue/", b"'/' is not a valid temp_queue destination\n"),
        ("/temp-queue/a/b", b"'/a/b' is not a valid temp_queue destination\n"),
        ("", b"Destination cannot be blank"),
    ],
)
async def test_invalid_destination_shape(target, stomp, destination, body):
    ws = await stomp(target.url)
    for command in ("SEND", "SUBSCRIBE"):
        await check_error(
            ws, command, {"destination": destination, "id": "1"}, "Invalid destination", body
        )


@pytest.mark.parametrize("command", ["SEND", "SUBSCRIBE"])
async def test_temp_queue_as_destination(target, stomp, command):
    ws = await stomp(target.url)
    body = f"'/temp-queue/x' is not a valid destination for '{command}'\n".encode()
    await check_error(
        ws, command, {"destination": "/temp-queue/x", "id": "1"}, "Invalid destination", body
    )


async def test_unsubscribe_without_id_or_destination(target, stomp):
    ws = await stomp(target.url)
    await check_error(
        ws,
        "UNSUBSCRIBE",
        {"receipt": "r1"},
        "Missing destination or id",
        b"UNSUBSCRIBE must include a 'destination' or 'id' header",  # no trailing LF
    )


async def test_unsubscribe_unknown_id(target, stomp):
    ws = await stomp(target.url)
    await check_error(
        ws,
        "UNSUBSCRIBE",
        {"id": "nope"},
        "No subscription found",
        b"UNSUBSCRIBE must refer to an existing subscription.\n"
        b"Subscription to \"id='nope'\" not found.\n",
    )


async def test_unsubscribe_unknown_destination(target, stomp, unique):
    ws = await stomp(target.url)
    await check_error(
        ws,
        "UNSUBSCRIBE",
        {"destination": f"/queue/{unique}"},
        "No subscription found",
        b"UNSUBSCRIBE must refer to an existing subscription.\n"
        + f"Subscription to \"destination='/queue/{unique}'\" not found.\n".encode(),
    )


async def test_unsubscribe_temp_queue_id(target, stomp):
    ws = await stomp(target.url)
    await check_error(
        ws,
        "UNSUBSCRIBE",
        {"id": "/temp-queue/x"},
        "Invalid id",
        b"UNSUBSCRIBE 'id' may not start with /temp-queue/\n",
    )


async def test_subscribe_temp_queue_id_is_processing_error(target, stomp, amqp, unique):
    # The plugin declares the subscription queue before failing: name it to clean it up.
    amqp.track_queue(f"{unique}-subq")
    ws = await stomp(target.url)
    await check_error(
        ws,
        "SUBSCRIBE",
        {
            "destination": f"/topic/{unique}",
            "id": "/temp-queue/x",
            "x-queue-name": f"{unique}-subq",
        },
        "Processing error",
        b"Processing error",
    )


@pytest.mark.parametrize("flag", ["durable", "persistent"])
async def test_durable_subscription_without_id(target, stomp, unique, flag):
    ws = await stomp(target.url)
    await check_error(
        ws,
        "SUBSCRIBE",
        {"destination": f"/topic/{unique}", flag: "true"},
        "Missing Header",
        b"Header 'id' is required for durable subscriptions",
    )


async def test_errors_do_not_end_the_session(target, stomp, unique):
    # After a run of ERRORs the session still routes messages.
    ws = await stomp(target.url)
    for headers in ({}, {"destination": "/foo"}, {"destination": "/queue/a/b"}):
        await ws.send_frame("SEND", headers)
        assert (await ws.recv_frame()).command == "ERROR"
    await ws.subscribe(f"/topic/{unique}", id="s")
    await ws.send(f"/topic/{unique}", "still here")
    frame = await ws.recv_frame()
    assert frame.command == "MESSAGE"
    assert frame.body == b"still here"
