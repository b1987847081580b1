"""Incremental, sans-I/O STOMP frame parser (client -> server).

Bytes go in through ``feed`` (or ``receive_data`` + ``next_frame``), complete
``Frame`` objects come out; whatever does not yet form a complete frame stays
buffered. One WebSocket message may hold many frames and one frame may span many
messages. The grammar and every error are those of RabbitMQ's
``rabbit_stomp_frame.erl`` (main branch), which extends STOMP 1.2 "Augmented BNF":

    frame_seq ::= *(noise frame)        noise ::= *(NUL | eol)     eol ::= LF | CR LF
    frame     ::= cmd eol *(hdr eol) eol body NUL
    hdr       ::= name ":" value        (first raw ":" splits; values may hold raw ":")

How it works. The buffer is scanned with ``bytes.find`` / ``re.match`` only, never
byte by byte in Python. A stage machine remembers where it stopped:

* NOISE   skip NUL, LF and CR LF between frames (heart-beats, the LF after NUL);
* COMMAND find the LF ending the command line;
* HEADERS find the LF ending each header line, decode it, drop its bytes (when
          the whole block is buffered with bare-LF framing, it is split in one go);
* BODY    wait for ``content-length`` bytes + NUL, or find the first NUL.

``_scan`` records how far the current line/body was already searched, so a frame
trickling in byte by byte is still scanned once (linear, not quadratic). Consumed
bytes are dropped from the front of the buffer on the next ``receive_data``.

Invariants:

* Every limit is checked as soon as it is knowable, on incomplete input too: the
  buffer never grows past ``max_frame_size`` (when set), a partial command past 32
  bytes, a partial header line past about twice ``max_header_length``, or a body
  past ``max_body_length`` (a declared ``content-length`` is checked up front).
* A returned frame never violates a limit; ``command`` is non-empty.
* Parsing does not depend on how the input is chunked: the frames returned, in
  order, and whether an error occurs are the same for every split of the same
  bytes (only which error is named first may differ for doubly-broken input).
* Errors are fatal (RabbitMQ closes the socket, WS 1007): after a ``FrameError``
  the parser is dead, the buffer is freed, and every later call raises again.
  Frames that ``feed`` completed before the error travel on ``FrameError.frames``.

Deliberate RabbitMQ behaviours: escapes are decoded in every frame and version
(CONNECT included, unlike STOMP 1.2 says); the first of repeated headers wins and
repeats do not count toward ``max_headers``; ``content-length`` is honoured only
for ``content_length_commands`` (the server passes ``{"SEND"}``), a negative one is
fatal and a non-numeric one is ignored (NUL scan). STOMP 1.0 header trimming is
the session's job, after version negotiation.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final

from gateway.stomp.escaping import BadEscape, unescape_bytes
from gateway.stomp.frames import CONTENT_LENGTH, Command, Frame

__all__ = [
    "DEFAULT_MAX_BODY_LENGTH",
    "DEFAULT_MAX_HEADERS",
    "DEFAULT_MAX_HEADER_LENGTH",
    "MAX_COMMAND_LENGTH",
    "FrameError",
    "FrameParser",
    "erlang_string",
    "parse_content_length",
]

# RabbitMQ main's parser defaults (?DEFAULT_STOMP_PARSER_CONFIG).
DEFAULT_MAX_HEADERS: Final = 100
DEFAULT_MAX_HEADER_LENGTH: Final = 102_400
DEFAULT_MAX_BODY_LENGTH: Final = 104_857_600
# rabbit_stomp_frame.erl: "The longest known STOMP command is UNSUBSCRIBE (11 bytes).
# Allow some headroom for unknown commands but bound memory usage."
MAX_COMMAND_LENGTH: Final = 32

_LF: Final = 0x0A
_CR: Final = 0x0D
_COLON: Final = 0x3A

_NOISE_BYTES: Final = frozenset((0x00, _LF, _CR))
_NOISE_RE: Final = re.compile(rb"(?:[\n\x00]|\r\n)*")

# How far the header-block fast path looks for the blank line.
_BLOCK_WINDOW: Final = 16_384

_STAGE_NOISE: Final = 0
_STAGE_COMMAND: Final = 1
_STAGE_HEADERS: Final = 2
_STAGE_BODY: Final = 3

# Known commands are handed out as Command members (interned, no decoding).
_COMMANDS: Final[dict[bytes, str]] = {c.value.encode("ascii"): c for c in Command}


# --------------------------------------------------------------------------- errors

# io_lib:format("~p") escapes inside a printable (latin-1) Erlang string.
_ERL_ESCAPES: Final = str.maketrans(
    {
        "\\": "\\\\",
        '"': '\\"',
        "\n": "\\n",
        "\r": "\\r",
        "\t": "\\t",
        "\v": "\\v",
        "\b": "\\b",
        "\f": "\\f",
        "\x1b": "\\e",
    }
)
_ERL_UNPRINTABLE: Final = re.compile(r"[^\x20-\x7e\xa0-\xff\n\r\t\v\b\f\x1b]")


def erlang_string(data: bytes) -> str:
    """Format bytes the way RabbitMQ's close reason prints an Erlang string (``~p``).

    Printable latin-1 lists print as a quoted string (``"\\\\t"``, ``"\\ro"``); any
    other list prints as integers (``[92,0]``), and the empty list as ``[]``.
    """
    if not data:
        return "[]"
    text = data.decode("latin-1")
    if _ERL_UNPRINTABLE.search(text):
        return "[" + ",".join(map(str, data)) + "]"
    return '"' + text.translate(_ERL_ESCAPES) + '"'


class FrameError(Exception):
    """A fatal framing error. The connection must be closed (RabbitMQ: WS 1007).

    ``reason`` is the Erlang term RabbitMQ puts in the close reason, e.g.
    ``{bad_escape,"\\\\t"}``, ``{header_no_value,"foo"}``, ``missing_body_terminator``,
    ``{frame_too_big,{70000,65536}}``. It may be long (it can quote a header name):
    transports must cut it to the 123 bytes a WebSocket close reason allows.
    ``kind`` is the bare atom (``"bad_escape"``) for code that branches on it.
    ``frames`` holds the frames that ``feed`` completed, in the same call, before
    the error; the session may still act on them (3.10.8 dropped them, later
    releases process each frame as it is parsed).
    """

    def __init__(self, reason: str, *, kind: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind if kind is not None else reason.lstrip("{").split(",", 1)[0]
        self.frames: list[Frame] = []

    def __str__(self) -> str:
        return self.reason

    @classmethod
    def term(cls, kind: str, arg: str) -> FrameError:
        """``{kind,arg}`` with ``arg`` already formatted as an Erlang term."""
        return cls(f"{{{kind},{arg}}}", kind=kind)


def _unexpected(kind: str, cr_and_next: bytes) -> FrameError:
    # {unexpected_chars_in_header,"\ro"}: a CR not followed by LF (rabbit_stomp_frame).
    return FrameError.term(kind, erlang_string(cr_and_next))


def _unescape(raw: bytes, follow: int) -> bytes:
    """Unescape a name/value; ``follow`` is the byte after it (for a trailing ``\\``)."""
    try:
        return unescape_bytes(raw)
    except BadEscape as exc:
        code = exc.code.encode("latin-1") if exc.code is not None else bytes((follow,))
        raise FrameError.term("bad_escape", erlang_string(b"\\" + code)) from None


# --------------------------------------------------------------------------- content-length

# Erlang's string:trim/1 default separators, then binary_to_integer/1 (ASCII digits,
# optional sign). Python's int() is laxer (unicode digits, "1_0"), so match first.
_TRIM: Final = " \t\n\r\v\f\x85\u200e\u200f\u2028\u2029"
_INTEGER_RE: Final = re.compile(r"([+-]?)0*([0-9]+)")
# Past this many digits the exact value does not matter: it exceeds any sane limit.
_MAX_DIGITS: Final = 30


def parse_content_length(value: str) -> tuple[int, str] | None:
    """``(n, erlang_text)`` for a decimal ``content-length``, ``None`` if not numeric.

    Mirrors ``rabbit_stomp_frame:integer_header/2`` on main: surrounding whitespace
    is trimmed, a sign is allowed, anything else is "not found" (the parser then
    scans for NUL). ``n`` is clamped to +/-10**30 so absurd inputs stay cheap;
    ``erlang_text`` is the value as Erlang would print the integer.
    """
    m = _INTEGER_RE.fullmatch(value.strip(_TRIM))
    if m is None:
        return None
    sign, digits = m.groups()
    negative = sign == "-" and digits != "0"
    text = ("-" if negative else "") + digits
    n = 10**_MAX_DIGITS if len(digits) > _MAX_DIGITS else int(digits)
    return (-n if negative else n), text


# --------------------------------------------------------------------------- parser

_SHARED_SETS: dict[frozenset[str], frozenset[str]] = {}


class FrameParser:
    """Incremental STOMP frame parser with RabbitMQ's limits.

    ``max_frame_size`` caps the bytes of one frame, from the first command byte to
    the NUL (None: no cap). The session sets it to 65536 before login (RabbitMQ's
    ``max_frame_size_unauthenticated``, which also covers a frame split over many
    messages) and raises or clears it after CONNECT; it is read on every call.
    ``content_length_commands``: commands whose ``content-length`` is honoured
    (None: all). Not thread-safe; one parser per connection.
    """

    __slots__ = (
        "_body_length",
        "_buf",
        "_command",
        "_error",
        "_frame_used",
        "_headers",
        "_pos",
        "_scan",
        "_stage",
        "_try_block",
        "content_length_commands",
        "max_body_length",
        "max_frame_size",
        "max_header_length",
        "max_headers",
    )

    def __init__(
        self,
        *,
        max_headers: int = DEFAULT_MAX_HEADERS,
        max_header_length: int = DEFAULT_MAX_HEADER_LENGTH,
        max_body_length: int = DEFAULT_MAX_BODY_LENGTH,
        max_frame_size: int | None = None,
        content_length_commands: frozenset[str] | None = None,
    ) -> None:
        self.max_headers = max_headers
        self.max_header_length = max_header_length
        self.max_body_length = max_body_length
        self.max_frame_size = max_frame_size
        # Equal sets are shared: every session passes its own frozenset({"SEND"}).
        if content_length_commands is not None:
            content_length_commands = _SHARED_SETS.setdefault(
                content_length_commands, content_length_commands
            )
        self.content_length_commands = content_length_commands
        self._buf: bytes | bytearray = b""
        self._pos = 0  # first unconsumed byte in _buf
        self._stage = _STAGE_NOISE
        self._scan = 0  # bytes after _pos already searched for the current delimiter
        self._frame_used = 0  # bytes of the current frame already consumed (before _pos)
        self._command = ""
        self._headers: dict[str, str] = {}
        self._body_length: int | None = None
        self._try_block = False  # header-block fast path still to be tried for this frame
        self._error: FrameError | None = None

    # ------------------------------------------------------------------ public API

    @property
    def buffered(self) -> int:
        """Bytes received so far of a frame that is not complete yet (0 between frames).

        Header lines already decoded count too (they are part of the frame) even
        though their bytes are released, so this is what ``max_frame_size`` limits.
        """
        held = len(self._buf) - self._pos
        return held if self._stage == _STAGE_NOISE else self._frame_used + held

    @property
    def error(self) -> FrameError | None:
        """The error that killed this parser, if any."""
        return self._error

    def feed(self, data: bytes) -> list[Frame]:
        """Add ``data`` and return every frame it completes, in order.

        Raises ``FrameError`` (with ``.frames`` set to the frames completed earlier
        in this call) on a framing error; the parser is dead afterwards.
        """
        self.receive_data(data)
        frames: list[Frame] = []
        try:
            while (frame := self._parse()) is not None:
                frames.append(frame)
        except FrameError as exc:
            exc.frames = frames
            self._fail(exc)
            raise
        if self._pos >= len(self._buf):
            self._buf = b""
            self._pos = 0
        return frames

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` to the buffer without parsing (see ``next_frame``)."""
        if self._error is not None:
            raise self._dead()
        if not data:
            return
        buf = self._buf
        if self._pos >= len(buf):
            # Nothing pending: parse straight out of the caller's bytes, no copy.
            self._buf = data if type(data) is bytes else bytes(data)
        else:
            if type(buf) is bytes:
                pending = bytearray(memoryview(buf)[self._pos :])
            else:
                assert isinstance(buf, bytearray)
                pending = buf
                del pending[: self._pos]  # O(1): bytearray moves its start pointer
            pending += data
            self._buf = pending
        self._pos = 0

    def next_frame(self) -> Frame | None:
        """Parse one frame out of the buffer, or return None if none is complete.

        Lets a caller act on a frame (e.g. change ``max_frame_size`` after CONNECT)
        before the rest of the same message is parsed.
        """
        if self._error is not None:
            raise self._dead()
        try:
            return self._parse()
        except FrameError as exc:
            self._fail(exc)
            raise

    def __iter__(self) -> Iterator[Frame]:
        """Iterate ``next_frame`` until no complete frame is left."""
        while (frame := self.next_frame()) is not None:
            yield frame

    # ------------------------------------------------------------------ error state

    def _fail(self, exc: FrameError) -> None:
        self._error = exc
        self._buf = b""
        self._pos = 0
        self._stage = _STAGE_NOISE
        self._frame_used = 0
        self._headers = {}

    def _dead(self) -> FrameError:
        assert self._error is not None
        return FrameError(self._error.reason, kind=self._error.kind)

    # ------------------------------------------------------------------ stages

    def _parse(self) -> Frame | None:
        buf = self._buf
        n = len(buf)
        if self._stage == _STAGE_NOISE:
            pos = self._pos
            if pos >= n:
                return None
            if buf[pos] in _NOISE_BYTES:
                pos = _match_end(buf, pos)
                self._pos = pos
                if pos == n:
                    return None
                if buf[pos] == _CR:  # a CR the regex left: not followed by LF
                    if pos + 1 == n:
                        return None  # wait: the LF may be in the next message
                    raise _unexpected("unexpected_chars_between_frames", bytes(buf[pos : pos + 2]))
            self._stage = _STAGE_COMMAND
            self._scan = 0
            self._frame_used = 0
        if self._stage == _STAGE_COMMAND and not self._parse_command(buf, n):
            return self._incomplete(n)
        if self._stage == _STAGE_HEADERS and not self._parse_headers(buf, n):
            return self._incomplete(n)
        return self._parse_body(buf, n)

    def _incomplete(self, n: int) -> Frame | None:
        """No complete frame yet: enforce max_frame_size on what is held so far."""
        limit = self.max_frame_size
        if limit is not None:
            size = self._frame_used + n - self._pos
            if size > limit:
                raise FrameError.term("frame_too_big", f"{{{size},{limit}}}")
        return None

    def _consume(self, new_pos: int) -> None:
        self._frame_used += new_pos - self._pos
        self._pos = new_pos
        self._scan = 0

    def _parse_command(self, buf: bytes | bytearray, n: int) -> bool:
        pos = self._pos
        start = pos + self._scan
        lf = buf.find(b"\n", start)
        end = n if lf < 0 else lf
        cr = buf.find(b"\r", start, end)
        if cr >= 0 and cr + 1 < end:  # CR not followed by LF (frame_SUITE carriage_return_*)
            raise _unexpected("unexpected_chars_in_command", bytes(buf[cr : cr + 2]))
        if lf < 0:
            held = n - pos - (1 if buf[n - 1] == _CR else 0)
            self._scan = held  # a trailing CR is examined again with the next data
            if held > MAX_COMMAND_LENGTH:
                raise FrameError.term("command_too_long", str(MAX_COMMAND_LENGTH))
            return False
        stop = lf - 1 if buf[lf - 1] == _CR else lf
        if stop - pos > MAX_COMMAND_LENGTH:
            raise FrameError.term("command_too_long", str(MAX_COMMAND_LENGTH))
        self._try_block = stop == lf
        raw = bytes(buf[pos:stop])
        command = _COMMANDS.get(raw)
        self._command = raw.decode("utf-8", "surrogateescape") if command is None else command
        self._headers = {}
        self._consume(lf + 1)
        self._stage = _STAGE_HEADERS
        return True

    def _parse_headers(self, buf: bytes | bytearray, n: int) -> bool:
        while True:
            pos = self._pos
            if pos >= n:
                return False
            first = buf[pos]
            if first == _LF:  # empty line: end of headers
                self._start_body(pos + 1)
                return True
            if first == _CR:
                if pos + 1 >= n:
                    return False
                if buf[pos + 1] == _LF:
                    self._start_body(pos + 2)
                    return True
            elif self._try_block:
                # Fast path, tried once per frame whose command ended with a bare LF
                # (stomp.js framing): if the whole header block is buffered and has no
                # CR, split it in one go instead of line by line. The window bounds
                # the search when the framing is mixed and the blank line is CR LF.
                self._try_block = False
                blank = buf.find(b"\n\n", pos, pos + _BLOCK_WINDOW)
                if blank >= 0 and buf.find(b"\r", pos, blank) < 0:
                    add = self._add_header
                    for line in bytes(buf[pos:blank]).split(b"\n"):
                        add(line, _LF)
                    self._start_body(blank + 2)
                    return True
            start = pos + self._scan
            lf = buf.find(b"\n", start)
            end = n if lf < 0 else lf
            cr = buf.find(b"\r", start, end)
            if cr >= 0 and cr + 1 < end:
                self._raise_bad_cr(buf, pos, cr)
            if lf < 0:
                held = n - (1 if buf[n - 1] == _CR else 0)
                self._scan = held - pos
                self._check_partial_line(buf, pos, held)
                return False
            stop = lf - 1 if buf[lf - 1] == _CR else lf
            self._add_header(bytes(buf[pos:stop]), buf[stop])
            self._consume(lf + 1)

    def _raise_bad_cr(self, buf: bytes | bytearray, pos: int, cr: int) -> None:
        # RabbitMQ reads the line byte by byte, so a bad escape *before* the stray CR
        # is the error it reports; check that first.
        line = bytes(buf[pos:cr])
        colon = line.find(b":")
        if colon < 0:
            _unescape(line, _CR)
        else:
            _unescape(line[:colon], _COLON)
            _unescape(line[colon + 1 :], _CR)
        raise _unexpected("unexpected_chars_in_header", bytes(buf[cr : cr + 2]))

    def _check_partial_line(self, buf: bytes | bytearray, pos: int, held: int) -> None:
        """Reject an unfinished header line whose name or value is already too long.

        The decoded length is at least ``len - backslashes`` and at least half the
        raw length (escapes are 2 bytes for 1), so this never rejects a line that
        could still be valid, and bounds a partial line to ~2x the limit.
        """
        limit = self.max_header_length
        if held - pos <= limit:
            return
        colon = buf.find(b":", pos, held)
        spans = ((pos, held),) if colon < 0 else ((pos, colon), (colon + 1, held))
        for a, b in spans:
            size = b - a
            if size > limit and max(size - buf.count(b"\\", a, b), (size + 1) // 2) > limit:
                raise FrameError.term("max_header_length", str(limit))

    def _add_header(self, line: bytes, follow: int) -> None:
        colon = line.find(b":")
        if colon < 0:
            # header_no_value quotes the (unescaped) name, as RabbitMQ 3.10.8 does.
            name_b = _unescape(line, follow)
            raise FrameError.term("header_no_value", erlang_string(name_b))
        if b"\\" in line:
            name_b = _unescape(line[:colon], _COLON)
            value_b = _unescape(line[colon + 1 :], follow)
        else:
            name_b = line[:colon]
            value_b = line[colon + 1 :]
        limit = self.max_header_length
        if len(name_b) > limit or len(value_b) > limit:
            raise FrameError.term("max_header_length", str(limit))
        name = name_b.decode("utf-8", "surrogateescape")
        headers = self._headers
        if name in headers:
            return  # first occurrence wins; repeats do not count toward max_headers
        if len(headers) >= self.max_headers:
            raise FrameError.term("max_headers", str(self.max_headers))
        headers[name] = value_b.decode("utf-8", "surrogateescape")

    def _start_body(self, body_pos: int) -> None:
        self._consume(body_pos)
        self._stage = _STAGE_BODY
        self._body_length = None
        commands = self.content_length_commands
        if commands is not None and self._command not in commands:
            return  # RabbitMQ honours content-length on SEND only
        value = self._headers.get(CONTENT_LENGTH)
        if value is None:
            return
        parsed = parse_content_length(value)
        if parsed is None:
            return  # non-numeric: ignored, the body ends at the first NUL
        length, text = parsed
        if length < 0:
            raise FrameError.term("invalid_content_length", text)
        if length > self.max_body_length:
            raise FrameError.term("max_body_length", text)
        limit = self.max_frame_size
        if limit is not None and self._frame_used + length + 1 > limit:
            size = self._frame_used + length + 1
            raise FrameError.term("frame_too_big", f"{{{size},{limit}}}")
        self._body_length = length

    def _parse_body(self, buf: bytes | bytearray, n: int) -> Frame | None:
        pos = self._pos
        length = self._body_length
        if length is not None:
            end = pos + length
            if end >= n:
                return self._incomplete(n)
            if buf[end] != 0:  # the byte after content-length bytes must be NUL
                raise FrameError("missing_body_terminator")
        else:
            end = buf.find(b"\x00", pos + self._scan)
            if end < 0:
                if n - pos > self.max_body_length:
                    raise FrameError.term("max_body_length", "unknown")
                self._scan = n - pos
                return self._incomplete(n)
            if end - pos > self.max_body_length:
                raise FrameError.term("max_body_length", "unknown")
        body = buf[pos:end] if type(buf) is bytes else bytes(memoryview(buf)[pos:end])
        limit = self.max_frame_size
        if limit is not None:
            size = self._frame_used + end + 1 - pos
            if size > limit:
                raise FrameError.term("frame_too_big", f"{{{size},{limit}}}")
        frame = Frame(self._command, self._headers, body)
        self._headers = {}
        self._consume(end + 1)
        self._stage = _STAGE_NOISE
        return frame


def _match_end(buf: bytes | bytearray, pos: int) -> int:
    m = _NOISE_RE.match(buf, pos)
    assert m is not None  # the pattern matches the empty string
    return m.end()
