"""AMQP basic properties straight from and to the wire, without pamqp's reflection.

``decode_properties`` turns a content header's payload into the port's ``Properties``
as pamqp plus the adapter would (anything unusual: pamqp decodes, or raises, as it
always did); ``encode_properties`` writes them as pamqp marshals them.
``LazyContentHeader`` is the content header the fast frame reader hands to aiormq: the
gateway's channels never ask pamqp for its properties.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pamqp import commands as spec
from pamqp import decode as pamqp_decode
from pamqp.header import ContentHeader

from .base import Properties

_LONGLONG = struct.Struct(">Q")


def short_str(buf: bytes, pos: int) -> tuple[str, int]:
    """An AMQP short string at ``pos``: (text, position after it)."""
    end = pos + 1 + buf[pos]
    if end > len(buf):
        raise ValueError("short string past the end of the frame")
    return buf[pos + 1 : end].decode("utf-8"), end


class LazyContentHeader(ContentHeader):
    """A content header whose properties pamqp decodes only when someone reads them.

    The gateway's own channels decode ``raw`` straight into ``Properties``; other
    aiormq users (tests, helpers) see an ordinary ``ContentHeader``.
    """

    def __init__(self, raw: bytes, class_id: int, weight: int, body_size: int) -> None:
        self.raw = raw  # the frame payload: class, weight, size, flags, properties
        self.class_id = class_id  # type: ignore[assignment]
        self.weight = weight
        self.body_size = body_size
        self._properties: spec.Basic.Properties | None = None

    @property
    def properties(self) -> spec.Basic.Properties:
        if self._properties is None:
            header = ContentHeader()
            header.unmarshal(self.raw)
            self._properties = header.properties
        return self._properties

    @properties.setter
    def properties(self, value: spec.Basic.Properties) -> None:
        self._properties = value


_TS_MAX = 253402300799  # 9999-12-31T23:59:59Z: datetime's range, as pamqp converts


def _timestamp(value: int) -> int:
    if value > 0xFFFFFFFF:  # pamqp: "anything above the year 2106 is likely milliseconds"
        return int(datetime.fromtimestamp(value / 1000.0, tz=UTC).timestamp())
    return value


def decode_properties(raw: bytes) -> Properties:
    """Properties from a content header payload, as pamqp + the adapter would give."""
    flags = (raw[12] << 8) | raw[13]
    if flags & 1:  # a second flag word: not basic properties as we know them
        raise ValueError("continued property flags")
    p = 14
    content_type = content_encoding = correlation_id = reply_to = None
    expiration = message_id = type_ = user_id = app_id = None
    headers = delivery_mode = priority = timestamp = None
    if flags & 0x8000:
        content_type, p = short_str(raw, p)
    if flags & 0x4000:
        content_encoding, p = short_str(raw, p)
    if flags & 0x2000:
        consumed, headers = pamqp_decode.field_table(raw[p:])
        p += consumed
    if flags & 0x1000:
        delivery_mode = raw[p]
        p += 1
    if flags & 0x0800:
        priority = raw[p]
        p += 1
    if flags & 0x0400:
        correlation_id, p = short_str(raw, p)
    if flags & 0x0200:
        reply_to, p = short_str(raw, p)
    if flags & 0x0100:
        expiration, p = short_str(raw, p)
    if flags & 0x0080:
        message_id, p = short_str(raw, p)
    if flags & 0x0040:
        (stamp,) = _LONGLONG.unpack_from(raw, p)
        timestamp = _timestamp(stamp)
        p += 8
    if flags & 0x0020:
        type_, p = short_str(raw, p)
    if flags & 0x0010:
        user_id, p = short_str(raw, p)
    if flags & 0x0008:
        app_id, p = short_str(raw, p)
    if p > len(raw):
        raise ValueError("properties past the end of the frame")
    return Properties(
        content_type,
        content_encoding,
        headers,
        delivery_mode,
        priority,
        correlation_id,
        reply_to,
        expiration,
        message_id,
        timestamp,
        type_,
        user_id,
        app_id,
    )


def _from_pamqp(p: spec.Basic.Properties) -> Properties:
    ts = p.timestamp
    return Properties(
        content_type=p.content_type,
        content_encoding=p.content_encoding,
        headers=p.headers,
        delivery_mode=p.delivery_mode,
        priority=p.priority,
        correlation_id=p.correlation_id,
        reply_to=p.reply_to,
        expiration=p.expiration,
        message_id=p.message_id,
        timestamp=int(ts.timestamp()) if ts is not None else None,
        type=p.message_type,
        user_id=p.user_id,
        app_id=p.app_id,
    )


def header_properties(header: ContentHeader) -> Properties:
    if type(header) is LazyContentHeader:
        try:
            return decode_properties(header.raw)
        except (ValueError, IndexError, struct.error):
            pass  # pamqp decodes (or raises) as it always did
    return _from_pamqp(header.properties)


def _put_short(parts: list[bytes], value: str) -> None:
    data = value.encode("utf-8")
    if len(data) > 255:
        raise TypeError("string exceeds maximum length of 255 bytes")
    parts.append(bytes((len(data),)))
    parts.append(data)


def encode_properties(p: Properties, encode_table: Callable[[Any], bytes]) -> bytes:
    """Basic properties as pamqp marshals them (unset and "" values are left out).

    Raises on anything unusual (the caller then lets pamqp do it, and raise).
    """
    flags = 0
    parts: list[bytes] = []
    if p.content_type:
        flags |= 0x8000
        _put_short(parts, p.content_type)
    if p.content_encoding:
        flags |= 0x4000
        _put_short(parts, p.content_encoding)
    if p.headers is not None:
        flags |= 0x2000
        parts.append(encode_table(p.headers))
    if p.delivery_mode is not None:
        if p.delivery_mode not in (1, 2):
            raise ValueError("delivery_mode")
        flags |= 0x1000
        parts.append(bytes((p.delivery_mode,)))
    if p.priority is not None:
        flags |= 0x0800
        parts.append(bytes((p.priority,)))
    if p.correlation_id:
        flags |= 0x0400
        _put_short(parts, p.correlation_id)
    if p.reply_to:
        flags |= 0x0200
        _put_short(parts, p.reply_to)
    if p.expiration:
        flags |= 0x0100
        _put_short(parts, p.expiration)
    if p.message_id:
        flags |= 0x0080
        _put_short(parts, p.message_id)
    if p.timestamp is not None:
        if not 0 <= p.timestamp <= _TS_MAX:
            raise ValueError("timestamp")
        flags |= 0x0040
        parts.append(_LONGLONG.pack(p.timestamp))
    if p.type:
        flags |= 0x0020
        _put_short(parts, p.type)
    if p.user_id:
        flags |= 0x0010
        _put_short(parts, p.user_id)
    if p.app_id:
        flags |= 0x0008
        _put_short(parts, p.app_id)
    return flags.to_bytes(2, "big") + b"".join(parts)
