"""Plain HTTP on the gateway port, beside the WebSocket path.

websockets calls ``process_request`` for every request before the upgrade. Requests
for ``ws_path`` go on to the handshake (a plain GET there gets websockets' 426, as
Cowboy answers) unless their ``Origin`` is not in ``allow_origins`` (403 with
``Connection: close``, as RabbitMQ 4.2.6+; a request without ``Origin``, i.e. not
from a browser, is allowed); ``/healthz`` and ``/readyz`` answer probes, ``/metrics``
the Prometheus text of ``gateway.metrics.METRICS``; other GETs are served from
``static/`` (the demo page); anything else is a 404, as RabbitMQ answers.

``serve_metrics`` serves the three probe/metrics paths alone on ``metrics_port``.
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
import re
from collections.abc import Sequence
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from .metrics import METRICS

if TYPE_CHECKING:
    from .server import Server

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

DEFAULT_STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


def response(status: HTTPStatus, body: bytes, content_type: str = "text/plain") -> Response:
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ]
    )
    return Response(status.value, status.phrase, headers, body)


def static_file(root: Path, path: str) -> Response | None:
    """A file under ``root`` (``/`` is index.html), never outside it."""
    relative = path.lstrip("/") or "index.html"
    target = (root / relative).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        return None
    content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    if content_type.startswith("text/") or content_type == "application/javascript":
        content_type += "; charset=utf-8"
    return response(HTTPStatus.OK, target.read_bytes(), content_type)


class OriginPolicy:
    """``allow_origins``: exact origins, or patterns where ``*`` stands for one or more
    host-name characters (``https://*.example.com``, ``http://localhost:*``); ``"*"``
    alone, or an empty list, allows every origin. Compared case-insensitively."""

    def __init__(self, allowed: Sequence[str]) -> None:
        self.allow_all = not allowed or "*" in allowed
        self.patterns = [
            re.compile(
                "".join(
                    "[a-z0-9._-]+" if part == "*" else re.escape(part)
                    for part in re.split(r"(\*)", origin.strip().lower().rstrip("/"))
                )
            )
            for origin in allowed
        ]

    def allows(self, origin: str | None) -> bool:
        if self.allow_all or origin is None:
            return True
        value = origin.strip().lower()
        return any(p.fullmatch(value) for p in self.patterns)


def probe(server: Server, path: str) -> Response | None:
    """``/healthz``, ``/readyz`` and ``/metrics``, or None for any other path."""
    if path == "/healthz":
        return response(HTTPStatus.OK, b"ok\n")
    if path == "/readyz":
        if server.ready():
            return response(HTTPStatus.OK, b"ready\n")
        return response(HTTPStatus.SERVICE_UNAVAILABLE, b"broker unreachable\n")
    if path == "/metrics":
        return response(HTTPStatus.OK, METRICS.render().encode(), METRICS_CONTENT_TYPE)
    return None


def make_process_request(server: Server):  # type: ignore[no-untyped-def]
    ws_paths = {server.settings.ws_path, server.settings.ws_path.rstrip("/") + "/"}
    static_root = (server.settings.static_dir or DEFAULT_STATIC_DIR).resolve()
    origins = OriginPolicy(server.settings.allow_origins)

    def process_request(_connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path in ws_paths:
            origin = request.headers.get("Origin")
            if not origins.allows(origin):
                # Cross-site WebSocket hijacking: a page elsewhere may not use the
                # visitor's cookies/network position to talk to us.
                METRICS.limit_breaches.inc("allow_origins")
                refused = response(HTTPStatus.FORBIDDEN, b"Origin not allowed\n")
                refused.headers["Connection"] = "close"
                return refused
            return None
        answered = probe(server, path)
        if answered is not None:
            return answered
        found = static_file(static_root, path)
        if found is not None:
            return found
        return response(HTTPStatus.NOT_FOUND, b"Not Found\n")

    return process_request


async def serve_metrics(server: Server, host: str, port: int) -> asyncio.Server:
    """A minimal HTTP/1.1 server for ``/metrics``, ``/healthz``, ``/readyz`` alone."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            path = parts[1].split("?", 1)[0] if len(parts) == 3 else ""
            if parts[0] not in ("GET", "HEAD"):
                answer = response(HTTPStatus.METHOD_NOT_ALLOWED, b"Method Not Allowed\n")
            else:
                answer = probe(server, path) or response(HTTPStatus.NOT_FOUND, b"Not Found\n")
            lines = [f"HTTP/1.1 {answer.status_code} {answer.reason_phrase}"]
            lines += [f"{k}: {v}" for k, v in answer.headers.raw_items()]
            lines.append("Connection: close")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            if parts[0] != "HEAD":
                writer.write(answer.body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port)
