"""A lean STOMP-over-WebSocket client for load generation (an asyncio Protocol).

It is written for speed, not generality, and shares no code with ``gateway`` or with
``tests/support/wsclient.py``:

* The WebSocket handshake is a hand-written HTTP/1.1 upgrade (the accept key is
  checked); no extensions are offered, so neither side compresses.
* Outbound frames are masked with one random key per connection. The mask is applied
  with one big-integer XOR (C speed), and ``ws_frame`` results may be built once and
  written many times: ``SEND`` frames that never change are precomputed by the roles.
* Inbound WebSocket frames (unmasked, from the server) are parsed from a bytearray
  with slicing only; pings are answered, a close is echoed.
* STOMP frames end at ``content-length`` when the header is there (RabbitMQ and the
  gateway send it on every MESSAGE), else at the first NUL: a few ``bytes.find``
  calls per frame. Header lines end in LF (servers do not send CRLF). EOL
  heart-beats between frames are skipped.
* Dispatch: MESSAGE -> ``on_message(frame)``; RECEIPT -> ``on_receipt(receipt_id)`` if
  set, else the future registered by ``receipt()``; ERROR -> recorded in ``errors`` and
  fails every waiter; CONNECTED resolves ``connected``. ``frame`` is the raw bytes of
  one frame without its NUL: read headers with ``header(frame, b"name")``, the body
  with ``body(frame)``. Header values are not unescaped: echoing one back (an ``ack``
  id) is then exactly right.
"""

# Timeouts are per call on purpose (open_stomp(..., timeout=10)).
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import struct
from collections.abc import Callable, Iterable
from typing import Any, cast

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SUBPROTOCOLS = b"v12.stomp, v11.stomp, v10.stomp"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


class StompFailure(Exception):
    """The server answered with an ERROR frame, refused the handshake, or went away."""


# ------------------------------------------------------------------ frame building
def stomp_frame(command: str, headers: Iterable[tuple[str, str]] = (), body: bytes = b"") -> bytes:
    """Serialise a client frame. Values are the bench's own: no escaping is needed."""
    head = command + "".join(f"\n{k}:{v}" for k, v in headers) + "\n\n"
    return head.encode() + body + b"\x00"


def header(frame: bytes, name: bytes) -> bytes | None:
    """The first ``name`` header of a raw frame (escaped as it came), or None."""
    end = frame.find(b"\n\n")
    i = frame.find(b"\n" + name + b":", 0, end)
    if i < 0:
        return None
    start = i + len(name) + 2
    return frame[start : frame.find(b"\n", start)]


def body(frame: bytes) -> bytes:
    return frame[frame.find(b"\n\n") + 2 :]


class Masker:
    """Applies one connection's 4-byte mask with a single big-integer XOR."""

    __slots__ = ("_keys", "key")

    def __init__(self, key: bytes | None = None) -> None:
        self.key = key or os.urandom(4)
        self._keys: dict[int, int] = {}

    def __call__(self, data: bytes) -> bytes:
        n = len(data)
        if not n:
            return b""
        key = self._keys.get(n)
        if key is None:
            key = int.from_bytes((self.key * (n // 4 + 1))[:n], "big")
            if len(self._keys) < 4096:
                self._keys[n] = key
        return (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")

    def ws_frame(self, payload: bytes, opcode: int = OP_TEXT) -> bytes:
        """One complete, masked, final WebSocket frame carrying ``payload``."""
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        return head + self.key + self(payload)


# ------------------------------------------------------------------ the protocol
class StompClient(asyncio.Protocol):
    def __init__(self, host: str, port: int, path: str) -> None:
        self.host, self.port, self.path = host, port, path
        self.mask = Masker()
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.handshake: asyncio.Future[None] = loop.create_future()
        self.connected: asyncio.Future[bytes] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.on_message: Callable[[bytes], None] = _ignore
        self.on_receipt: Callable[[bytes], None] | None = None
        self.errors: list[str] = []
        self.frames_in = 0
        self._receipts: dict[bytes, asyncio.Future[None]] = {}
        self._hs_buf = b""
        self._hs_key = base64.b64encode(os.urandom(16))
        self._buf = bytearray()
        self._partial = b""
        self._writable = asyncio.Event()
        self._writable.set()
        self._close_sent = False

    # -- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport is not an asyncio.Transport subclass, hence the cast.
        self.transport = tcp = cast(asyncio.Transport, transport)
        tcp.set_write_buffer_limits(high=1 << 18)
        request = (
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        ).encode()
        request += b"Sec-WebSocket-Key: " + self._hs_key + b"\r\n"
        request += b"Sec-WebSocket-Protocol: " + SUBPROTOCOLS + b"\r\n\r\n"
        tcp.write(request)

    def data_received(self, data: bytes) -> None:
        if not self.handshake.done():
            data = self._handshake_data(data)
            if not data:
                return
        buf = self._buf
        buf += data
        pos, n = 0, len(buf)
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length, start = b1 & 0x7F, pos + 2
            if length == 126:
                if n - pos < 4:
                    break
                length, start = int.from_bytes(buf[pos + 2 : pos + 4], "big"), pos + 4
            elif length == 127:
                if n - pos < 10:
                    break
                length, start = int.from_bytes(buf[pos + 2 : pos + 10], "big"), pos + 10
            end = start + length
            if end > n:
                break
            opcode = b0 & 0x0F
            if opcode <= OP_BINARY:
                self._stomp_data(bytes(buf[start:end]))
            else:
                self._control(opcode, bytes(buf[start:end]))
            pos = end
        del buf[:pos]

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._writable.set()
        reason = StompFailure(self.errors[0] if self.errors else f"connection lost ({exc})")
        waiters: list[asyncio.Future[Any]] = [self.handshake, self.connected]
        for fut in [*waiters, *self._receipts.values()]:
            if not fut.done():
                fut.set_exception(reason)
        self._receipts.clear()
        if not self.closed.done():
            self.closed.set_result(None)

    # -- inbound ------------------------------------------------------------------------
    def _handshake_data(self, data: bytes) -> bytes:
        self._hs_buf += data
        end = self._hs_buf.find(b"\r\n\r\n")
        if end < 0:
            return b""
        head, rest = self._hs_buf[:end], self._hs_buf[end + 4 :]
        self._hs_buf = b""
        expected = base64.b64encode(hashlib.sha1(self._hs_key + GUID).digest())
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" " or expected not in head:
            self.handshake.set_exception(StompFailure(f"handshake refused: {status.decode()}"))
            self.abort()
            return b""
        self.handshake.set_result(None)
        return rest

    def _stomp_data(self, payload: bytes) -> None:
        if self._partial:
            payload = self._partial + payload
            self._partial = b""
        start, n = 0, len(payload)
        find = payload.find
        while start < n:
            if payload[start] in (10, 13):  # EOLs between frames (heart-beats)
                start += 1
                continue
            head_end = find(b"\n\n", start)
            if head_end < 0:
                break
            length_at = find(b"\ncontent-length:", start, head_end)
            if length_at >= 0:
                value_end = find(b"\n", length_at + 16, head_end + 1)
                end = head_end + 2 + int(payload[length_at + 16 : value_end])
                if end >= n:
                    break
            else:
                end = find(b"\x00", head_end)
                if end < 0:
                    break
            frame = payload[start:end]
            start = end + 1
            self.frames_in += 1
            if frame.startswith(b"MESSAGE\n"):
                self.on_message(frame)
            else:
                self._other_frame(frame)
        if start < n:
            self._partial = payload[start:]

    def _other_frame(self, frame: bytes) -> None:
        if frame.startswith(b"RECEIPT\n"):
            rid = header(frame, b"receipt-id") or b""
            fut = self._receipts.pop(rid, None)
            if fut is not None:
                if not fut.done():
                    fut.set_result(None)
            elif self.on_receipt is not None:
                self.on_receipt(rid)
        elif frame.startswith(b"CONNECTED\n"):
            if not self.connected.done():
                self.connected.set_result(frame)
        elif frame.startswith(b"ERROR\n"):
            message = (header(frame, b"message") or b"").decode(errors="replace")
            text = f"ERROR {message}: {body(frame)[:200].decode(errors='replace').strip()}"
            self.errors.append(text)
            failure = StompFailure(text)
            waiters: list[asyncio.Future[Any]] = [self.connected, *self._receipts.values()]
            for fut in waiters:
                if not fut.done():
                    fut.set_exception(failure)
            self._receipts.clear()

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            self.write(self.mask.ws_frame(payload, OP_PONG))
        elif opcode == OP_CLOSE:
            if not self._close_sent:
                self._close_sent = True
                self.write(self.mask.ws_frame(payload[:2], OP_CLOSE))
            if self.transport is not None:
                self.transport.close()

    # -- outbound -----------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Write raw bytes (already framed and masked) to the socket."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def frame(self, command: str, headers: Iterable[tuple[str, str]] = (), b: bytes = b"") -> bytes:
        """A STOMP frame wrapped in a masked WebSocket frame, ready for ``write``."""
        return self.mask.ws_frame(stomp_frame(command, headers, b))

    def send(self, command: str, headers: Iterable[tuple[str, str]] = (), b: bytes = b"") -> None:
        self.write(self.frame(command, headers, b))

    @property
    def writable(self) -> bool:
        return self._writable.is_set()

    async def drain(self) -> None:
        """Wait while the transport's buffer is above its high-water mark."""
        if not self._writable.is_set():
            await self._writable.wait()

    def receipt(self, receipt_id: str) -> asyncio.Future[None]:
        fut = asyncio.get_running_loop().create_future()
        self._receipts[receipt_id.encode()] = fut
        return fut

    async def subscribe(
        self,
        destination: str,
        sub_id: str,
        extra: Iterable[tuple[str, str]] = (),
        *,
        wait: float = 0,
    ) -> None:
        """SUBSCRIBE; with ``wait`` > 0, also wait that long for its RECEIPT."""
        headers = [("destination", destination), ("id", sub_id), *extra]
        if wait <= 0:
            self.send("SUBSCRIBE", headers)
            return
        rid = f"sub-{sub_id}"
        fut = self.receipt(rid)
        self.send("SUBSCRIBE", [*headers, ("receipt", rid)])
        await asyncio.wait_for(fut, wait)

    async def disconnect(self, timeout: float = 5) -> None:
        """DISCONNECT with a receipt (so every earlier frame was handled), then close."""
        if self.transport is None or self.transport.is_closing():
            return
        with contextlib.suppress(Exception):
            fut = self.receipt("bye")
            self.send("DISCONNECT", [("receipt", "bye")])
            await asyncio.wait_for(fut, timeout)
        await self.close(timeout)

    async def close(self, timeout: float = 2) -> None:
        if self.transport is None:
            return
        if not self._close_sent and not self.transport.is_closing():
            self._close_sent = True
            self.write(self.mask.ws_frame(struct.pack("!H", 1000), OP_CLOSE))
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        except TimeoutError:
            self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def _ignore(_frame: bytes) -> None:
    pass


async def open_stomp(
    host: str,
    port: int,
    path: str = "/ws",
    *,
    login: str = "guest",
    passcode: str = "guest",
    heart_beat: str = "0,0",
    timeout: float = 10,
) -> StompClient:
    """Connect a socket, upgrade it, CONNECT; raises StompFailure/OSError/TimeoutError."""
    loop = asyncio.get_running_loop()
    _, client = await asyncio.wait_for(
        loop.create_connection(lambda: StompClient(host, port, path), host, port), timeout
    )
    try:
        await asyncio.wait_for(client.handshake, timeout)
        client.send(
            "CONNECT",
            [
                ("accept-version", "1.2"),
                ("host", "/"),
                ("login", login),
                ("passcode", passcode),
                ("heart-beat", heart_beat),
            ],
        )
        await asyncio.wait_for(client.connected, timeout)
    except BaseException:
        client.abort()
        raise
    return client
