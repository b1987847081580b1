"""The backend push examples, on the AMQP side: what exactly they declare and publish.

examples/python/notify.py (aio-pika) and examples/php/notify.php (php-amqplib) must
behave the same: a durable topic exchange, JSON bodies, content_type application/json,
delivery_mode 2, routing keys ``user.<id>`` and ``broadcast``, and one stdout line saying
whether the message was routed.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from tests.e2e.helpers import NOTIFY_PHP, NOTIFY_PY, example_env, run, run_example
from tests.support.amqp import AmqpHelper, props, rabbitmqctl

pytestmark = pytest.mark.timeout(60)

APP_IDS = {"python": "examples/python/notify.py", "php": "examples/php/notify.php"}


@pytest.fixture(params=["python", "php"])
def lang(request: pytest.FixtureRequest) -> str:
    if request.param == "php":
        request.getfixturevalue("php")  # skips, with the reason, without php-amqplib
    return str(request.param)


async def bound_queue(amqp: AmqpHelper, exchange: str, unique: str, *keys: str) -> str:
    queue = await amqp.declare_queue(f"{unique}.inbox", exclusive=True)
    for key in keys:
        await queue.bind(exchange, key)
    return str(queue.name)


async def test_declares_a_durable_topic_exchange(
    lang: str, exchange: str, amqp: AmqpHelper
) -> None:
    out = await run_example(lang, exchange, "broadcast", '{"text":"anyone?"}')
    assert out == f"sent to {exchange}/broadcast (unroutable: no subscriber, dropped)\n"
    rows = json.loads(
        await rabbitmqctl(
            "list_exchanges", "-q", "--formatter", "json", "name", "type", "durable", "auto_delete"
        )
    )
    assert {"name": exchange, "type": "topic", "durable": True, "auto_delete": False} in rows


@pytest.mark.parametrize(
    ("cli", "routing_key", "body"),
    [
        (("user", "42", '{"text":"hi"}'), "user.42", '{"text":"hi"}'),
        (("broadcast", '{"text":"all"}'), "broadcast", '{"text":"all"}'),
        # Compact JSON, UTF-8 kept as is, "/" not escaped, {} stays an object.
        (
            ("user", "u-9", '{ "text": "héllo ✓ a/b", "data": {}, "n": [1, 2.5] }'),
            "user.u-9",
            '{"text":"héllo ✓ a/b","data":{},"n":[1,2.5]}',
        ),
    ],
    ids=["user", "broadcast", "unicode"],
)
async def test_publishes_json_persistently(
    lang: str,
    exchange: str,
    unique: str,
    amqp: AmqpHelper,
    cli: tuple[str, ...],
    routing_key: str,
    body: str,
) -> None:
    await amqp.declare_exchange(exchange, "topic", durable=True)
    queue = await bound_queue(amqp, exchange, unique, "user.*", "broadcast")
    out = await run_example(lang, exchange, *cli)
    assert out == f"sent to {exchange}/{routing_key} (routed)\n"
    message = await amqp.get(queue)
    assert message.body.decode("utf-8") == body
    assert message.delivery.exchange == exchange
    assert message.delivery.routing_key == routing_key
    properties = props(message)
    assert {k: properties.pop(k, None) for k in ("content_type", "delivery_mode", "app_id")} == {
        "content_type": "application/json",
        "delivery_mode": 2,
        "app_id": APP_IDS[lang],
    }
    # aio-pika always adds an empty header table, priority 0 and a random message_id.
    assert set(properties) <= ({"headers", "priority", "message_id"} if lang == "python" else set())
    await amqp.expect_empty(queue)


async def test_rejects_a_payload_that_is_not_json(lang: str, exchange: str) -> None:
    args: tuple[str, ...]
    if lang == "python":
        args = (sys.executable, str(NOTIFY_PY), "user", "42", "not json")
    else:
        args = ("php", str(NOTIFY_PHP), "user", "42", "not json")
    with pytest.raises(AssertionError, match="exited 2"):
        await run(*args, env=example_env(exchange))


async def test_library_api(exchange: str, unique: str, amqp: AmqpHelper) -> None:
    """``Notifier`` / ``send_to_user`` / ``broadcast`` as a Python backend imports them."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"notify_{unique[2:]}", NOTIFY_PY)
    assert spec is not None and spec.loader is not None
    notify: Any = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(notify)
    async with notify.Notifier(exchange=exchange) as notifier:
        queue = await bound_queue(amqp, exchange, unique, "user.42")
        assert await notifier.send_to_user(42, {"n": 1}) is True
        assert await notifier.broadcast({"n": 2}) is False  # nobody bound to "broadcast"
    message = await amqp.get(queue)
    assert message.body == b'{"n":1}'
    await amqp.expect_empty(queue)
