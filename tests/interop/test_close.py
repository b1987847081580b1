"""How sessions end (webstomp.md 2.1, 2.2, 2.8, 2.13).

Where 3.10.8 is buggy (it drops every frame still queued when the session stops: the
DISCONNECT receipt, the ERROR before a fatal close) and newer releases deliver them, the
gateway follows the newer releases; those tests say so in their names.
"""

from __future__ import annotations

import pytest

from tests.interop.helpers import assert_error, assert_receipt

pytestmark = pytest.mark.interop


async def test_disconnect_closes_1000(target, stomp):
    ws = await stomp(target.url)
    await ws.send_frame("DISCONNECT", {})
    code, reason = await ws.recv_close()
    assert code == 1000
    if target.name == "plugin":
        assert reason == "STOMP died"
    assert ws.drained_frames == []


async def test_disconnect_receipt__fixed_in_gateway(target, stomp):
    # 3.10.8 queues the RECEIPT but closes the socket first; 3.11+ deliver it.
    ws = await stomp(target.url)
    await ws.send_frame("DISCONNECT", {"receipt": "bye"})
    code, reason = await ws.recv_close()
    assert code == 1000
    if target.name == "plugin":
        assert reason == "STOMP died"
        assert ws.drained_frames == []
    else:
        assert len(ws.drained_frames) == 1
        assert_receipt(ws.drained_frames[0], "bye")


async def test_subscribe_missing_exchange__error_fixed_in_gateway(target, stomp, amqp, unique):
    # A channel error kills the session. 3.10.8 loses the ERROR (issue #6737); 3.11+
    # send ERROR not_found, then close 1000.
    missing = f"{unique}-missing"
    amqp.track_queue(f"{unique}-subq")  # x-queue-name: a known name to clean up
    ws = await stomp(target.url)
    await ws.send_frame(
        "SUBSCRIBE",
        {"destination": f"/exchange/{missing}", "id": "1", "x-queue-name": f"{unique}-subq"},
    )
    code, reason = await ws.recv_close()
    assert code == 1000
    if target.name == "plugin":
        assert reason == "STOMP died"
        assert ws.drained_frames == []
    else:
        assert len(ws.drained_frames) == 1
        body = f"NOT_FOUND - no exchange '{missing}' in vhost '/'".encode()
        assert_error(ws.drained_frames[0], "not_found", body)


async def test_send_missing_exchange__error_fixed_in_gateway(target, stomp, unique):
    missing = f"{unique}-missing"
    ws = await stomp(target.url)
    await ws.send_frame("SEND", {"destination": f"/exchange/{missing}/k"}, "x")
    code, reason = await ws.recv_close()
    assert code == 1000
    if target.name == "plugin":
        assert reason == "STOMP died"
        assert ws.drained_frames == []
    else:
        assert len(ws.drained_frames) == 1
        body = f"NOT_FOUND - no exchange '{missing}' in vhost '/'".encode()
        assert_error(ws.drained_frames[0], "not_found", body)


async def test_subscribe_missing_amq_queue__error_fixed_in_gateway(target, stomp, unique):
    missing = f"{unique}-missing"
    ws = await stomp(target.url)
    await ws.send_frame("SUBSCRIBE", {"destination": f"/amq/queue/{missing}", "id": "1"})
    code, _ = await ws.recv_close()
    assert code == 1000
    if target.name == "plugin":
        assert ws.drained_frames == []
    else:
        assert len(ws.drained_frames) == 1
        body = f"NOT_FOUND - no queue '{missing}' in vhost '/'".encode()
        assert_error(ws.drained_frames[0], "not_found", body)


async def test_duplicate_subscription_id__error_fixed_in_gateway(target, stomp, amqp, unique):
    amqp.track_queue(unique)
    ws = await stomp(target.url)
    await ws.subscribe(f"/queue/{unique}", id="1")
    await ws.send_frame("SUBSCRIBE", {"destination": f"/queue/{unique}", "id": "1"})
    code, _ = await ws.recv_close()
    assert code == 1000
    if target.name == "plugin":
        assert ws.drained_frames == []
    else:
        assert len(ws.drained_frames) == 1
        assert_error(
            ws.drained_frames[0],
            "Duplicated subscription identifier",
            b"A subscription identified by 'T_1' already exists.",
        )


async def test_frames_after_fatal_error_are_not_processed(target, stomp, amqp, unique):
    # The SEND behind the failing SUBSCRIBE in the same WS message is never published.
    await amqp.declare_queue(unique, auto_delete=True)
    ws = await stomp(target.url)
    await ws.send_raw(
        f"SUBSCRIBE\ndestination:/exchange/{unique}-missing\nid:1\n"
        f"x-queue-name:{unique}-subq\n\n\x00"
        f"SEND\ndestination:/amq/queue/{unique}\n\nlate\x00".encode()
    )
    amqp.track_queue(f"{unique}-subq")
    code, _ = await ws.recv_close()
    assert code == 1000
    await amqp.expect_empty(unique, 0.2)


@pytest.mark.parametrize(
    ("frame", "plugin_reason"),
    [
        (b"SEND\ndestination:/queue/x\nfoo\n\nx\x00", '{header_no_value,"foo"}'),
        (b"SEND\ndestination:/queue/x\nfoo:a\\tb\n\nx\x00", '{bad_escape,"\\\\t"}'),
        (b"SEND\ndestination:/queue/x\nfoo:a\rob\n\nx\x00", '{unexpected_chars_in_header,"\\ro"}'),
    ],
    ids=["header-without-colon", "bad-escape", "bare-cr"],
)
async def test_parse_error_closes_1007(target, stomp, frame, plugin_reason):
    # No ERROR frame: the socket closes with 1007 (3.10.8: the reason is an Erlang term).
    ws = await stomp(target.url)
    await ws.send_raw(frame)
    code, reason = await ws.recv_close()
    assert code == 1007
    assert ws.drained_frames == []
    if target.name == "plugin":
        assert reason == plugin_reason


async def test_parse_error_before_connect_closes_1007(target, stomp):
    ws = await stomp(target.url, connect=False)
    await ws.send_raw(b"CONNECT\nlogin:guest\npasscode:gu\\est\n\n\x00")
    code, reason = await ws.recv_close()
    assert code == 1007
    if target.name == "plugin":
        assert reason == '{bad_escape,"\\\\e"}'


async def test_invalid_utf8_text_message_closes_1007(target, stomp):
    ws = await stomp(target.url)
    await ws.send_raw(b"SEND\ndestination:/queue/x\n\n\xff\xfe\x00", binary=False)
    code, _ = await ws.recv_close()
    assert code == 1007
