"""Sans-I/O STOMP codec: bytes in, frames out; frames to bytes.

The rest of the gateway imports from here only. Nothing in this package does I/O,
logs, or imports asyncio or other parts of the gateway (tests/unit/test_codec_imports.py
keeps it so). See ``parser`` for the grammar and limits, ``frames`` for serialization
and ``escaping`` for the header escapes RabbitMQ applies in every STOMP version.
"""

from __future__ import annotations

from gateway.stomp.escaping import BadEscape, escape, escape_bytes, unescape, unescape_bytes
from gateway.stomp.frames import CONTENT_LENGTH, Command, Frame, encode_frame
from gateway.stomp.parser import (
    DEFAULT_MAX_BODY_LENGTH,
    DEFAULT_MAX_HEADER_LENGTH,
    DEFAULT_MAX_HEADERS,
    MAX_COMMAND_LENGTH,
    FrameError,
    FrameParser,
    erlang_string,
    parse_content_length,
)

__all__ = [
    "CONTENT_LENGTH",
    "DEFAULT_MAX_BODY_LENGTH",
    "DEFAULT_MAX_HEADERS",
    "DEFAULT_MAX_HEADER_LENGTH",
    "MAX_COMMAND_LENGTH",
    "BadEscape",
    "Command",
    "Frame",
    "FrameError",
    "FrameParser",
    "encode_frame",
    "erlang_string",
    "escape",
    "escape_bytes",
    "parse_content_length",
    "unescape",
    "unescape_bytes",
]
