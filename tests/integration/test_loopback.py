"""``loopback_users``: guest may log in only from a loopback address (webstomp.md 1.3, 2.5).

A real non-loopback client without sending anything off this machine: the test
creates a network namespace joined to the host by a veth pair with private
10.231.x.0/30 addresses, runs a WebSocket client inside the namespace, and removes
both afterwards. It needs root (``ip netns``); elsewhere it is skipped and the rule
is covered by the session unit tests only. The same client talks to the real plugin
and to the gateway; both must answer alike:

* guest/guest: ERROR "Bad CONNECT" / ``non-loopback access denied``;
* guest/wrong: the password error wins (checked first);
* an unknown vhost: the vhost error wins (checked before the address too);
* any other user: CONNECTED.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.interop.helpers import assert_error
from tests.support.wsclient import Frame, FrameParser

PLUGIN_PORT = 15674

CLIENT = r"""
import sys
from websockets.sync.client import connect
url = sys.argv[1]
for spec in sys.argv[2:]:
    login, passcode, host = spec.split(":")
    frame = f"CONNECT\naccept-version:1.2\nlogin:{login}\npasscode:{passcode}\n"
    if host:
        frame += f"host:{host}\n"
    with connect(url, open_timeout=5, subprotocols=["v12.stomp"]) as ws:
        ws.send(frame + "\n\x00")
        reply = ws.recv(timeout=5)
        print((reply.encode() if isinstance(reply, str) else reply).hex(), flush=True)
"""


@dataclass(frozen=True)
class Namespace:
    name: str
    host_ip: str  # the host's end of the veth pair: servers listen here
    client_ip: str  # the namespace's end: what the servers see as the peer


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=False)


@pytest.fixture
def netns() -> Iterator[Namespace]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to create a network namespace")
    name = f"sgw{uuid.uuid4().hex[:6]}"
    host_if, ns_if = f"{name}h", f"{name}n"
    used = _ip("-o", "addr").stdout
    octet = next(n for n in random.sample(range(1, 255), 254) if f"10.231.{n}." not in used)
    ns = Namespace(name, f"10.231.{octet}.1", f"10.231.{octet}.2")
    steps = [
        ("netns", "add", name),
        ("link", "add", host_if, "type", "veth", "peer", "name", ns_if),
        ("link", "set", ns_if, "netns", name),
        ("addr", "add", f"{ns.host_ip}/30", "dev", host_if),
        ("link", "set", host_if, "up"),
        ("-n", name, "addr", "add", f"{ns.client_ip}/30", "dev", ns_if),
        ("-n", name, "link", "set", ns_if, "up"),
        ("-n", name, "link", "set", "lo", "up"),
    ]
    try:
        for step in steps:
            result = _ip(*step)
            if result.returncode != 0:
                pytest.skip(
                    f"cannot set up a network namespace: ip {' '.join(step)}: {result.stderr}"
                )
        yield ns
    finally:
        _ip("link", "del", host_if)  # removes both ends of the pair
        _ip("netns", "del", name)


async def connect_from(ns: Namespace, port: int, *specs: str) -> list[Frame]:
    """CONNECT from inside the namespace once per ``login:passcode:vhost``; the replies."""
    url = f"ws://{ns.host_ip}:{port}/ws"
    proc = await asyncio.create_subprocess_exec(
        "ip",
        "netns",
        "exec",
        ns.name,
        sys.executable,
        "-c",
        CLIENT,
        url,
        *specs,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    frames = []
    for line in out.decode().split():
        [frame] = FrameParser().feed(bytes.fromhex(line))
        frames.append(frame)
    return frames


async def test_guest_refused_from_a_non_loopback_address(
    netns, plugin_url, gateway_factory, management
):
    gateway = await gateway_factory(host=netns.host_ip)
    user = f"stomp-remote-{uuid.uuid4().hex[:6]}"
    async with management.user(user, "secret"):
        for name, port in (("plugin", PLUGIN_PORT), ("gateway", gateway.port)):
            refused, wrong, vhost, other = await connect_from(
                netns, port, "guest:guest:", "guest:wrong:", "guest:guest:nope", f"{user}:secret:"
            )
            assert_error(refused, "Bad CONNECT", b"non-loopback access denied")
            assert_error(wrong, "Bad CONNECT", b"Access refused for user 'guest'\n")
            assert_error(vhost, "Bad CONNECT", b"Virtual host 'nope' access denied")
            assert other.command == "CONNECTED", (name, other)
