"""Assertions shared by the interop scenarios.

Everything that is not random must match exactly; what is random (the session id, the
``server`` header of the gateway, ``amq.gen-*`` names) is checked for its shape.
Header order differs between implementations, so headers are compared as multisets
(``sorted`` lists), and ``assert_headers`` also checks that the first occurrence of
every expected name has the expected value (STOMP 1.2: the first one wins).
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
from collections.abc import Iterable

from tests.support.wsclient import Frame

SUPPORTED_VERSIONS = "1.0,1.1,1.2"
SESSION_RE = re.compile(r"^session-[A-Za-z0-9_-]{22}$")
PLUGIN_SERVER_RE = re.compile(r"^RabbitMQ/\d+\.\d+\.\d+$")
AMQ_GEN_RE = re.compile(r"^amq\.gen-[A-Za-z0-9_-]{22}$")


def assert_headers(frame: Frame, expected: Iterable[tuple[str, str]]) -> None:
    """Same multiset of headers, and the first occurrence of each name as expected."""
    expected = list(expected)
    assert sorted(frame.headers) == sorted(expected), (
        f"{frame.command} headers differ:\n got      {sorted(frame.headers)}\n expected "
        f"{sorted(expected)}"
    )
    first: dict[str, str] = {}
    for name, value in expected:
        first.setdefault(name, value)
    for name, value in first.items():
        assert frame.header(name) == value, f"first {name!r} is {frame.header(name)!r}"


def assert_connected(
    frame: Frame, target_name: str, version: str = "1.2", heart_beat: str = "0,0"
) -> str:
    """A CONNECTED frame: server, session, heart-beat, version (plugin order); the
    session id is returned."""
    assert frame.command == "CONNECTED", frame
    assert frame.body == b""
    assert sorted(frame.header_names) == ["heart-beat", "server", "session", "version"]
    assert frame.header("version") == version
    assert frame.header("heart-beat") == heart_beat
    session = frame.header("session") or ""
    assert SESSION_RE.match(session), session
    server = frame.header("server") or ""
    if target_name == "plugin":
        assert PLUGIN_SERVER_RE.match(server), server
    else:
        assert server, "gateway CONNECTED must carry a non-empty server header"
    return session


def error_headers(message: str, body: bytes, *extra: tuple[str, str]) -> list[tuple[str, str]]:
    """ERROR headers as 3.10.8 sends them (order there: message, content-type, version,
    [subscription], content-length)."""
    headers = [
        ("message", message),
        ("content-type", "text/plain"),
        ("version", SUPPORTED_VERSIONS),
        *extra,
    ]
    if body:
        headers.append(("content-length", str(len(body))))
    return headers


def assert_error(frame: Frame, message: str, body: bytes, *extra: tuple[str, str]) -> None:
    assert frame.command == "ERROR", frame
    assert frame.body == body, f"ERROR body {frame.body!r} != {body!r}"
    assert_headers(frame, error_headers(message, body, *extra))


def assert_receipt(frame: Frame, receipt_id: str) -> None:
    assert frame.command == "RECEIPT", frame
    assert frame.headers == [("receipt-id", receipt_id)]
    assert frame.body == b""


def durable_subscription_queue(key: str, sub_id: str) -> str:
    """3.x's ``subscription_queue_name/3`` for a durable subscription:
    ``"stomp-subscription-" ++ base64url_nopad(md5(term_to_binary({Key, Id})))`` with
    Key and Id as Erlang strings (STRING_EXT, NIL_EXT when empty)."""

    def string_ext(text: str) -> bytes:
        data = text.encode("utf-8")
        if not data:
            return b"\x6a"
        assert len(data) < 65535
        return b"\x6b" + struct.pack(">H", len(data)) + data

    digest = hashlib.md5(b"\x83\x68\x02" + string_ext(key) + string_ext(sub_id)).digest()
    return "stomp-subscription-" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
