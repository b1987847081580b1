"""ERRORs that come from the broker, and CONNECT twice (webstomp.md 2.5, 2.11, 2.13).

A broker channel error ends the session on both targets (one AMQP channel per
session). 3.10.8 closes the socket before the ERROR (and any RECEIPT still queued)
is written (issue #6737, fixed in 3.11+); the gateway delivers them first. Tests
that show a deliberate difference end in ``_in_gateway`` and assert both.
"""

from __future__ import annotations

import contextlib
import uuid

import pytest

from tests.interop.helpers import assert_error, assert_receipt
from tests.support.amqp import rabbitmqctl

pytestmark = pytest.mark.interop


async def test_second_connect__error_in_gateway(target, stomp):
    # 3.10.8 (and main) crash the handler on a second CONNECT: close 1011, no frame.
    # The gateway answers ERROR "Bad CONNECT" and closes normally.
    ws = await stomp(target.url)
    await ws.send_frame("CONNECT", {"accept-version": "1.2", "login": "guest", "passcode": "guest"})
    code, _ = await ws.recv_close()
    if target.is_plugin:
        assert (code, ws.drained_frames) == (1011, [])
    else:
        assert code == 1000
        [err] = ws.drained_frames
        assert_error(err, "Bad CONNECT", b"Already connected")


@contextlib.asynccontextmanager
async def limited_user(management, **permissions):
    name = f"stomp-test-{uuid.uuid4().hex[:8]}"
    async with management.user(name, "secret", **permissions):
        yield name


async def test_access_refused_on_send__error_fixed_in_gateway(
    target, stomp, amqp, management, unique
):
    # publish_unauthorized_error: no write permission anywhere.
    await amqp.declare_queue(unique, durable=False)
    async with limited_user(management, write="^$") as user:
        ws = await stomp(target.url, login=user, passcode="secret")
        await ws.send_frame("SEND", {"destination": f"/amq/queue/{unique}", "receipt": "r"}, "x")
        code, _ = await ws.recv_close()
    assert code == 1000
    if target.is_plugin:
        assert ws.drained_frames == []
    else:
        [err] = ws.drained_frames
        body = f"ACCESS_REFUSED - access to exchange 'amq.default' in vhost '/' refused for user '{user}'"
        assert_error(err, "access_refused", body.encode())
    assert await amqp.message_count(unique) == 0


async def test_access_refused_on_subscribe__error_fixed_in_gateway(
    target, stomp, amqp, management, unique
):
    await amqp.declare_queue(unique, durable=False)
    async with limited_user(management, read="^$") as user:
        ws = await stomp(target.url, login=user, passcode="secret")
        await ws.send_frame("SUBSCRIBE", {"destination": f"/amq/queue/{unique}", "id": "s"})
        code, _ = await ws.recv_close()
    assert code == 1000
    if target.is_plugin:
        assert ws.drained_frames == []
    else:
        [err] = ws.drained_frames
        body = f"ACCESS_REFUSED - access to queue '{unique}' in vhost '/' refused for user '{user}'"
        assert_error(err, "access_refused", body.encode())


@contextlib.asynccontextmanager
async def max_message_size(limit):
    """Lower RabbitMQ's max_message_size for channels opened meanwhile; restore it."""
    original = (await rabbitmqctl("eval", "application:get_env(rabbit, max_message_size).")).strip()
    assert original.startswith("{ok,") and original.endswith("}"), original
    await rabbitmqctl("eval", f"application:set_env(rabbit, max_message_size, {limit}).")
    try:
        yield
    finally:
        value = original[len("{ok,") : -1]
        await rabbitmqctl("eval", f"application:set_env(rabbit, max_message_size, {value}).")


async def test_message_over_max_message_size__error_fixed_in_gateway(target, stomp, amqp, unique):
    await amqp.declare_queue(unique, durable=False)
    async with max_message_size(1024):
        ws = await stomp(target.url)
        await ws.send_frame(
            "SEND", {"destination": f"/amq/queue/{unique}", "receipt": "r"}, b"A" * 2000
        )
        code, _ = await ws.recv_close()
    assert code == 1000
    if target.is_plugin:
        assert ws.drained_frames == []
    else:
        [err] = ws.drained_frames
        body = b"PRECONDITION_FAILED - message size 2000 is larger than configured max size 1024"
        assert_error(err, "precondition_failed", body)
    assert await amqp.message_count(unique) == 0


async def test_publish_nack__error_in_gateway(target, stomp, amqp, unique):
    # A full queue with x-overflow=reject-publish nacks the publish. 3.10.8 (and main)
    # drop a nack silently: no RECEIPT, no ERROR. The gateway answers the SEND with a
    # non-fatal ERROR "Message rejected" carrying the receipt id.
    await amqp.declare_queue(
        unique, durable=False, arguments={"x-max-length": 1, "x-overflow": "reject-publish"}
    )
    ws = await stomp(target.url)
    await ws.send(f"/amq/queue/{unique}", "fits", receipt="r1")
    await ws.send_frame("SEND", {"destination": f"/amq/queue/{unique}", "receipt": "r2"}, "no")
    if target.is_plugin:
        await ws.expect_no_frame(0.5)
    else:
        assert_error(
            await ws.recv_frame(),
            "Message rejected",
            b"The broker did not accept a message (basic.nack)\n",
            ("receipt-id", "r2"),
        )
    await ws.send(f"/topic/{unique}", "still open", receipt="r3")
    assert await amqp.message_count(unique) == 1


async def test_receipt_then_error_before_close__fixed_in_gateway(target, stomp, unique):
    # The RECEIPT of a SEND confirmed before a fatal error, then the ERROR, then the
    # close. 3.10.8 drops every frame still queued when the session stops.
    missing = f"{unique}-missing"
    ws = await stomp(target.url)
    await ws.send_raw(
        f"SEND\ndestination:/topic/{unique}\nreceipt:r1\n\nx\x00"
        f"SUBSCRIBE\ndestination:/amq/queue/{missing}\nid:s\n\n\x00".encode()
    )
    code, _ = await ws.recv_close()
    assert code == 1000
    if target.is_plugin:
        assert ws.drained_frames == []
    else:
        receipt, err = ws.drained_frames
        assert_receipt(receipt, "r1")
        assert_error(err, "not_found", f"NOT_FOUND - no queue '{missing}' in vhost '/'".encode())
