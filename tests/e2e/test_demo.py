"""The demo page (static/index.html, @stomp/stompjs 7) in headless Chromium, end to end.

Served by an in-process gateway, connected through it to the local RabbitMQ, fed by the
real backend examples (examples/python/notify.py, examples/php/notify.php, run as
subprocesses) and answered by examples/python/rpc_server.py. Each test uses its own
exchange, chat room and request queue, so counts are exact.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.e2e.helpers import ROOT, Browser, run_example

pytestmark = pytest.mark.timeout(60)

SCREENSHOT = ROOT / "tests" / "e2e" / "artifacts" / "demo.png"
ARTIFACTS = ROOT / os.environ.get("ARTIFACTS", ".artifacts")

NOTES_JS = """[...document.querySelectorAll('#notifications .note')].reverse().map(n => ({
  kind: n.dataset.kind,
  body: n.dataset.body,
  tag: n.querySelector('.tag').textContent,
  title: n.querySelector('.note-title').textContent,
  text: n.querySelector('.note-text').textContent,
  headers: Object.fromEntries([...n.querySelectorAll('dd')].map(d => [d.dataset.header, d.textContent])),
}))"""
CHAT_JS = """[...document.querySelectorAll('#chat .chat-msg')].map(m => ({
  from: m.dataset.from,
  who: m.querySelector('.who').textContent,
  text: m.querySelector('.bubble').textContent,
  mine: m.classList.contains('mine'),
}))"""
RPC_JS = """[...document.querySelectorAll('#rpc .rpc')].map(r => ({
  state: r.className,
  reply: r.dataset.reply ?? null,
  answer: r.querySelector('.answer').textContent,
}))"""
FRAMES_IN_JS = "[...document.querySelectorAll('#log .frame.in')].map(f => f.dataset.command)"
REPLY_FRAME_JS = """[...document.querySelectorAll('#log .frame.in[data-command=MESSAGE]')]
  .map(f => f.querySelector('.frame-headers').textContent)
  .find(h => h.includes('subscription:/temp-queue/rpc'))"""
CHIP_JS = "document.getElementById({!r}).dataset.status"


def count_js(selector: str) -> str:
    return f"document.querySelectorAll({json.dumps(selector)}).length"


def headers_of(block: str) -> dict[str, str]:
    return dict(line.split(":", 1) for line in block.splitlines())


def demo_url(base: str, page: str = "", **query: str) -> str:
    return f"{base}{page}?{urlencode(query)}"


def save_screenshot(shot: Path) -> None:
    """The run's screenshot goes to the CI artifacts (.artifacts/demo.png); the copy kept
    in git (tests/e2e/artifacts/demo.png) is refreshed only with UPDATE_SCREENSHOT=1."""
    assert shot.stat().st_size > 10_000
    if os.environ.get("UPDATE_SCREENSHOT") == "1" or not SCREENSHOT.exists():
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)


async def wait_subscribed(browser: Browser, *chips: str) -> None:
    for chip in chips:
        await browser.wait_for(f"{CHIP_JS.format(chip)} === 'ok'")


async def push(browser: Browser, lang: str, exchange: str, expect_notes: int, *cli: str) -> None:
    """Run one example, check it reports a routed publish, wait for the card."""
    out = await run_example(lang, exchange, *cli)
    target = f"user.{cli[1]}" if cli[0] == "user" else "broadcast"
    assert out == f"sent to {exchange}/{target} (routed)\n"
    await browser.wait_for(f"{count_js('#notifications .note')} === {expect_notes}")


@pytest.mark.usefixtures("php")
async def test_demo_notifications_chat_and_request_reply(
    browser: Browser,
    http_base: str,
    gateway_url: str,
    exchange: str,
    rpc_queue: str,
    unique: str,
    responder: Any,
    stomp: Any,
) -> None:
    room = f"lobby-{unique[2:]}"
    # The examples declare the exchange; nobody is subscribed yet, so this one is dropped.
    out = await run_example("python", exchange, "broadcast", '{"text":"too early"}')
    assert out == f"sent to {exchange}/broadcast (unroutable: no subscriber, dropped)\n"
    rpc = await responder(count=1)

    await browser.goto(
        demo_url(http_base, exchange=exchange, user="42", room=room, nick="Ada", rpc=rpc_queue)
    )
    await browser.wait_for("document.body.dataset.state === 'connected'")
    await wait_subscribed(browser, "sub-user", "sub-broadcast", "sub-chat")
    assert await browser.text("#state") == "connected"
    assert await browser.text("#info-url") == gateway_url
    assert (await browser.text("#info-server")).startswith("stomp-gateway/")
    assert await browser.text("#info-version") == "1.2"
    assert await browser.text("#dest-user") == f"/exchange/{exchange}/user.42"
    assert await browser.text("#dest-broadcast") == f"/exchange/{exchange}/broadcast"

    # -- notifications: per user and broadcast, from Python and from PHP -----------------
    await push(
        browser,
        "python",
        exchange,
        1,
        "user",
        "42",
        '{"title":"From Python","text":"hello from aio-pika"}',
    )
    await push(
        browser,
        "php",
        exchange,
        2,
        "user",
        "42",
        '{"title":"From PHP","text":"hello from php-amqplib"}',
    )
    await push(browser, "python", exchange, 3, "broadcast", '{"text":"everyone, from Python"}')
    await push(
        browser, "php", exchange, 4, "broadcast", '{"title":"Maintenance","text":"at 18:00 ✓"}'
    )
    py_headers = {
        "content-type": "application/json",
        "persistent": "true",
        "app-id": "examples/python/notify.py",
    }
    php_headers = {**py_headers, "app-id": "examples/php/notify.php"}
    assert await browser.eval(NOTES_JS) == [
        {
            "kind": "user",
            "body": '{"title":"From Python","text":"hello from aio-pika"}',
            "tag": "user.42",
            "title": "From Python",
            "text": "hello from aio-pika",
            "headers": py_headers,
        },
        {
            "kind": "user",
            "body": '{"title":"From PHP","text":"hello from php-amqplib"}',
            "tag": "user.42",
            "title": "From PHP",
            "text": "hello from php-amqplib",
            "headers": php_headers,
        },
        {
            "kind": "broadcast",
            "body": '{"text":"everyone, from Python"}',
            "tag": "broadcast",
            "title": "Notification",
            "text": "everyone, from Python",
            "headers": py_headers,
        },
        {
            "kind": "broadcast",
            "body": '{"title":"Maintenance","text":"at 18:00 ✓"}',
            "tag": "broadcast",
            "title": "Maintenance",
            "text": "at 18:00 ✓",
            "headers": php_headers,
        },
    ]
    assert await browser.text("#count-user") == "2"
    assert await browser.text("#count-broadcast") == "2"
    assert await browser.eval("document.getElementById('notifications-empty').hidden") is True

    # -- chat: the browser and a Python STOMP client in the same room ----------------------
    other = await stomp(gateway_url)
    await other.subscribe(f"/topic/chat.{room}", id="py-chat")
    await browser.submit("#chat-input", "Hello from the browser")
    frame = await other.recv_frame(timeout=10)
    assert frame.command == "MESSAGE"
    assert frame.header("destination") == f"/topic/chat.{room}"
    assert frame.header("content-type") == "application/json"
    assert json.loads(frame.body) == {"from": "Ada", "text": "Hello from the browser"}
    await other.send(
        f"/topic/chat.{room}",
        '{"from":"Grace","text":"Hi Ada, from Python"}',
        extra={"content-type": "application/json"},
    )
    await browser.wait_for(f"{count_js('#chat .chat-msg')} === 2")
    assert await browser.eval(CHAT_JS) == [
        {"from": "Ada", "who": "Ada (you)", "text": "Hello from the browser", "mine": True},
        {"from": "Grace", "who": "Grace", "text": "Hi Ada, from Python", "mine": False},
    ]
    assert await browser.text("#count-chat") == "2"
    assert await browser.eval("document.getElementById('chat-input').value") == ""

    # -- request / reply over /temp-queue ---------------------------------------------------
    await browser.submit("#rpc-input", "hello gateway")
    await browser.wait_for(f"{count_js('#rpc .rpc.done')} === 1")
    assert await browser.eval(RPC_JS) == [
        {
            "state": "rpc done",
            "reply": '{"reply":"HELLO GATEWAY","request":"hello gateway"}',
            "answer": "HELLO GATEWAY",
        },
    ]
    assert await browser.text("#count-rpc") == "1"
    assert (await rpc.readline()).startswith("replied rpc-1-")
    assert await rpc.wait() == 0  # --count 1: it answered exactly once
    reply = headers_of(await browser.eval(REPLY_FRAME_JS))
    assert reply["subscription"] == "/temp-queue/rpc"
    assert reply["destination"].startswith("/queue/amq.gen-")
    assert reply["correlation-id"].startswith("rpc-1-")
    assert reply["content-type"] == "application/json"

    # -- the frame log shows every frame received --------------------------------------------
    frames = Counter(await browser.eval(FRAMES_IN_JS))
    assert frames == {"CONNECTED": 1, "RECEIPT": 3, "MESSAGE": 4 + 2 + 1}
    assert await browser.text("#count-frames-in") == "11"
    assert await browser.eval("document.getElementById('banner').hidden") is True
    assert browser.problems() == []

    ARTIFACTS.mkdir(exist_ok=True)
    save_screenshot(await browser.screenshot(ARTIFACTS / "demo.png"))


async def test_demo_hints_when_the_exchange_is_missing(
    browser: Browser,
    http_base: str,
    exchange: str,
    unique: str,
    amqp: Any,
) -> None:
    """SUBSCRIBE to a missing exchange: the gateway answers ERROR not_found and closes;
    the page explains what to run, reconnects without the notification subscriptions
    (chat keeps working), and resumes them on Retry once a backend declared it."""
    room = f"lobby-{unique[2:]}"
    assert not await amqp.exchange_exists(exchange)
    await browser.goto(demo_url(http_base, exchange=exchange, user="7", room=room))

    await browser.wait_for("!document.getElementById('banner').hidden")
    assert await browser.eval("document.getElementById('banner').dataset.kind") == "hint"
    assert await browser.text("#banner-title") == f"Exchange '{exchange}' does not exist yet"
    assert await browser.text("#banner-code") == (
        f"STOMP_EXCHANGE={exchange} python examples/python/notify.py broadcast "
        """'{"title":"Hello","text":"everyone"}'\n"""
        f"STOMP_EXCHANGE={exchange} php examples/php/notify.php broadcast "
        """'{"title":"Hello","text":"everyone"}'"""
    )
    error = await browser.eval(
        "document.querySelector('#log .frame.in[data-command=ERROR] .frame-headers').textContent"
    )
    assert headers_of(error)["message"] == "not_found"
    body = await browser.eval(
        "document.querySelector('#log .frame.in[data-command=ERROR] .frame-body').textContent"
    )
    assert body == f"NOT_FOUND - no exchange '{exchange}' in vhost '/'"

    # stompjs reconnects (2 s) and the page subscribes to the chat only.
    await browser.wait_for(f"{CHIP_JS.format('sub-chat')} === 'ok'", timeout=15)
    assert await browser.eval(CHIP_JS.format("sub-user")) == "paused"
    assert await browser.eval(CHIP_JS.format("sub-broadcast")) == "paused"
    await browser.submit("#chat-input", "still here")
    await browser.wait_for(f"{count_js('#chat .chat-msg')} === 1")

    # A backend declares the exchange; Retry resumes the notifications.
    out = await run_example("python", exchange, "broadcast", '{"text":"declared"}')
    assert out.endswith("(unroutable: no subscriber, dropped)\n")
    await browser.click("#banner-retry")
    await wait_subscribed(browser, "sub-user", "sub-broadcast")
    assert await browser.eval("document.getElementById('banner').hidden") is True
    await push(browser, "python", exchange, 1, "user", "7", '{"text":"back in business"}')
    notes = await browser.eval(NOTES_JS)
    assert [(n["kind"], n["body"]) for n in notes] == [("user", '{"text":"back in business"}')]
    frames = Counter(await browser.eval(FRAMES_IN_JS))
    assert frames["ERROR"] == 1
    assert frames["CONNECTED"] == 2
    assert [p for p in browser.problems() if p.get("event") != "console"] == []
