"""STOMP headers <-> AMQP 0-9-1 basic properties, both directions.

How it works. ``send_properties`` builds the properties of the basic.publish a SEND
becomes (``rabbit_stomp_util:message_properties/1``): a dozen headers map to
properties, every other header except ``destination`` goes, as a string, into the
AMQP ``headers`` table. ``message_headers`` builds the header list of the MESSAGE
frame for a delivery (``rabbit_stomp_util:headers/5``): the frame's own headers,
then the AMQP header table, then the properties, in the plugin's order.

The session does not call ``message_headers`` per delivery: ``MessageEncoder``
(one per subscription) writes the MESSAGE frame itself, byte for byte what
``encode_frame("MESSAGE", message_headers(...), body)`` gives, with the part that
only depends on the subscription and the delivery's exchange and routing key
(``MESSAGE``, subscription, destination, the message-id's constant start) escaped
and cached once, and the rest (properties, header table) in one flat pass.

Deliberate differences from RabbitMQ 3.10.8 are marked ``DIFFERENCE``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.broker.base import Delivery, NarrowInt, Properties
from gateway.destinations import destination_from_delivery, parse_integer
from gateway.errors import ProcessingError
from gateway.stomp.escaping import escape

__all__ = ["MessageEncoder", "message_headers", "reply_to_header", "send_properties"]

# SEND headers that become properties (or are the destination), so they are
# kept out of the AMQP headers table (rabbit_stomp_util:user_header/1).
_PROPERTY_HEADERS = frozenset(
    (
        "content-type",
        "content-encoding",
        "persistent",
        "priority",
        "correlation-id",
        "reply-to",
        "expiration",
        "amqp-message-id",
        "timestamp",
        "type",
        "user-id",
        "app-id",
        "destination",
    )
)


def _bounded(value: str, upper: int) -> int:
    # DIFFERENCE: values that do not fit the AMQP field (octet for priority,
    # unsigned 64-bit for timestamp) are "Processing error"; Erlang would
    # truncate them silently when encoding.
    number = parse_integer(value)
    if not 0 <= number <= upper:
        raise ProcessingError()
    return number


def send_properties(headers: Mapping[str, str], *, reply_to: str | None = None) -> Properties:
    """The basic properties for a SEND with these headers (first occurrence of each).

    ``reply_to`` overrides the ``reply-to`` header: the session passes the queue
    name a ``/temp-queue/<id>`` was rewritten to. ``persistent`` true/True gives
    delivery_mode 2 (anything else leaves it unset). Non-integer ``priority`` or
    ``timestamp`` is "Processing error".

    Every other header goes into the headers table as a string (longstr),
    including receipt, transaction, content-length, ack, id and x-*. The plugin
    keeps the frame's headers newest-first (its parser prepends), so its table
    lists them in *reverse* frame order; we reproduce that order. The table is
    always present, possibly empty, as in the plugin.
    """
    get = headers.get
    persistent = get("persistent")
    priority = get("priority")
    timestamp = get("timestamp")
    excluded = _PROPERTY_HEADERS
    table: dict[str, Any] = {}
    # A frame's headers are a dict (reversible); any other mapping is copied first.
    for name in reversed(headers if isinstance(headers, dict) else dict(headers)):
        if name not in excluded:
            table[name] = headers[name]
    return Properties(  # positional: once per SEND, in the field order of Properties
        get("content-type"),
        get("content-encoding"),
        table,
        2 if persistent == "true" or persistent == "True" else None,
        None if priority is None else _bounded(priority, 255),
        get("correlation-id"),
        get("reply-to") if reply_to is None else reply_to,
        get("expiration"),
        get("amqp-message-id"),
        None if timestamp is None else _bounded(timestamp, 2**64 - 1),
        get("type"),
        get("user-id"),
        get("app-id"),
    )


# AMQP header-table entries that would collide with the MESSAGE frame's own
# headers. DIFFERENCE: 3.10.8 emits them as second, later headers (main lets
# them overwrite the real ones, which breaks ACK); we drop them so the real ones
# are the only ones. content-length is recomputed by the serializer anyway.
_RESERVED = frozenset(
    ("destination", "message-id", "subscription", "content-length", "ack", "redelivered")
)

# rabbit_routing_util:dest_prefixes/0: a reply-to starting with none of these
# gets "/reply-queue/" in front (rabbit_stomp_util:headers_post_process/1).
_REPLY_TO_PREFIXES = ("/exchange", "/topic", "/queue", "/amq/queue", "/reply-queue/")


def reply_to_header(value: str) -> str:
    """MESSAGE ``reply-to`` for an AMQP reply_to: ``amq.gen-X`` -> ``/reply-queue/amq.gen-X``."""
    return value if value.startswith(_REPLY_TO_PREFIXES) else "/reply-queue/" + value


def _table_value(value: Any) -> str | None:
    # rabbit_stomp_util:adhoc_convert_headers/2 keeps longstr and integers only.
    # pamqp gives a longstr as str, or as bytes when it is not UTF-8 (a byte
    # array 'x' comes as bytearray and is dropped like the plugin drops it).
    # Only signed 32/64-bit integers count; the adapter marks others NarrowInt.
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if isinstance(value, int) and not isinstance(value, (bool, NarrowInt)):
        return str(value)
    return None  # bool, float, Decimal, datetime, list (x-death), dict, None


def message_headers(
    delivery: Delivery, *, subscription: str | None, message_id: str, ack: str | None
) -> list[tuple[str, str]]:
    """MESSAGE headers for a delivery, in the plugin's order.

    subscription (only for ``T_`` consumer tags), destination, message-id,
    redelivered, ack (STOMP 1.2 client modes), then the AMQP header table (strings
    and integers only, colliding names dropped), then app-id, user-id, type,
    timestamp, amqp-message-id, expiration, reply-to, correlation-id, priority,
    persistent, content-encoding, content-type (each only when set).

    Values decoded from non-UTF-8 bytes carry surrogate escapes; encode frames
    with ``errors="surrogateescape"`` to send the original bytes, as the plugin does.
    """
    out: list[tuple[str, str]] = []
    append = out.append
    if subscription is not None:
        append(("subscription", subscription))
    append(("destination", destination_from_delivery(delivery.exchange, delivery.routing_key)))
    append(("message-id", message_id))
    append(("redelivered", "true" if delivery.redelivered else "false"))
    if ack is not None:
        append(("ack", ack))
    property_headers(delivery.properties, out)
    return out


def property_headers(props: Properties, out: list[tuple[str, str]]) -> None:
    """Append the MESSAGE headers that come from the AMQP header table and properties."""
    append = out.append
    table = props.headers
    if table:
        reserved = _RESERVED
        for key, value in table.items():
            if type(value) is str:  # the common case first
                text = value
            else:
                converted = _table_value(value)
                if converted is None:
                    continue
                text = converted
            if type(key) is not str:
                if not isinstance(key, bytes):
                    continue
                key = key.decode("utf-8", "surrogateescape")
            if key in reserved:
                continue
            if key == "reply-to":  # post-processing applies to table entries too
                text = reply_to_header(text)
            append((key, text))

    # rabbit_stomp_util:message_headers/1 folds the properties onto the front of
    # a list, so they come out in reverse declaration order.
    if props.app_id is not None:
        append(("app-id", props.app_id))
    if props.user_id is not None:
        append(("user-id", props.user_id))
    if props.type is not None:
        append(("type", props.type))
    if props.timestamp is not None:
        append(("timestamp", str(props.timestamp)))
    if props.message_id is not None:
        append(("amqp-message-id", props.message_id))
    if props.expiration is not None:
        append(("expiration", props.expiration))
    if props.reply_to is not None:
        append(("reply-to", reply_to_header(props.reply_to)))
    if props.correlation_id is not None:
        append(("correlation-id", props.correlation_id))
    if props.priority is not None:
        append(("priority", str(props.priority)))
    mode = props.delivery_mode
    if mode is not None:
        # maybe_header(persistent, 2) -> "true"; any other delivery mode is an
        # integer and is rendered in decimal (delivery_mode 1 -> "persistent:1").
        append(("persistent", "true" if mode == 2 else str(mode)))
    if props.content_encoding is not None:
        append(("content-encoding", props.content_encoding))
    if props.content_type is not None:
        append(("content-type", props.content_type))


_PREFIX_CACHE = 256  # (exchange, routing key) pairs remembered per subscription


# The header lines of the last properties encoded, by identity: local fan-out encodes
# one delivery for many subscriptions in a row. (Properties are never mutated, and
# holding the last one keeps its id from being reused.)
_last: list[Any] = [None, ""]


class MessageEncoder:
    """MESSAGE frames for one subscription of one session (see the module docstring).

    ``subscription``: the MESSAGE "subscription" header (None: none); ``id_prefix``:
    the message-id up to the delivery tag (``<tag>@@<session>@@``); ``ack``: whether
    the frame carries the STOMP 1.2 "ack" header (client modes). Output equals
    ``encode_frame("MESSAGE", message_headers(...), body, trailing_lf=...)``.
    """

    __slots__ = ("_ack", "_end", "_prefixes", "_sub_line", "id_prefix")

    def __init__(
        self, *, subscription: str | None, id_prefix: str, ack: bool, trailing_lf: bool
    ) -> None:
        self._sub_line = "" if subscription is None else f"subscription:{escape(subscription)}\n"
        self.id_prefix = id_prefix
        self._ack = "ack:" + escape(id_prefix) if ack else None
        self._end = b"\x00\n" if trailing_lf else b"\x00"
        self._prefixes: dict[tuple[str, str], str] = {}

    def _prefix(self, exchange: str, routing_key: str) -> str:
        destination = destination_from_delivery(exchange, routing_key)
        prefix = (
            f"MESSAGE\n{self._sub_line}destination:{escape(destination)}\n"
            f"message-id:{escape(self.id_prefix)}"
        )
        if len(self._prefixes) >= _PREFIX_CACHE:
            self._prefixes.clear()
        self._prefixes[(exchange, routing_key)] = prefix
        return prefix

    def encode(self, delivery: Delivery) -> bytes:
        prefix = self._prefixes.get((delivery.exchange, delivery.routing_key))
        if prefix is None:
            prefix = self._prefix(delivery.exchange, delivery.routing_key)
        tag = str(delivery.delivery_tag)  # digits: nothing to escape
        redelivered = "\nredelivered:true\n" if delivery.redelivered else "\nredelivered:false\n"
        parts = [prefix, tag, redelivered]
        if self._ack is not None:
            parts += (self._ack, tag, "\n")
        props = delivery.properties
        if props is _last[0]:
            # The same message again, for another subscription (local fan-out).
            parts.append(_last[1])
        elif (
            props.headers
            or props.app_id is not None
            or props.user_id is not None
            or props.type is not None
            or props.timestamp is not None
            or props.message_id is not None
            or props.expiration is not None
            or props.reply_to is not None
            or props.correlation_id is not None
            or props.priority is not None
            or props.delivery_mode is not None
            or props.content_encoding is not None
            or props.content_type is not None
        ):
            pairs: list[tuple[str, str]] = []
            property_headers(props, pairs)
            lines = "".join([f"{escape(name)}:{escape(value)}\n" for name, value in pairs])
            _last[:] = (props, lines)
            parts.append(lines)
        body = delivery.body
        size = len(body)
        # encode_frame: content-length last, only for a non-empty body.
        parts.append(f"content-length:{size}\n\n" if size else "\n")
        head = "".join(parts).encode("utf-8", "surrogateescape")
        return b"".join((head, body, self._end))
