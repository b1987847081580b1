"""Sans-I/O reader of the frames a WebSocket client sends (RFC 6455 section 5).

The gateway's inbound fast path (``transport.websocket.GatewayConnection``) uses it
with no extension or with permessage-deflate (RFC 7692): bytes go in with ``feed``;
``next(max_size)`` returns the next complete message (its payload, unmasked,
decompressed, fragments joined), or a ``Control`` frame, or None when more bytes are
needed. It raises ``WsFrameError`` (close code and reason) for anything websockets'
own parser refuses, with websockets' reasons: reserved bits, unknown opcodes, unmasked
frames, oversized messages (1009), bad fragment sequences, fragmented or long control
frames, invalid UTF-8 in a text message (1007), corrupt deflate data. Invariants:

* Only whole frames are consumed: the unconsumed bytes (``rest()``) always start at a
  frame boundary, so they can be handed to websockets' parser at any time, together
  with ``fragment_size`` (websockets' ``Protocol.current_size``).
* ``max_size`` is read per frame (the caller's limit may grow after login); as in
  websockets it bounds the whole message: a fragment may be at most ``max_size``
  minus what the message already holds. It is checked on the frame header, before the
  payload is buffered.
* A text message is validated as UTF-8 once, when complete (ASCII checked in C first).
* permessage-deflate: each data frame goes through the connection's own negotiated
  ``PerMessageDeflate.decode`` (websockets' object, shared with its protocol: rsv1,
  continuation frames, context takeover, the zip-bomb limit), in the order
  ``Frame.parse`` applies it: the wire length is checked against the limit on the
  header, then the frame is decoded with the same limit, then its reserved bits are
  checked, then its place in the message. ``fragment_size`` counts decompressed bytes,
  as websockets' ``current_size`` does. Frames without rsv1 (uncompressed messages)
  skip the decoder, as ``decode`` would return them unchanged.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from websockets.exceptions import PayloadTooBig, ProtocolError
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets without its C extension
    from websockets.utils import apply_mask

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_OPCODES = frozenset((CONT, TEXT, BINARY, CLOSE, PING, PONG))

CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011

# websockets compares opcodes by identity: its enum members, by opcode.
_DATA_OPCODES = (Opcode.CONT, Opcode.TEXT, Opcode.BINARY)

_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")


class WsFrameError(Exception):
    """The client broke RFC 6455: fail the connection with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Control:
    """A control frame (close, ping, pong): its payload and its bytes as received."""

    opcode: int
    payload: bytes
    raw: bytes


def _too_big(length: int, limit: int, current: int | None) -> WsFrameError:
    # websockets' PayloadTooBig text, current size included in the limit.
    if current is None:
        return WsFrameError(
            CLOSE_MESSAGE_TOO_BIG, f"frame with {length} bytes exceeds limit of {limit} bytes"
        )
    return WsFrameError(
        CLOSE_MESSAGE_TOO_BIG,
        f"frame with {length} bytes after reading {current} bytes "
        f"exceeds limit of {limit + current} bytes",
    )


class FrameReader:
    """Client frames in, messages and control frames out (see the module docstring)."""

    __slots__ = ("_buf", "_deflate", "_fragments", "_pos", "_text", "fragment_size")

    def __init__(self, deflate: PerMessageDeflate | None = None) -> None:
        # The negotiated extension object (websockets' own, shared with its protocol).
        self._deflate = deflate
        self._buf: bytes | bytearray = b""
        self._pos = 0  # start of the first unconsumed frame in _buf
        self._fragments: list[bytes] = []  # payloads of the fragmented message so far
        self._text = False  # the fragmented message is text
        self.fragment_size: int | None = None  # its size; None: no fragmented message

    def feed(self, data: bytes) -> None:
        buf = self._buf
        if self._pos >= len(buf):
            self._buf = data  # the usual case: no copy
        elif isinstance(buf, bytearray):
            del buf[: self._pos]
            buf += data
        else:  # a partial frame is left: accumulate in a bytearray from now on
            self._buf = bytearray(memoryview(buf)[self._pos :])
            self._buf += data
        self._pos = 0

    def buffered(self) -> int:
        """Bytes received and not consumed yet."""
        return len(self._buf) - self._pos

    def rest(self) -> bytes:
        """The unconsumed bytes (they start at a frame boundary); the buffer empties."""
        rest = bytes(self._buf[self._pos :])
        self._buf = b""
        self._pos = 0
        return rest

    def next(self, max_size: int | None) -> bytes | Control | None:
        """The next message, or control frame, or None (need more bytes)."""
        # Fast path: one whole, final, masked text/binary frame with a 7 or 16-bit
        # length, within the limit, no fragmented message in progress; compressed
        # (rsv1) only when deflate was negotiated. Anything else (including "need
        # more bytes"): the general loop, from the same point.
        buf = self._buf
        pos = self._pos
        if len(buf) - pos >= 8 and self.fragment_size is None:
            first = buf[pos]
            second = buf[pos + 1]
            if (
                first == 0x81
                or first == 0x82
                or ((first == 0xC1 or first == 0xC2) and self._deflate is not None)
            ) and 0x80 <= second <= 0xFE:
                if second < 0xFE:
                    start = pos + 6
                    length = second - 0x80
                else:
                    start = pos + 8
                    length = (buf[pos + 2] << 8) | buf[pos + 3]
                end = start + length
                if end <= len(buf) and (max_size is None or length <= max_size):
                    payload = apply_mask(buf[start:end], buf[start - 4 : start])
                    self._pos = end
                    if first & 0x40:
                        payload = self._inflate(first, payload, max_size)
                    if (first == 0x81 or first == 0xC1) and not payload.isascii():
                        _check_utf8(payload)
                    return payload
        return self._next(max_size)

    def _next(self, max_size: int | None) -> bytes | Control | None:
        while True:
            buf = self._buf
            pos = self._pos
            available = len(buf) - pos
            if available < 2:
                return None
            first = buf[pos]
            second = buf[pos + 1]
            opcode = first & 0x0F
            if opcode not in _OPCODES:
                raise WsFrameError(CLOSE_PROTOCOL_ERROR, "invalid opcode")
            if not second & 0x80:
                raise WsFrameError(CLOSE_PROTOCOL_ERROR, "incorrect masking")
            length = second & 0x7F
            head = 6
            if length == 126:
                if available < 4:
                    return None
                (length,) = _U16.unpack_from(buf, pos + 2)
                head = 8
            elif length == 127:
                if available < 10:
                    return None
                (length,) = _U64.unpack_from(buf, pos + 2)
                head = 14
            current = self.fragment_size
            limit = None
            if max_size is not None:
                limit = max_size if current is None else max_size - current
                if length > limit:
                    raise _too_big(length, limit, current)
            # With deflate a data frame's reserved bits are checked once decoded.
            inflate = self._deflate is not None and opcode < CLOSE
            if first & 0x70 and not inflate:
                raise WsFrameError(CLOSE_PROTOCOL_ERROR, "reserved bits must be 0")
            if opcode >= CLOSE:
                if length > 125:
                    raise WsFrameError(CLOSE_PROTOCOL_ERROR, "control frame too long")
                if not first & 0x80:
                    raise WsFrameError(CLOSE_PROTOCOL_ERROR, "fragmented control frame")
            end = pos + head + length
            if len(buf) < end:
                return None
            view = memoryview(buf)
            payload = apply_mask(view[pos + head : end], buf[pos + head - 4 : pos + head])
            self._pos = end
            if opcode >= CLOSE:
                return Control(opcode, payload, bytes(view[pos:end]))
            if inflate:
                payload = self._inflate(first, payload, limit)
            if opcode == CONT:
                if current is None:
                    raise WsFrameError(CLOSE_PROTOCOL_ERROR, "unexpected continuation frame")
                self._fragments.append(payload)
                if not first & 0x80:
                    self.fragment_size = current + len(payload)
                    continue
                payload = b"".join(self._fragments)
                self._fragments = []
                self.fragment_size = None
                if self._text:
                    _check_utf8(payload)
                return payload
            if current is not None:
                raise WsFrameError(CLOSE_PROTOCOL_ERROR, "expected a continuation frame")
            if not first & 0x80:
                self._fragments.append(payload)
                self._text = opcode == TEXT
                self.fragment_size = len(payload)
                continue
            if opcode == TEXT:
                _check_utf8(payload)
            return payload

    def _inflate(self, first: int, payload: bytes, limit: int | None) -> bytes:
        """A data frame's payload through the negotiated permessage-deflate, refused
        as websockets' ``Protocol.parse`` refuses it (then its reserved bits)."""
        deflate = self._deflate
        assert deflate is not None
        frame = Frame(_DATA_OPCODES[first & 0x0F], payload, first >= 0x80, bool(first & 0x40))
        try:
            frame = deflate.decode(frame, max_size=limit)
        except ProtocolError as exc:  # rsv1 on a continuation, corrupt data
            raise WsFrameError(CLOSE_PROTOCOL_ERROR, str(exc)) from None
        except PayloadTooBig as exc:  # decompressed past the limit
            exc.set_current_size(self.fragment_size)
            raise WsFrameError(CLOSE_MESSAGE_TOO_BIG, str(exc)) from None
        except Exception:  # websockets: "parser failed", 1011 without details
            raise WsFrameError(CLOSE_INTERNAL_ERROR, "") from None
        if frame.rsv1 or first & 0x30:
            raise WsFrameError(CLOSE_PROTOCOL_ERROR, "reserved bits must be 0")
        data = frame.data
        return data if isinstance(data, bytes) else bytes(data)


def _check_utf8(payload: bytes) -> None:
    if not payload.isascii():
        try:
            payload.decode()
        except UnicodeDecodeError as exc:
            # websockets' reason for the same failure.
            raise WsFrameError(
                CLOSE_INVALID_DATA, f"{exc.reason} at position {exc.start}"
            ) from None
