"""CONNECT helpers: version and heart-beat negotiation, loopback addresses, session ids.

Pure functions with RabbitMQ's rules (``rabbit_stomp_processor`` /
``rabbit_stomp_util``); ``gateway.session`` uses them while handling CONNECT.
"""

from __future__ import annotations

import base64
import ipaddress
import os

from .errors import ProcessingError

__all__ = [
    "ERROR_VERSION_HEADER",
    "SUPPORTED_VERSIONS",
    "is_loopback",
    "negotiate_version",
    "new_session_id",
    "parse_heart_beat",
]

SUPPORTED_VERSIONS = ("1.0", "1.1", "1.2")
ERROR_VERSION_HEADER = ",".join(SUPPORTED_VERSIONS)


def negotiate_version(accept: str | None) -> str | None:
    """Highest common version, comparing numeric components (RabbitMQ)."""
    offered = ("1.0" if accept is None else accept).split(",")
    common = [v.strip() for v in offered if v.strip() in SUPPORTED_VERSIONS]
    if not common:
        return None
    return max(common, key=lambda v: tuple(int(p) for p in v.split(".")))


def parse_heart_beat(value: str | None) -> tuple[int, int]:
    """``cx,cy`` in ms -> (server send, server receive) in whole seconds (RabbitMQ).

    ms_to_s: 0 -> 0, 1..999 -> 1, else floor(ms / 1000). The server sends at the
    client's cy and expects the client's cx.
    """
    if value is None:
        return 0, 0
    parts = value.split(",")
    if len(parts) != 2:
        raise ProcessingError()
    try:
        cx, cy = (int(p.strip()) for p in parts)
    except ValueError:
        raise ProcessingError() from None
    if cx < 0 or cy < 0:
        raise ProcessingError()

    def ms_to_s(ms: int) -> int:
        return 0 if ms == 0 else max(1, ms // 1000)

    return ms_to_s(cy), ms_to_s(cx)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return host == "localhost"


def new_session_id() -> str:
    return "session-" + base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
