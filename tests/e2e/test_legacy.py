"""Code written for rabbitmq_web_stomp with the legacy ``stompjs`` 2.3.3 keeps working.

static/legacy.html uses exactly the old API: ``Stomp.client(url)``,
``client.connect(login, passcode, onConnect, onError)``, ``subscribe``, ``send`` and
``onreceive`` for temp-queue replies. It offers ``v10.stomp, v11.stomp`` and negotiates
STOMP 1.1.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.e2e.helpers import Browser, run_example

pytestmark = pytest.mark.timeout(60)

NOTES_JS = """[...document.querySelectorAll('#notifications .note')].reverse().map(n => ({
  kind: n.dataset.kind, body: n.dataset.body, appId: n.dataset.appId,
  contentType: n.dataset.contentType, text: n.querySelector('.note-text').textContent,
}))"""
CHAT_JS = """[...document.querySelectorAll('#chat .chat-msg')].map(m => ({
  from: m.dataset.from, text: m.querySelector('.bubble').textContent,
  mine: m.classList.contains('mine'),
}))"""
RPC_JS = """[...document.querySelectorAll('#rpc .rpc')].map(r => ({
  state: r.className, reply: r.dataset.reply ?? null,
  answer: r.querySelector('.answer').textContent,
}))"""


def count_js(selector: str) -> str:
    return f"document.querySelectorAll({json.dumps(selector)}).length"


@pytest.mark.usefixtures("php")
async def test_legacy_stompjs_client_connect_flow(
    browser: Browser,
    http_base: str,
    gateway_url: str,
    exchange: str,
    rpc_queue: str,
    unique: str,
    responder: Any,
    stomp: Any,
) -> None:
    room = f"legacy-{unique[2:]}"
    out = await run_example("php", exchange, "broadcast", '{"text":"declares the exchange"}')
    assert out == f"sent to {exchange}/broadcast (unroutable: no subscriber, dropped)\n"
    rpc = await responder(count=1)
    query = urlencode(
        {"exchange": exchange, "user": "7", "room": room, "nick": "Linus", "rpc": rpc_queue}
    )
    await browser.goto(f"{http_base}legacy.html?{query}")

    await browser.wait_for("document.body.dataset.subscribed === 'true'")
    assert await browser.text("#state") == "connected"
    assert await browser.text("#info-version") == "1.1"  # stompjs 2.3.3 offers 1.0 and 1.1
    assert (await browser.text("#info-server")).startswith("stomp-gateway/")
    assert await browser.text("#info-url") == gateway_url

    out = await run_example("python", exchange, "user", "7", '{"text":"for user 7 only"}')
    assert out == f"sent to {exchange}/user.7 (routed)\n"
    await browser.wait_for(f"{count_js('#notifications .note')} === 1")
    out = await run_example("php", exchange, "broadcast", '{"text":"for everyone"}')
    assert out == f"sent to {exchange}/broadcast (routed)\n"
    await browser.wait_for(f"{count_js('#notifications .note')} === 2")
    assert await browser.eval(NOTES_JS) == [
        {
            "kind": "user",
            "body": '{"text":"for user 7 only"}',
            "appId": "examples/python/notify.py",
            "contentType": "application/json",
            "text": "for user 7 only",
        },
        {
            "kind": "broadcast",
            "body": '{"text":"for everyone"}',
            "appId": "examples/php/notify.php",
            "contentType": "application/json",
            "text": "for everyone",
        },
    ]
    assert await browser.text("#count-user") == "1"
    assert await browser.text("#count-broadcast") == "1"

    other = await stomp(gateway_url)
    await other.subscribe(f"/topic/chat.{room}", id="py-chat")
    await browser.submit("#chat-input", "old code, new gateway")
    frame = await other.recv_frame(timeout=10)
    assert frame.command == "MESSAGE"
    assert json.loads(frame.body) == {"from": "Linus", "text": "old code, new gateway"}
    await browser.wait_for(f"{count_js('#chat .chat-msg')} === 1")
    assert await browser.eval(CHAT_JS) == [
        {"from": "Linus", "text": "old code, new gateway", "mine": True},
    ]

    await browser.submit("#rpc-input", "temp queues")
    await browser.wait_for(f"{count_js('#rpc .rpc.done')} === 1")
    assert await browser.eval(RPC_JS) == [
        {
            "state": "rpc done",
            "reply": '{"reply":"TEMP QUEUES","request":"temp queues"}',
            "answer": "TEMP QUEUES",
        },
    ]
    assert await rpc.readline() == "replied legacy-rpc-1"
    assert await rpc.wait() == 0
    assert await browser.text("#info-error") == "\u2013"  # the placeholder: no error
    assert browser.problems() == []
