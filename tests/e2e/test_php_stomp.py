"""PHP's Stomp extension over plain TCP: the PHP manual's example
(examples/php/stomp_ext.php) against the gateway's TCP port, as it runs against
rabbitmq_stomp on 61613 (tests/interop/test_tcp_plugin.py compares the bytes)."""

# polling with short sleeps is bounded by asyncio.timeout
# ruff: noqa: ASYNC110

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess

import pytest

from tests.e2e.helpers import ROOT, run

pytestmark = pytest.mark.timeout(60)

STOMP_EXT_PHP = ROOT / "examples" / "php" / "stomp_ext.php"


def missing_php_stomp() -> str | None:
    if shutil.which("php") is None:
        return "php is not installed (Debian package php-cli)"
    loaded = subprocess.run(
        ["php", "-r", 'exit(extension_loaded("stomp") ? 0 : 1);'],
        capture_output=True,
        timeout=20,
        check=False,
    )
    if loaded.returncode != 0:
        return "the PHP Stomp extension is not loaded (Debian package php-stomp)"
    return None


@pytest.fixture
def php_stomp() -> None:
    reason = missing_php_stomp()
    if reason is not None:
        pytest.skip(f"E2E SKIPPED: {reason}; run `bash scripts/ensure-e2e-deps.sh`")


async def test_php_manual_example_against_the_gateway(php_stomp, gateway_factory, amqp, unique):
    gw = await gateway_factory(tcp_port=0)
    queue = amqp.track_queue(f"foo-{unique}")
    done = await run(
        "php",
        str(STOMP_EXT_PHP),
        env={
            "STOMP_URL": f"tcp://127.0.0.1:{gw.server.tcp_port}",
            "STOMP_QUEUE": f"/queue/{queue}",
        },
    )
    session = re.search(r"@@(session-[A-Za-z0-9_-]{22})@@", done.stdout)
    assert session is not None, done.stdout
    message_id = f"Q_/queue/{queue}@@{session.group(1)}@@1"
    assert done.stdout == (
        "object(StompFrame)#2 (3) {\n"
        '  ["command"]=>\n'
        '  string(7) "MESSAGE"\n'
        '  ["headers"]=>\n'
        "  array(4) {\n"
        '    ["destination"]=>\n'
        f'    string({len(queue) + 7}) "/queue/{queue}"\n'
        '    ["message-id"]=>\n'
        f'    string({len(message_id)}) "{message_id}"\n'
        '    ["redelivered"]=>\n'
        '    string(5) "false"\n'
        '    ["content-length"]=>\n'
        '    string(1) "3"\n'
        "  }\n"
        '  ["body"]=>\n'
        '  string(3) "bar"\n'
        "}\n"
    )
    assert done.stderr == ""
    # ack'ed, and unset() sent DISCONNECT: nothing left, no session left.
    assert await amqp.message_count(queue) == 0
    async with asyncio.timeout(5):
        while gw.server.sessions:
            await asyncio.sleep(0.01)


async def test_php_connection_refused_message(php_stomp, gateway_factory):
    # Wrong credentials: the extension reports the ERROR frame's message header.
    gw = await gateway_factory(tcp_port=0)
    script = (
        "try { new Stomp($argv[1], 'guest', 'wrong'); }"
        ' catch (StompException $e) { echo $e->getMessage(), "\\n"; exit(0); }'
        " exit(1);"
    )
    done = await run("php", "-r", script, f"tcp://127.0.0.1:{gw.server.tcp_port}")
    assert done.stdout == "Bad CONNECT\n"
