"""STOMP frames and their serialization (server -> client).

A ``Frame`` is an immutable value: the command as received, the headers in wire
order (first occurrence of a duplicate kept, as RabbitMQ does), and the body bytes.
Header names and values are ``str``; bytes that are not valid UTF-8 are carried as
lone surrogates (``errors="surrogateescape"``) so that arbitrary header bytes survive
a parse/serialize round trip unchanged.

``encode_frame`` reproduces ``rabbit_stomp_frame:serialize/2`` byte for byte:

* ``COMMAND LF``, then one ``name:value LF`` per header, then ``LF``, the body,
  ``NUL`` and - with ``trailing_lf`` (RabbitMQ's default ``trailing_lf = true``) -
  one more ``LF``.
* Names *and* values are escaped in every STOMP version, CONNECTED included
  (RabbitMQ deviates from STOMP 1.2 "Value Encoding" here; stomp.js copes).
* Any ``content-length`` passed in is dropped, and ``content-length:<len(body)>``
  is appended as the *last* header, only when the body is non-empty.

Invariants: ``FrameParser().feed(frame.serialize())`` gives back an equal frame
whenever the frame's command honours content-length (or its body has no NUL), and
serialization never emits a raw CR, LF or ``:`` inside a header name or value.

The hot path (one MESSAGE per delivery) builds the head as one ``str`` and encodes
it once; the body is copied exactly once, by the final ``bytes.join``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from gateway.stomp.escaping import escape

__all__ = ["CONTENT_LENGTH", "Command", "Frame", "encode_frame"]

CONTENT_LENGTH = "content-length"

_NUL_LF = b"\x00\n"
_NUL = b"\x00"


class Command(StrEnum):
    """The STOMP 1.2 commands (section "Frames and Headers"), client and server side.

    Members compare equal to (and hash like) their plain strings, so a ``Frame``
    built with ``"SEND"`` equals one built with ``Command.SEND``. The parser hands
    out the members for known commands and the raw ``str`` for unknown ones.
    """

    # client frames
    CONNECT = "CONNECT"
    STOMP = "STOMP"
    SEND = "SEND"
    SUBSCRIBE = "SUBSCRIBE"
    UNSUBSCRIBE = "UNSUBSCRIBE"
    ACK = "ACK"
    NACK = "NACK"
    BEGIN = "BEGIN"
    COMMIT = "COMMIT"
    ABORT = "ABORT"
    DISCONNECT = "DISCONNECT"
    # server frames
    CONNECTED = "CONNECTED"
    MESSAGE = "MESSAGE"
    RECEIPT = "RECEIPT"
    ERROR = "ERROR"


@dataclass(frozen=True, slots=True)
class Frame:
    """One STOMP frame.

    ``command`` is kept exactly as received (case-sensitive; unknown commands are
    kept too and rejected later by the session with ERROR "Bad command").
    ``headers`` keeps insertion order; for a parsed frame, the first occurrence of a
    repeated header wins (STOMP 1.2 "Repeated Header Entries", RabbitMQ in all
    versions). Treat the dict as read-only.
    """

    command: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of header ``name``, or ``default`` when absent."""
        return self.headers.get(name, default)

    def serialize(self, *, trailing_lf: bool = True) -> bytes:
        """This frame on the wire; see ``encode_frame``."""
        return encode_frame(self.command, self.headers, self.body, trailing_lf=trailing_lf)


def encode_frame(
    command: str,
    headers: Iterable[tuple[str, str]] | Mapping[str, str],
    body: bytes = b"",
    *,
    trailing_lf: bool = True,
) -> bytes:
    """Serialize a frame exactly as ``rabbit_stomp_frame:serialize/2`` does.

    ``headers`` is a mapping or an iterable of ``(name, value)`` pairs; pairs are
    written in the given order, repeats included. Text is UTF-8 encoded with
    ``surrogateescape`` so header bytes that came in as non-UTF-8 go out unchanged.
    """
    items: Iterable[tuple[str, str]]
    if isinstance(headers, Mapping):
        items = headers.items()
    else:
        items = headers
    parts: list[str] = [command, "\n"]
    append = parts.append
    for name, value in items:
        # RabbitMQ drops any stored content-length and computes its own (below).
        if name == CONTENT_LENGTH:
            continue
        append(escape(name))
        append(":")
        append(escape(value))
        append("\n")
    size = len(body)
    if size:
        # content-length goes last, and only for a non-empty body (RabbitMQ).
        append(f"content-length:{size}\n\n")
    else:
        append("\n")
    head = "".join(parts).encode("utf-8", "surrogateescape")
    return b"".join((head, body, _NUL_LF if trailing_lf else _NUL))
