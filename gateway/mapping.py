"""STOMP headers <-> AMQP 0-9-1 basic properties, both directions.

How it works. ``send_properties`` builds the properties of the basic.publish a SEND
becomes (``rabbit_stomp_util:message_properties/1``): a dozen headers map to
properties, every other header except ``destination`` goes, as a string, into the
AMQP ``headers`` table. ``message_headers`` builds the header list of the MESSAGE
frame for a delivery (``rabbit_stomp_util:headers/5``): the frame's own headers,
then the AMQP header table, then the properties, in the plugin's order.

``message_headers`` runs once per delivered message, so it stays a flat loop:
no per-header function calls beyond one dict walk, the destination cached in
``gateway.destinations``.

Deliberate differences from RabbitMQ 3.10.8 are marked ``DIFFERENCE``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.broker.base import Delivery, NarrowInt, Properties
from gateway.destinations import destination_from_delivery, parse_integer
from gateway.errors import ProcessingError

__all__ = ["message_headers", "reply_to_header", "send_properties"]

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
    table = [(k, v) for k, v in headers.items() if k not in _PROPERTY_HEADERS]
    table.reverse()
    return Properties(
        content_type=get("content-type"),
        content_encoding=get("content-encoding"),
        headers=dict(table),
        delivery_mode=2 if persistent == "true" or persistent == "True" else None,
        priority=None if priority is None else _bounded(priority, 255),
        correlation_id=get("correlation-id"),
        reply_to=get("reply-to") if reply_to is None else reply_to,
        expiration=get("expiration"),
        message_id=get("amqp-message-id"),
        timestamp=None if timestamp is None else _bounded(timestamp, 2**64 - 1),
        type=get("type"),
        user_id=get("user-id"),
        app_id=get("app-id"),
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

    props = delivery.properties
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
    return out
