"""STOMP header escaping, as RabbitMQ applies it.

STOMP 1.2 ("Value Encoding") defines four escapes for header names and values:
``\\r`` (CR), ``\\n`` (LF), ``\\c`` (colon) and ``\\\\`` (backslash); any other
backslash sequence is a fatal protocol error. The spec exempts CONNECT/CONNECTED
and STOMP 1.0 from escaping, but RabbitMQ (``rabbit_stomp_frame.erl``) escapes on
output and unescapes on input in *every* frame of *every* version. We do the same,
so that a stomp.js client sees byte-identical headers.

Invariants:

* ``unescape(escape(s)) == s`` for every ``str`` (and likewise for bytes).
* ``escape`` output never contains a raw CR, LF or ``:``, so it can sit in a
  ``name:value`` line; every backslash in it starts a valid escape.
* Escapes are not nested: ``\\\\n`` decodes to backslash + ``n``, never to LF
  (frame_SUITE ``no_nested_escapes``).
* Only ASCII bytes are involved, so escaping commutes with UTF-8 encoding (a UTF-8
  multi-byte sequence never contains 0x5C, 0x3A, 0x0A or 0x0D). This is why the
  parser unescapes raw bytes and decodes afterwards, and the serializer escapes
  text and encodes afterwards.

Hot path: the common header has nothing to escape, so both directions first test
for the special characters with ``in`` (a C-speed scan) and return the input
unchanged. Escaping then uses a ``str.replace`` chain (backslash first, so that
the backslashes it inserts are not doubled again); unescaping uses one compiled
regular expression with a table lookup per escape sequence, never a per-byte loop.
"""

from __future__ import annotations

import re

__all__ = [
    "BadEscape",
    "escape",
    "escape_bytes",
    "unescape",
    "unescape_bytes",
]


class BadEscape(ValueError):
    """A backslash followed by anything but ``n``, ``r``, ``c`` or ``\\``.

    ``code`` is the character that followed the backslash, or ``None`` when the
    backslash was the last character of the input (the parser then knows which byte
    really followed it: the ``:`` after a name, or the CR/LF ending a value).
    """

    def __init__(self, code: str | None) -> None:
        self.code = code
        super().__init__(f"bad escape sequence: {_BSL + (code or '')!r}")


_BSL = "\\"

# STOMP 1.2, "Value Encoding": the four escapes, decoded direction.
_UNESCAPES: dict[str, str] = {"n": "\n", "r": "\r", "c": ":", "\\": "\\"}
_UNESCAPES_B: dict[bytes, bytes] = {b"n": b"\n", b"r": b"\r", b"c": b":", b"\\": b"\\"}

# A backslash and the (possibly missing) character after it. DOTALL so that a
# backslash followed by LF is reported as a bad escape rather than skipped.
_ESCAPE_RE = re.compile(r"\\(.?)", re.DOTALL)
_ESCAPE_RE_B = re.compile(rb"\\(.?)", re.DOTALL)


def escape(s: str) -> str:
    """Escape a header name or value for the wire (``:`` -> ``\\c`` and so on)."""
    if "\\" in s or ":" in s or "\n" in s or "\r" in s:
        # Backslash first: the later replacements insert backslashes of their own.
        return s.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace(":", "\\c")
    return s


def escape_bytes(b: bytes) -> bytes:
    """``escape`` for raw bytes (same rules, byte for byte)."""
    if b"\\" in b or b":" in b or b"\n" in b or b"\r" in b:
        return (
            b.replace(b"\\", b"\\\\")
            .replace(b"\n", b"\\n")
            .replace(b"\r", b"\\r")
            .replace(b":", b"\\c")
        )
    return b


def _unescape_match(m: re.Match[str]) -> str:
    code = m.group(1)
    try:
        return _UNESCAPES[code]
    except KeyError:
        raise BadEscape(code or None) from None


def _unescape_match_b(m: re.Match[bytes]) -> bytes:
    code = m.group(1)
    try:
        return _UNESCAPES_B[code]
    except KeyError:
        raise BadEscape(code.decode("latin-1") or None) from None


def unescape(s: str) -> str:
    """Decode the four STOMP escapes; raise ``BadEscape`` on any other sequence."""
    if "\\" not in s:
        return s
    return _ESCAPE_RE.sub(_unescape_match, s)


def unescape_bytes(b: bytes) -> bytes:
    """``unescape`` for raw bytes; ``BadEscape.code`` is the byte as a latin-1 char."""
    if b"\\" not in b:
        return b
    return _ESCAPE_RE_B.sub(_unescape_match_b, b)
