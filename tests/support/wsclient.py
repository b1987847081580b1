"""A small STOMP-over-WebSocket client for tests.

It deliberately shares no code with ``gateway.stomp``: the tests check the gateway (and
the real rabbitmq_web_stomp plugin) with an independent implementation of the framing.

* Outbound: ``send_frame`` builds ``COMMAND\\n`` + headers + ``\\n`` + body + ``\\0``.
  Header names and values are escaped as STOMP 1.2 says (``\\\\``, ``\\n``, ``\\r``,
  ``\\c``) except on CONNECT/STOMP frames (STOMP 1.2: no escaping there); ``raw=True``
  sends them verbatim. ``send_raw`` sends any bytes/str as one WebSocket message.
* Inbound: an incremental parser fed every WebSocket message (text or binary). A frame may
  span several messages and a message may hold several frames. ``content-length`` is
  honoured (bodies may contain NUL). EOLs between frames are skipped; a WebSocket message
  made only of EOLs while no frame is in progress is counted as a server heart-beat
  (``heartbeats_received``) and never returned as a frame. Header names and values are
  unescaped per STOMP 1.2 for every command (RabbitMQ escapes every frame, CONNECTED too).
* ``recv_close`` waits for the close handshake and returns ``(code, reason)``; frames that
  arrived before it and were not read are kept in ``drained_frames``.
"""

# the helpers take per-call timeouts by design (recv_frame(timeout=5) ...)
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

DEFAULT_SUBPROTOCOLS = ("v12.stomp", "v11.stomp", "v10.stomp")

HeadersLike = dict[str, str] | Sequence[tuple[str, str]]

_ESCAPE = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", ":": "\\c"}
_UNESCAPE = {"\\": "\\", "n": "\n", "r": "\r", "c": ":"}


class StompProtocolError(Exception):
    """The peer sent bytes this client cannot parse as STOMP."""


class StompWsClosed(Exception):
    """The WebSocket closed while a frame was expected."""

    def __init__(self, code: int | None, reason: str, drained: list[Frame]) -> None:
        super().__init__(f"websocket closed: code={code} reason={reason!r} drained={drained!r}")
        self.code = code
        self.reason = reason
        self.drained = drained


@dataclass(frozen=True, slots=True)
class Frame:
    command: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    raw: bytes = field(default=b"", compare=False, repr=False)

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first occurrence of ``name`` (STOMP 1.2: the first one wins)."""
        for key, value in self.headers:
            if key == name:
                return value
        return default

    def header_all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]

    @property
    def header_names(self) -> list[str]:
        return [key for key, _ in self.headers]

    @property
    def headers_dict(self) -> dict[str, str]:
        """Header name -> first value (later duplicates ignored)."""
        out: dict[str, str] = {}
        for key, value in self.headers:
            out.setdefault(key, value)
        return out

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def escape_header(text: str) -> str:
    return "".join(_ESCAPE.get(ch, ch) for ch in text)


def unescape_header(text: str) -> str:
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            if i + 1 >= len(text) or text[i + 1] not in _UNESCAPE:
                raise StompProtocolError(f"bad escape in header {text!r}")
            out.append(_UNESCAPE[text[i + 1]])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _header_items(headers: HeadersLike | None) -> list[tuple[str, str]]:
    if headers is None:
        return []
    if isinstance(headers, dict):
        return [(str(k), str(v)) for k, v in headers.items()]
    return [(str(k), str(v)) for k, v in headers]


def encode_frame(
    command: str,
    headers: HeadersLike | None = None,
    body: bytes | str = b"",
    *,
    raw: bool | None = None,
    content_length: bool = False,
) -> bytes:
    """Serialise a client frame. ``raw=None`` escapes except for CONNECT/STOMP."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    items = _header_items(headers)
    if content_length:
        items.append(("content-length", str(len(body))))
    escape = command not in ("CONNECT", "STOMP") if raw is None else not raw
    lines = [command]
    for key, value in items:
        if escape:
            key, value = escape_header(key), escape_header(value)
        lines.append(f"{key}:{value}")
    head = "\n".join(lines) + "\n\n"
    return head.encode("utf-8") + body + b"\x00"


class FrameParser:
    """Incremental STOMP frame parser (server -> client direction)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def in_frame(self) -> bool:
        return bool(self._buf.lstrip(b"\r\n\x00"))

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while True:
            frame = self._parse_one()
            if frame is None:
                return frames
            frames.append(frame)

    def _parse_one(self) -> Frame | None:
        buf = self._buf
        # Skip EOLs (and stray NULs) between frames.
        start = 0
        while start < len(buf) and buf[start] in (0x0A, 0x0D, 0x00):
            start += 1
        if start:
            del buf[:start]
        if not buf:
            return None
        # Find the blank line terminating the headers (LF or CRLF line endings).
        end = -1
        sep_len = 0
        pos = 0
        while True:
            nl = buf.find(b"\n", pos)
            if nl < 0:
                break
            nxt = nl + 1
            if buf[nxt : nxt + 1] == b"\n":
                end, sep_len = nl, 2
                break
            if buf[nxt : nxt + 2] == b"\r\n":
                end, sep_len = nl, 3
                break
            pos = nxt
        if end < 0:
            return None
        head = bytes(buf[:end]).decode("utf-8")
        lines = [line[:-1] if line.endswith("\r") else line for line in head.split("\n")]
        command = lines[0]
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if ":" not in line:
                raise StompProtocolError(f"header line without colon: {line!r}")
            key, value = line.split(":", 1)
            headers.append((unescape_header(key), unescape_header(value)))
        body_start = end + sep_len
        length: int | None = None
        for key, value in headers:
            if key == "content-length":
                length = int(value)
                break
        if length is not None:
            if len(buf) < body_start + length + 1:
                return None
            body = bytes(buf[body_start : body_start + length])
            if buf[body_start + length] != 0:
                raise StompProtocolError("content-length body not followed by NUL")
            frame_end = body_start + length + 1
        else:
            nul = buf.find(b"\x00", body_start)
            if nul < 0:
                return None
            body = bytes(buf[body_start:nul])
            frame_end = nul + 1
        raw = bytes(buf[:frame_end])
        del buf[:frame_end]
        return Frame(command, headers, body, raw)


class StompCommands:
    """CONNECT, SUBSCRIBE and SEND for any client that has ``send_frame`` and
    ``recv_frame`` (the WebSocket client here and the TCP client in tcpclient.py)."""

    connected: Frame | None

    async def send_frame(self, command: str, headers: Any = None, body: bytes | str = b"") -> None:
        raise NotImplementedError

    async def recv_frame(self, timeout: float = 5) -> Frame:
        raise NotImplementedError

    async def recv_frames(self, count: int, timeout: float = 5) -> list[Frame]:
        async with asyncio.timeout(timeout):
            return [await self.recv_frame(timeout=timeout) for _ in range(count)]

    async def expect_no_frame(self, timeout: float = 0.3) -> None:
        """Assert nothing (but heart-beats) arrives within ``timeout`` seconds."""
        try:
            frame = await self.recv_frame(timeout=timeout)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected frame: {frame!r}")

    async def connect_stomp(
        self,
        login: str | None = "guest",
        passcode: str | None = "guest",
        host: str | None = None,
        version: str | None = "1.2",
        heart_beat: str | None = "0,0",
        extra: HeadersLike | None = None,
        command: str = "CONNECT",
        expect: str | None = "CONNECTED",
        timeout: float = 5,
    ) -> Frame:
        """Send CONNECT (``None`` omits a header) and return the reply frame.

        ``expect`` (default "CONNECTED") is asserted on the reply command; pass None to
        accept anything (e.g. an ERROR).
        """
        headers: list[tuple[str, str]] = []
        if version is not None:
            headers.append(("accept-version", version))
        if host is not None:
            headers.append(("host", host))
        if login is not None:
            headers.append(("login", login))
        if passcode is not None:
            headers.append(("passcode", passcode))
        if heart_beat is not None:
            headers.append(("heart-beat", heart_beat))
        headers.extend(_header_items(extra))
        await self.send_frame(command, headers)
        frame = await self.recv_frame(timeout=timeout)
        if frame.command == "CONNECTED":
            self.connected = frame
        if expect is not None and frame.command != expect:
            raise AssertionError(f"expected {expect}, got {frame!r}")
        return frame

    async def subscribe(
        self,
        destination: str,
        id: str | None = None,
        receipt: str | None = "auto",
        extra: HeadersLike | None = None,
    ) -> None:
        """SUBSCRIBE and (by default) wait for its RECEIPT, so the binding is in place."""
        headers: list[tuple[str, str]] = [("destination", destination)]
        if id is not None:
            headers.append(("id", id))
        headers.extend(_header_items(extra))
        if receipt == "auto":
            receipt = f"sub-{destination}-{id}"
        if receipt is not None:
            headers.append(("receipt", receipt))
        await self.send_frame("SUBSCRIBE", headers)
        if receipt is not None:
            frame = await self.recv_frame()
            if frame.command != "RECEIPT" or frame.header("receipt-id") != receipt:
                raise AssertionError(f"expected RECEIPT {receipt!r}, got {frame!r}")

    async def send(
        self,
        destination: str,
        body: bytes | str = b"",
        extra: HeadersLike | None = None,
        receipt: str | None = None,
    ) -> None:
        """SEND; with ``receipt`` waits for the RECEIPT (a publisher confirm)."""
        headers: list[tuple[str, str]] = [("destination", destination)]
        headers.extend(_header_items(extra))
        if receipt is not None:
            headers.append(("receipt", receipt))
        await self.send_frame("SEND", headers, body)
        if receipt is not None:
            frame = await self.recv_frame()
            if frame.command != "RECEIPT" or frame.header("receipt-id") != receipt:
                raise AssertionError(f"expected RECEIPT {receipt!r}, got {frame!r}")



class StompWs(StompCommands):
    """One WebSocket connection speaking STOMP."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.parser = FrameParser()
        self.heartbeats_received = 0
        self.messages_received = 0
        self.message_opcodes: list[str] = []  # "text" / "binary" per inbound message
        self.raw_messages: list[bytes] = []  # every inbound WebSocket message, in order
        self.drained_frames: list[Frame] = []
        self.connected: Frame | None = None  # the CONNECTED frame, once received
        self._frames: deque[Frame] = deque()

    # -- handshake info ------------------------------------------------------------------
    @property
    def subprotocol(self) -> str | None:
        return self.ws.subprotocol

    @property
    def response_headers(self) -> Any:
        assert self.ws.response is not None
        return self.ws.response.headers

    @property
    def session(self) -> str:
        """The ``session`` header of the CONNECTED frame."""
        assert self.connected is not None, "not connected"
        value = self.connected.header("session")
        assert value is not None, "CONNECTED without session header"
        return value

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    @property
    def close_reason(self) -> str | None:
        return self.ws.close_reason

    # -- sending -------------------------------------------------------------------------
    async def send_raw(self, data: bytes | str, binary: bool = False) -> None:
        """Send ``data`` as one WebSocket message (text unless ``binary``)."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        await self.ws.send(data, text=not binary)

    async def send_frame(
        self,
        command: str,
        headers: HeadersLike | None = None,
        body: bytes | str = b"",
        *,
        raw: bool | None = None,
        content_length: bool = False,
        binary: bool = False,
    ) -> bytes:
        """Send one frame as one WebSocket message; returns the bytes sent."""
        data = encode_frame(command, headers, body, raw=raw, content_length=content_length)
        await self.send_raw(data, binary=binary)
        return data

    async def send_split(self, data: bytes, parts: int, binary: bool = False) -> None:
        """Send ``data`` spread over ``parts`` WebSocket messages."""
        step = max(1, -(-len(data) // parts))
        for i in range(0, len(data), step):
            await self.send_raw(data[i : i + step], binary=binary)

    # -- receiving -----------------------------------------------------------------------
    async def _read_message(self) -> None:
        message = await self.ws.recv()
        if isinstance(message, str):
            data = message.encode("utf-8")
            self.message_opcodes.append("text")
        else:
            data = bytes(message)
            self.message_opcodes.append("binary")
        self.messages_received += 1
        self.raw_messages.append(data)
        if data and not self.parser.in_frame and not data.strip(b"\r\n"):
            self.heartbeats_received += data.count(b"\n")
            return
        self._frames.extend(self.parser.feed(data))

    async def recv_frame(self, timeout: float = 5) -> Frame:
        """The next frame; raises TimeoutError, or StompWsClosed if the socket closed."""
        async with asyncio.timeout(timeout):
            while not self._frames:
                try:
                    await self._read_message()
                except ConnectionClosed:
                    raise StompWsClosed(
                        self.ws.close_code, self.ws.close_reason or "", list(self._frames)
                    ) from None
            return self._frames.popleft()

    async def recv_close(self, timeout: float = 5) -> tuple[int | None, str]:
        """Wait for the server to close; returns (code, reason).

        Unread frames received before the close are moved to ``drained_frames``.
        """
        async with asyncio.timeout(timeout):
            while True:
                try:
                    await self._read_message()
                except ConnectionClosed:
                    break
        self.drained_frames.extend(self._frames)
        self._frames.clear()
        return self.ws.close_code, self.ws.close_reason or ""

    async def is_open(self, timeout: float = 0.3) -> bool:
        """True if the socket answers a ping within ``timeout``."""
        try:
            pong = await self.ws.ping()
            async with asyncio.timeout(timeout):
                await pong
        except (ConnectionClosed, TimeoutError):
            return False
        return True

    # -- STOMP helpers -------------------------------------------------------------------
    async def disconnect(self, receipt: str | None = None) -> None:
        headers = [("receipt", receipt)] if receipt else []
        with contextlib.suppress(ConnectionClosed):
            await self.send_frame("DISCONNECT", headers)

    async def close(self) -> None:
        await self.ws.close()

    async def __aenter__(self) -> StompWs:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def connect_ws(
    url: str,
    subprotocols: Iterable[str] | None = DEFAULT_SUBPROTOCOLS,
    **kw: Any,
) -> StompWs:
    """Open a WebSocket to ``url`` offering ``subprotocols`` (None/empty: offer none).

    Keep-alive pings are off by default (they would count as client activity), the
    message size is unlimited, and the handshake times out after 10 s.
    """
    kw.setdefault("ping_interval", None)
    kw.setdefault("max_size", None)
    kw.setdefault("open_timeout", 10)
    kw.setdefault("close_timeout", 2)
    protocols = [Subprotocol(p) for p in subprotocols] if subprotocols else None
    ws = await connect(url, subprotocols=protocols, **kw)
    return StompWs(ws)
