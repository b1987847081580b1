"""Shared fixtures.

* ``unique``: a per-test name prefix (``t-<8 hex>``) for queues and exchanges.
* ``amqp``: an :class:`AmqpHelper` (aio-pika connection + channel to the local RabbitMQ)
  that tracks what a test declares (or tells it about) and deletes it afterwards.
* ``plugin_url`` (session): the real rabbitmq_web_stomp plugin, enabled on demand and
  disabled again at the end of the session if this run enabled it.
* ``management`` (session): a :class:`tests.support.management.Management` client for
  the RabbitMQ management HTTP API (rabbitmq_management, enabled and disabled the same
  way as the plugin).
* ``gateway_url``: the gateway started in-process on a free port, stopped afterwards.
* ``gateway_factory``: ``await gateway_factory(**settings_overrides) -> GatewayHandle``.
* ``target``: parametrised ``plugin`` / ``gateway``; a :class:`Target` (``.name``,
  ``.url``, ``.is_plugin``, ``.is_gateway``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `tests.support` and `gateway` importable without install
    sys.path.insert(0, str(ROOT))

from tests.support.amqp import AMQP_URL, AmqpHelper  # noqa: E402 (needs ROOT on sys.path)

# Gateways the tests start as subprocesses (python -m gateway) run one worker process
# unless a test asks for more (--workers): their logs, /metrics and PIDs stay those
# of one process. The product's default is one worker per core.
os.environ.setdefault("GATEWAY_WORKERS", "1")

PLUGIN_HOST = "127.0.0.1"
PLUGIN_PORT = 15674
PLUGIN_URL = f"ws://{PLUGIN_HOST}:{PLUGIN_PORT}/ws"
PLUGIN_NAME = "rabbitmq_web_stomp"
PLUGIN_START_TIMEOUT = 60.0
MANAGEMENT_PLUGIN = "rabbitmq_management"
MANAGEMENT_URL = "http://127.0.0.1:15672"


# -- ordering -------------------------------------------------------------------------------
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``broker_restart`` restart the shared RabbitMQ: run them last, so
    no other test of the session runs while the broker is away."""
    items.sort(key=lambda item: item.get_closest_marker("broker_restart") is not None)


# -- names ----------------------------------------------------------------------------------
@pytest.fixture
def unique() -> str:
    """A unique prefix for this test's queue/exchange/topic names, e.g. ``t-1a2b3c4d``."""
    return f"t-{uuid.uuid4().hex[:8]}"


# -- AMQP side ------------------------------------------------------------------------------
@pytest.fixture
async def amqp() -> AsyncIterator[AmqpHelper]:
    """aio-pika connection + channel (``.channel``; aiormq ``.raw``) to the local broker;
    queues/exchanges declared through it or passed to ``track_queue``/``track_exchange``
    are deleted at teardown. See tests/support/amqp.py."""
    import aio_pika

    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        raw = await channel.get_underlay_channel()
        helper = AmqpHelper(connection, channel, raw)
        try:
            yield helper
        finally:
            await helper.cleanup()
    finally:
        await connection.close()


# -- the real plugin ------------------------------------------------------------------------
def _plugin_answers(url: str, timeout: float = 3.0) -> bool:
    """True if ``url`` completes a WebSocket handshake and answers CONNECT with CONNECTED."""
    from websockets.sync.client import connect

    try:
        with socket.create_connection((PLUGIN_HOST, PLUGIN_PORT), timeout=timeout):
            pass
        with connect(url, open_timeout=timeout, close_timeout=1) as ws:
            ws.send(b"CONNECT\naccept-version:1.2\nlogin:guest\npasscode:guest\n\n\x00", text=True)
            reply = ws.recv(timeout=timeout)
            data = reply.encode() if isinstance(reply, str) else reply
            return data.startswith(b"CONNECTED\n")
    except Exception:
        return False


def _plugins_cmd(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("rabbitmq-plugins")
    assert exe is not None
    return subprocess.run(
        [exe, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _plugin_enabled(name: str = PLUGIN_NAME) -> bool:
    result = _plugins_cmd("list", "-e", "-m", name)
    return any(line.strip() == name for line in result.stdout.splitlines())


@contextlib.contextmanager
def _broker_plugin(name: str, answers: Callable[[], bool]) -> Iterator[None]:
    """Make sure RabbitMQ plugin ``name`` is enabled and ``answers()``; on exit disable
    it again, only if this run enabled it (so ``make run`` finds its port free)."""
    enabled_here = False
    if not answers():
        if shutil.which("rabbitmq-plugins") is None:
            pytest.skip(f"rabbitmq-plugins not found: cannot enable {name}")
        if not _plugin_enabled(name):
            result = _plugins_cmd("enable", name)
            if result.returncode != 0:
                pytest.skip(f"rabbitmq-plugins enable {name} failed: {result.stderr}")
            enabled_here = True
        deadline = time.monotonic() + PLUGIN_START_TIMEOUT
        while not answers():
            if time.monotonic() > deadline:
                pytest.fail(f"{name} did not answer within {PLUGIN_START_TIMEOUT:.0f} s")
            time.sleep(0.5)
    try:
        yield
    finally:
        if enabled_here:
            _plugins_cmd("disable", name)


@pytest.fixture(scope="session")
def plugin_url() -> Iterator[str]:
    """ws://127.0.0.1:15674/ws of the real rabbitmq_web_stomp plugin.

    Enables the plugin if needed and waits (up to 60 s) until a STOMP CONNECT over
    WebSocket succeeds; at the end of the session disables it again, only if this run
    enabled it (so ``make run`` finds port 15674 free).
    """
    with _broker_plugin(PLUGIN_NAME, lambda: _plugin_answers(PLUGIN_URL)):
        yield PLUGIN_URL


def _management_answers() -> bool:
    import httpx

    try:
        reply = httpx.get(f"{MANAGEMENT_URL}/api/whoami", auth=("guest", "guest"), timeout=3)
    except httpx.HTTPError:
        return False
    return reply.status_code == 200


@pytest.fixture(scope="session")
def management() -> Iterator[Any]:
    """The management HTTP API (queues, consumers, users), enabled like ``plugin_url``."""
    from tests.support.management import Management

    with _broker_plugin(MANAGEMENT_PLUGIN, _management_answers):
        yield Management(MANAGEMENT_URL)


# -- the gateway ----------------------------------------------------------------------------
@dataclass(frozen=True)
class GatewayHandle:
    server: Any
    settings: Any
    url: str

    @property
    def port(self) -> int:
        return int(self.server.port)


async def _start_gateway(**overrides: Any) -> GatewayHandle:
    from gateway.server import Server
    from gateway.settings import load_settings

    overrides.setdefault("host", "127.0.0.1")
    overrides.setdefault("port", 0)
    settings = load_settings(**overrides)
    server = Server(settings)
    await server.start()
    return GatewayHandle(server, settings, f"ws://127.0.0.1:{server.port}{settings.ws_path}")


@pytest.fixture
async def gateway_url() -> AsyncIterator[str]:
    """The gateway with default settings, in-process on 127.0.0.1 and a free port."""
    handle = await _start_gateway()
    try:
        yield handle.url
    finally:
        await handle.server.stop()


GatewayFactory = Callable[..., Awaitable[GatewayHandle]]


@pytest.fixture
async def gateway_factory() -> AsyncIterator[GatewayFactory]:
    """``handle = await gateway_factory(ws_frame="binary", ...)``: a started gateway with
    these settings overrides (host 127.0.0.1, port 0 unless given); stopped at teardown."""
    started: list[GatewayHandle] = []

    async def factory(**overrides: Any) -> GatewayHandle:
        handle = await _start_gateway(**overrides)
        started.append(handle)
        return handle

    try:
        yield factory
    finally:
        for handle in reversed(started):
            await handle.server.stop()


# -- both -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    name: str  # "plugin" or "gateway"
    url: str

    @property
    def is_plugin(self) -> bool:
        return self.name == "plugin"

    @property
    def is_gateway(self) -> bool:
        return self.name == "gateway"


@pytest.fixture(params=["plugin", "gateway"])
def target(request: pytest.FixtureRequest) -> Target:
    """The same scenario against the real plugin and against the gateway."""
    name = request.param
    url = request.getfixturevalue("plugin_url" if name == "plugin" else "gateway_url")
    return Target(name, url)


# -- STOMP clients --------------------------------------------------------------------------
StompFactory = Callable[..., Awaitable[Any]]


@pytest.fixture
async def stomp() -> AsyncIterator[StompFactory]:
    """``ws = await stomp(url, connect=True, subprotocols=..., **connect_stomp_kwargs)``.

    Opens a :class:`tests.support.wsclient.StompWs` (and, by default, CONNECTs as
    guest with STOMP 1.2, asserting CONNECTED); every client is closed at teardown.
    """
    from tests.support.wsclient import DEFAULT_SUBPROTOCOLS, connect_ws

    clients: list[Any] = []

    async def open_client(
        url: str,
        *,
        connect: bool = True,
        subprotocols: Any = DEFAULT_SUBPROTOCOLS,
        ws_kwargs: dict[str, Any] | None = None,
        **connect_kwargs: Any,
    ) -> Any:
        ws = await connect_ws(url, subprotocols=subprotocols, **(ws_kwargs or {}))
        clients.append(ws)
        if connect:
            await ws.connect_stomp(**connect_kwargs)
        return ws

    try:
        yield open_client
    finally:
        for ws in clients:
            with contextlib.suppress(Exception):
                await ws.close()


# -- both transports (STOMP over WebSocket and over plain TCP) -----------------------------
@pytest.fixture(params=["ws", "tcp"])
def transport(request: pytest.FixtureRequest) -> str:
    """``ws`` or ``tcp``: the same gateway scenario over each transport."""
    return str(request.param)


@pytest.fixture
async def gateway_client(
    transport: str, gateway_factory: GatewayFactory
) -> AsyncIterator[StompFactory]:
    """``c = await gateway_client(gateway=None, connect=True, **connect_stomp_kwargs)``.

    A :class:`tests.support.wsclient.StompWs` or :class:`tests.support.tcpclient.StompTcp`
    (same API) as ``transport`` says, to ``gateway`` (a ``gateway_factory`` handle started
    with ``tcp_port=0``) or to a default gateway with the TCP listener on; CONNECTs as
    guest with STOMP 1.2 unless ``connect=False``. Every client is closed at teardown.
    """
    from tests.support.tcpclient import connect_tcp
    from tests.support.wsclient import connect_ws

    clients: list[Any] = []
    default: list[GatewayHandle] = []

    async def open_client(
        *, gateway: GatewayHandle | None = None, connect: bool = True, **connect_kwargs: Any
    ) -> Any:
        if gateway is None:
            if not default:
                default.append(await gateway_factory(tcp_port=0))
            gateway = default[0]
        if transport == "ws":
            client: Any = await connect_ws(gateway.url)
        else:
            assert gateway.server.tcp_port is not None, "start the gateway with tcp_port=0"
            client = await connect_tcp("127.0.0.1", gateway.server.tcp_port)
        clients.append(client)
        if connect:
            await client.connect_stomp(**connect_kwargs)
        return client

    try:
        yield open_client
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()
