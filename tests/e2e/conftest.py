"""Fixtures for the end-to-end tests (tests/e2e/README.md says what they cover).

* ``browser``: a headless Chromium page (:class:`tests.e2e.helpers.Browser`); skips,
  with the reason, when node, /usr/bin/chromium or tests/e2e/node_modules is missing.
* ``php``: skips, with the reason, when php-cli or php-amqplib is missing.
* ``http_base``: ``http://127.0.0.1:PORT/`` of the in-process gateway (``gateway_url``).
* ``exchange``: a unique durable topic exchange name for the examples
  (``STOMP_EXCHANGE``), deleted at teardown; ``rpc_queue``: a unique request queue name,
  deleted at teardown; ``responder``: starts ``examples/python/rpc_server.py`` on it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

import pytest

from tests.e2e.helpers import Browser, BrowserUnavailable, Responder, missing_browser, missing_php
from tests.support.amqp import AmqpHelper


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    reason = missing_browser()
    if reason is not None:
        pytest.skip(f"E2E SKIPPED, browser unavailable: {reason}")
    try:
        page = await Browser.start()
    except BrowserUnavailable as exc:
        pytest.skip(f"E2E SKIPPED, Chromium does not start: {exc}")
    try:
        yield page
    finally:
        await page.close()


@pytest.fixture
def php() -> None:
    reason = missing_php()
    if reason is not None:
        pytest.skip(f"E2E SKIPPED, PHP example cannot run: {reason}")


@pytest.fixture
def http_base(gateway_url: str) -> str:
    """The gateway serves the demo on the WebSocket's port: ws://H:P/ws -> http://H:P/."""
    parts = urlsplit(gateway_url)
    return f"http://{parts.netloc}/"


@pytest.fixture
def exchange(unique: str, amqp: AmqpHelper) -> str:
    return amqp.track_exchange(f"stomp_exchange.{unique}")


@pytest.fixture
def rpc_queue(unique: str, amqp: AmqpHelper) -> str:
    return amqp.track_queue(f"rpc.{unique}")


@pytest.fixture
async def responder(rpc_queue: str) -> AsyncIterator[Callable[..., Awaitable[Responder]]]:
    """``await responder(count=1)``: rpc_server.py consuming ``rpc_queue``."""
    started: list[Responder] = []

    async def start(count: int | None = None) -> Responder:
        r = await Responder(rpc_queue, count).start()
        started.append(r)
        return r

    try:
        yield start
    finally:
        for r in started:
            await r.stop()
