"""Plain HTTP on the gateway port, beside the WebSocket path.

websockets calls ``process_request`` for every request before the upgrade. Requests
for ``ws_path`` go on to the handshake (a plain GET there gets websockets' 426, as
Cowboy answers); ``/healthz`` and ``/readyz`` answer probes; other GETs are served
from ``static/`` (the demo page); anything else is a 404, as RabbitMQ answers.
"""

from __future__ import annotations

import mimetypes
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

if TYPE_CHECKING:
    from .server import Server

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


def make_process_request(server: Server):  # type: ignore[no-untyped-def]
    ws_paths = {server.settings.ws_path, server.settings.ws_path.rstrip("/") + "/"}
    static_root = (server.settings.static_dir or DEFAULT_STATIC_DIR).resolve()

    def process_request(_connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path in ws_paths:
            return None
        if path == "/healthz":
            return response(HTTPStatus.OK, b"ok\n")
        if path == "/readyz":
            if server.ready():
                return response(HTTPStatus.OK, b"ready\n")
            return response(HTTPStatus.SERVICE_UNAVAILABLE, b"broker unreachable\n")
        found = static_file(static_root, path)
        if found is not None:
            return found
        return response(HTTPStatus.NOT_FOUND, b"Not Found\n")

    return process_request
