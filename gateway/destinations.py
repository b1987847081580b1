"""STOMP destinations: parsing, and the AMQP work each one needs.

How it works. ``parse_destination`` turns a ``destination`` header into a
``Destination`` (kind, name, key), the way RabbitMQ's ``parse_endpoint/1`` does
(``rabbit_routing_util.erl`` in 3.x, ``rabbit_stomp_routing_util.erl`` in 4.x).
``send_plan`` and ``subscribe_plan`` then say what to declare, bind and publish
to or consume from, as plain data; the session runs it through the broker port.
``destination_from_delivery`` goes the other way for MESSAGE frames
(``rabbit_stomp_util:format_destination/2``). Everything here is pure: no I/O,
no asyncio, and the module can be unit-tested table by table.

Invariants reproduced from RabbitMQ 3.10.8 (sources: ``rabbit_routing_util.erl``,
``rabbit_stomp_util.erl``, ``rabbit_stomp_processor.erl``, ``rabbit_stomp_frame.erl``):

* The frame parser hands header values over as lists of *bytes*, so every Erlang
  term built from a header (the subscription-queue hash input) holds the UTF-8
  bytes of the value, never Unicode code points.
* Errors carry the plugin's exact ``message`` header and body text.
* Queue-shaping headers are read on SEND and SUBSCRIBE; booleans are only checked
  where a queue is declared, integer ``x-*`` arguments on every SEND/SUBSCRIBE.

Deliberate differences are marked ``DIFFERENCE`` in comments.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from gateway.broker.base import Long, QueueSpec
from gateway.errors import DestinationError, ProcessingError, ProtocolError

if TYPE_CHECKING:
    from gateway.stomp import Frame

__all__ = [
    "DEFAULT_TOPIC_EXCHANGE",
    "TEMP_QUEUE_ID_PREFIX",
    "Destination",
    "DestinationKind",
    "SendPlan",
    "SubscribePlan",
    "check_durable_id",
    "check_not_temp",
    "consumer_arguments",
    "consumer_tag",
    "destination_from_delivery",
    "is_durable_subscription",
    "parse_boolean",
    "parse_destination",
    "parse_integer",
    "queue_arguments",
    "reject_temp_queue",
    "send_plan",
    "subscribe_plan",
    "subscription_description",
    "subscription_queue_name",
    "temp_queue_id",
    "unsubscribe_queue_to_delete",
]

DEFAULT_TOPIC_EXCHANGE = "amq.topic"
TEMP_QUEUE_ID_PREFIX = "/temp-queue/"


class DestinationKind(StrEnum):
    """Destination types; the values are the atoms RabbitMQ prints in its errors."""

    QUEUE = "queue"  # /queue/<name>, or a bare name without any '/'
    TOPIC = "topic"  # /topic/<key>
    EXCHANGE = "exchange"  # /exchange/<name>[/<pattern>]
    AMQ_QUEUE = "amqqueue"  # /amq/queue/<name>
    TEMP_QUEUE = "temp_queue"  # /temp-queue/<id> (only valid in reply-to)
    REPLY_QUEUE = "reply_queue"  # /reply-queue/<name, slashes allowed>


@dataclass(frozen=True, slots=True)
class Destination:
    """A parsed destination.

    ``name`` is the queue or exchange name ("" for /topic, which uses the default
    topic exchange), ``key`` the routing key or binding pattern ("" if none),
    ``text`` the header value as received.
    """

    kind: DestinationKind
    name: str
    key: str
    text: str


@dataclass(frozen=True, slots=True)
class SendPlan:
    """What a SEND does: optionally declare ``declare`` (nowait, once per session,
    as the plugin caches declared /queue names), then publish to
    (``exchange``, ``routing_key``)."""

    exchange: str
    routing_key: str
    declare: QueueSpec | None = None


@dataclass(frozen=True, slots=True)
class SubscribePlan:
    """What a SUBSCRIBE does, in the plugin's order: declare, consume, bind.

    * ``declare``: the queue.declare to run first, or None (/amq/queue, /reply-queue).
      ``declare_nowait`` is True for /queue (the plugin casts that declare); the
      subscription queue of /topic and /exchange is declared synchronously.
    * ``queue``: the queue to consume from. When ``declare.name`` is "" (an empty
      ``x-queue-name``), consume from the name the broker returned instead.
    * ``bind``: (exchange, routing key) to bind the queue to after basic.consume.
    * ``delete_on_failure``: the plugin deletes the subscription queue when the
      consume or the bind fails (/topic and /exchange only).
    * ``durable``: a durable subscription (durable/persistent true, see
      ``is_durable_subscription``), whatever the destination kind.
    """

    queue: str
    declare: QueueSpec | None
    declare_nowait: bool
    bind: tuple[str, str] | None
    delete_on_failure: bool
    durable: bool = False


# --------------------------------------------------------------------------
# Parsing (rabbit_routing_util:parse_endpoint/1, 3.10.8)

_VALID_TYPES = "/temp-queue, /exchange, /topic, /queue, /amq/queue, /reply-queue/"
_SIMPLE_PREFIXES = {
    "queue": DestinationKind.QUEUE,
    "topic": DestinationKind.TOPIC,
    "exchange": DestinationKind.EXCHANGE,
    "temp-queue": DestinationKind.TEMP_QUEUE,
}
_REPLY_QUEUE_PREFIX = "/reply-queue/"


def _unescape(segment: str) -> str:
    # Only the exact sequence "%2F" is unescaped (not "%2f", nothing else).
    return segment.replace("%2F", "/") if "%2F" in segment else segment


def _to_url(rest: list[str]) -> str:
    # rabbit_routing_util:to_url/1: [] -> "", else "/" ++ join(Rest, "/").
    return "/" + "/".join(rest) if rest else ""


def _invalid(kind: DestinationKind, content: str) -> DestinationError:
    # rabbit_stomp_processor:with_destination: "'~s' is not a valid ~p destination~n"
    return DestinationError(
        "Invalid destination", f"'{content}' is not a valid {kind.value} destination\n"
    )


def _unknown(text: str) -> DestinationError:
    return DestinationError(
        "Unknown destination",
        f"'{text}' is not a valid destination.\nValid destination types are: {_VALID_TYPES}.\n",
    )


_PARSED: dict[str, Destination] = {}  # parse_destination's results, by header text
_PARSED_MAX = 4096


def parse_destination(text: str) -> Destination:
    """Parse a destination header; raises ``DestinationError`` as the plugin does.

    Destinations are immutable and a client sends to the same few again and again:
    successful parses are remembered (up to ``_PARSED_MAX`` texts, then forgotten).
    """
    dest = _PARSED.get(text)
    if dest is None:
        dest = _parse_destination(text)
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[text] = dest
    return dest


def _parse_destination(text: str) -> Destination:
    parts = text.split("/")
    if len(parts) == 1:
        # No slash at all: a queue name ("foo" is /queue/foo). "" parses too; the
        # plans reject it as blank, a reply-to of "" passes through.
        return Destination(DestinationKind.QUEUE, _unescape(text), "", text)
    if parts[0] == "":
        kind = _SIMPLE_PREFIXES.get(parts[1])
        if kind is not None:
            return _parse_rest(kind, parts[2:], text)
        if parts[1] == "amq" and len(parts) > 2 and parts[2] == "queue":
            return _parse_rest(DestinationKind.AMQ_QUEUE, parts[3:], text)
        if parts[1] == "reply-queue" and len(parts) > 2:
            # Everything after the prefix is the name, slashes included.
            return _parse_rest(
                DestinationKind.REPLY_QUEUE, [text[len(_REPLY_QUEUE_PREFIX) :]], text
            )
    raise _unknown(text)


def _parse_rest(kind: DestinationKind, rest: list[str], text: str) -> Destination:
    # rabbit_routing_util:parse_endpoint0/3
    if kind is DestinationKind.EXCHANGE:
        # The default exchange can't be named this way: "/exchange//k" is invalid.
        if rest and rest[0] and len(rest) <= 2:
            key = _unescape(rest[1]) if len(rest) == 2 else ""
            return Destination(kind, _unescape(rest[0]), key, text)
        raise _invalid(kind, _to_url(rest))
    if len(rest) == 1 and rest[0]:
        name = _unescape(rest[0])
        if kind is DestinationKind.TOPIC:
            return Destination(kind, "", name, text)
        return Destination(kind, name, "", text)
    raise _invalid(kind, _to_url(rest))


def check_not_temp(dest: Destination, command: str) -> None:
    """/temp-queue/ is only valid in reply-to (rabbit_stomp_processor: invalid_endpoint)."""
    if dest.kind is DestinationKind.TEMP_QUEUE:
        raise DestinationError(
            "Invalid destination", f"'{dest.text}' is not a valid destination for '{command}'\n"
        )


reject_temp_queue = check_not_temp  # the name gateway.session uses


def _check_not_blank(dest: Destination) -> None:
    # rabbit_stomp_processor:ensure_endpoint(_, {queue, []}, ...): checked before
    # anything else on SEND and SUBSCRIBE (an empty destination header).
    if dest.kind is DestinationKind.QUEUE and not dest.name:
        raise DestinationError("Invalid destination", "Destination cannot be blank")


def temp_queue_id(reply_to: str) -> str | None:
    """The temp-queue id in a SEND ``reply-to`` ("/temp-queue/<id>"), else None.

    The plugin parses every reply-to as a destination and crashes when it does not
    parse (``{ok, D} = parse_endpoint(ReplyTo)``), so "/foo/bar" or "/queue/" as a
    reply-to gives "Processing error"; anything that parses passes through unchanged.
    """
    try:
        dest = parse_destination(reply_to)
    except DestinationError:
        raise ProcessingError() from None
    return dest.name if dest.kind is DestinationKind.TEMP_QUEUE else None


# --------------------------------------------------------------------------
# MESSAGE destination (rabbit_stomp_util:format_destination/2 + escape/1)

# Per byte: '/' -> %2F, '%' -> %25, < 32 or > 127 -> %XX (uppercase hex). 127 stays.
_ESCAPE_TABLE: tuple[str, ...] = tuple(
    f"%{b:02X}" if b < 32 or b > 127 or b in (0x25, 0x2F) else chr(b) for b in range(256)
)
_NEEDS_ESCAPE = re.compile(r"[^\x20-\x24\x26-\x2e\x30-\x7f]")


def _escape(name: str) -> str:
    if _NEEDS_ESCAPE.search(name) is None:
        return name
    table = _ESCAPE_TABLE
    return "".join([table[b] for b in name.encode("utf-8", "surrogateescape")])


@lru_cache(maxsize=4096)
def destination_from_delivery(exchange: str, routing_key: str) -> str:
    """The MESSAGE ``destination`` header for a delivery.

    Derived from the exchange and routing key the message was *published* with, not
    from the subscription. ``amq.topic`` is literal, even when another default
    topic exchange is configured.
    """
    if exchange == "":
        return "/queue/" + _escape(routing_key)
    if exchange == "amq.topic":
        return "/topic/" + _escape(routing_key)
    if routing_key == "":
        return "/exchange/" + _escape(exchange)
    return "/exchange/" + _escape(exchange) + "/" + _escape(routing_key)


# --------------------------------------------------------------------------
# Header values: Erlang list_to_integer/1 and rabbit_stomp_frame:boolean_header

_INTEGER = re.compile(r"[+-]?[0-9]+")
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1


def parse_integer(value: str, *, strip: bool = True) -> int:
    """An Erlang integer: optional sign and ASCII digits, else "Processing error".

    ``strip`` trims spaces (only spaces) at both ends, as ``string:strip/1`` does.
    """
    text = value.strip(" ") if strip else value
    if _INTEGER.fullmatch(text) is None:
        raise ProcessingError()
    try:
        return int(text)
    except ValueError:  # more digits than Python converts
        raise ProcessingError() from None


def _parse_long(value: str, *, strip: bool = True) -> int:
    # DIFFERENCE: Erlang would silently truncate a long outside 64 bits on the
    # wire; we refuse it.
    number = parse_integer(value, strip=strip)
    if not _LONG_MIN <= number <= _LONG_MAX:
        raise ProcessingError()
    return number


_BOOLEANS = {"true": True, "True": True, "false": False, "False": False}


def parse_boolean(value: str) -> bool:
    """true|True|false|False (``string_to_boolean/1``); anything else "Processing error"."""
    result = _BOOLEANS.get(value)
    if result is None:
        raise ProcessingError()
    return result


def _is_true(value: str | None) -> bool:
    # rabbit_stomp_frame:boolean_header(F, K, false): other values count as false.
    return value == "true" or value == "True"


# --------------------------------------------------------------------------
# Queue parameters and arguments (rabbit_stomp_util:build_params/2,
# build_arguments/1; rabbit_routing_util:queue_declare_method/3)

_STRING_ARGUMENTS = ("x-dead-letter-exchange", "x-dead-letter-routing-key", "x-queue-type")
_LONG_ARGUMENTS = (
    "x-expires",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-message-ttl",
    # 4.x additions
    "x-stream-max-segment-size-bytes",
    "x-stream-filter-size-bytes",
)
_ARGUMENT_NAMES = frozenset((*_STRING_ARGUMENTS, "x-max-age", *_LONG_ARGUMENTS))


def queue_arguments(headers: Mapping[str, str]) -> dict[str, Any]:
    """queue.declare arguments from SEND/SUBSCRIBE headers; others are ignored.

    Values are trimmed of spaces. A non-integer value for an integer argument is
    "Processing error" (the plugin builds these on every SEND and SUBSCRIBE, even
    where nothing is declared).
    """
    if _ARGUMENT_NAMES.isdisjoint(headers):  # the usual case: no set built
        return {}
    present = headers.keys() & _ARGUMENT_NAMES
    arguments: dict[str, Any] = {}
    for name in present:
        value = headers[name]
        if name in _LONG_ARGUMENTS:
            arguments[name] = Long(_parse_long(value))
        else:  # longstr: x-dead-letter-*, x-queue-type, x-max-age (4.x)
            arguments[name] = value.strip(" ")
    return arguments


def _durable_param(headers: Mapping[str, str]) -> str | None:
    # `persistent` is an alias of `durable`. With both present the plugin's
    # proplists lookup returns the one that came first in the frame.
    durable = headers.get("durable")
    persistent = headers.get("persistent")
    if durable is None or persistent is None:
        return persistent if durable is None else durable
    for name in headers:
        if name == "durable":
            return durable
        if name == "persistent":
            return persistent
    return durable  # pragma: no cover - both keys are in headers


def _queue_spec(
    kind: DestinationKind, name: str, headers: Mapping[str, str], arguments: dict[str, Any]
) -> QueueSpec:
    raw_durable = _durable_param(headers)
    # /queue defaults to durable (pmerge(durable, true)); subscription queues do not.
    if raw_durable is None:
        durable = kind is DestinationKind.QUEUE
    else:
        durable = parse_boolean(raw_durable)
    # Base from `durable`: a durable queue, or an exclusive auto-delete one.
    exclusive = auto_delete = not durable
    if kind is not DestinationKind.QUEUE:
        # /topic and /exchange defaults: auto_delete=true.
        # DIFFERENCE: 3.10.8 also defaults exclusive=false there, so a non-durable
        # subscription queue is transient and non-exclusive, which RabbitMQ 4.3+
        # refuses (deprecated feature transient_nonexcl_queues). Like 4.3 (topic)
        # and 3.12+ (exchange) we keep the base: non-durable means exclusive.
        auto_delete = True
    raw = headers.get("exclusive")
    if raw is not None:
        # DIFFERENCE: 3.10.8 silently ignores a malformed exclusive/auto-delete
        # value; we answer "Processing error" as for durable.
        exclusive = parse_boolean(raw)
    raw = headers.get("auto-delete")
    if raw is not None:
        auto_delete = parse_boolean(raw)
    if arguments.get("x-queue-type") in ("quorum", "stream"):
        # DIFFERENCE (4.x behaviour, rabbit_stomp_routing_util:queue_declare_method):
        # quorum queues and streams are always durable and non-exclusive. 3.10.8
        # declares what the headers say and the broker closes the channel.
        durable, exclusive = True, False
    return QueueSpec(
        name, durable=durable, exclusive=exclusive, auto_delete=auto_delete, arguments=arguments
    )


# --------------------------------------------------------------------------
# Routing (rabbit_routing_util:parse_routing/1 + maybe_apply_default_topic_exchange)


def _routing(dest: Destination, default_topic_exchange: str) -> tuple[str, str]:
    kind = dest.kind
    if kind is DestinationKind.TOPIC:
        exchange = "amq.topic"
    elif kind is DestinationKind.EXCHANGE:
        exchange = dest.name
    else:  # queue, amqqueue, reply_queue: the default exchange, keyed by name
        return "", dest.name
    if exchange == "amq.topic":
        # The plugin substitutes the configured default topic exchange for
        # "amq.topic" after parse_routing, so /exchange/amq.topic/k is affected too.
        exchange = default_topic_exchange
    return exchange, dest.key


def send_plan(
    dest: Destination,
    headers: Mapping[str, str],
    default_topic_exchange: str = DEFAULT_TOPIC_EXCHANGE,
) -> SendPlan:
    """Plan a SEND (``do_send`` + ``ensure_endpoint(dest, ...)``).

    Raises in the plugin's order: blank destination, bad integer argument,
    /temp-queue destination, bad boolean (only /queue declares).
    """
    _check_not_blank(dest)
    arguments = queue_arguments(headers)
    check_not_temp(dest, "SEND")
    exchange, routing_key = _routing(dest, default_topic_exchange)
    declare = None
    if dest.kind is DestinationKind.QUEUE:
        declare = _queue_spec(DestinationKind.QUEUE, dest.name, headers, arguments)
    return SendPlan(exchange, routing_key, declare)


# --------------------------------------------------------------------------
# Subscriptions


def is_durable_subscription(headers: Mapping[str, str]) -> bool:
    """durable:true or persistent:true (``has_durable_header/1``; "True" counts)."""
    return _is_true(headers.get("durable")) or _is_true(headers.get("persistent"))


def check_durable_id(headers: Mapping[str, str]) -> None:
    """A durable SUBSCRIBE/UNSUBSCRIBE needs an ``id`` (``validate_frame/3``).

    The plugin runs this before parsing the destination. DIFFERENCE: 3.10.8 only
    recognises the exact value "true" here and crashes with "Processing error" on
    "True" without id; we give "Missing Header" for both.
    """
    if "id" not in headers and is_durable_subscription(headers):
        raise ProtocolError("Missing Header", "Header 'id' is required for durable subscriptions")


def _erlang_string(data: bytes) -> bytes:
    # External term format of an Erlang string (a list of bytes):
    # [] -> NIL_EXT; up to 65534 elements -> STRING_EXT; longer -> LIST_EXT of
    # SMALL_INTEGER_EXT elements with a NIL_EXT tail (erts external.c,
    # is_external_string: len < MAX_STRING_LEN = 0xffff).
    length = len(data)
    if length == 0:
        return b"j"  # 106 NIL_EXT
    if length < 0xFFFF:
        return b"k" + length.to_bytes(2, "big") + data  # 107 STRING_EXT
    elements = bytearray(2 * length)
    elements[0::2] = b"a" * length  # 97 SMALL_INTEGER_EXT
    elements[1::2] = data
    return b"l" + length.to_bytes(4, "big") + bytes(elements) + b"j"  # 108 LIST_EXT


def subscription_queue_name(key: str, sub_id: str | None, random_id: bytes) -> str:
    """The plugin's name for a /topic or /exchange subscription queue.

    ``"stomp-subscription-" ++ base64url_nopad(md5(term_to_binary({Key, Id})))``
    (``rabbit_stomp_util:subscription_queue_name/3`` with ``rabbit_guid:string/2``).
    ``key`` is the routing key / pattern (the exchange is not part of it). In 3.x
    and 4.3, Key and a durable Id are Erlang strings holding the UTF-8 *bytes* of
    the header (the frame parser builds byte lists), so names match the plugin's
    for any text. A non-durable subscription (``sub_id`` None) uses
    ``random_id``, which the plugin draws with ``rabbit_guid:gen_secure()``: a
    16-byte binary, encoded as BINARY_EXT. (RabbitMQ main hashes binaries
    instead, so its durable names differ from these.)
    """
    if sub_id is None:
        second = b"m" + len(random_id).to_bytes(4, "big") + random_id  # 109 BINARY_EXT
    else:
        second = _erlang_string(sub_id.encode("utf-8", "surrogateescape"))
    term = b"\x83h\x02" + _erlang_string(key.encode("utf-8", "surrogateescape")) + second
    digest = base64.urlsafe_b64encode(hashlib.md5(term).digest()).rstrip(b"=")
    return "stomp-subscription-" + digest.decode("ascii")


def subscribe_plan(
    dest: Destination,
    headers: Mapping[str, str],
    *,
    subscription_id: str | None,
    default_topic_exchange: str = DEFAULT_TOPIC_EXCHANGE,
    random_id: bytes | None = None,
) -> SubscribePlan:
    """Plan a SUBSCRIBE (``do_subscribe`` + ``ensure_endpoint(source, ...)``).

    ``subscription_id`` is the ``id`` header (None without one); ``random_id``
    (16 random bytes when None) names non-durable subscription queues. Raises in
    the plugin's order: missing id on a durable subscription, blank destination,
    bad integer argument, /temp-queue destination, bad boolean.
    """
    check_durable_id(headers)
    _check_not_blank(dest)
    arguments = queue_arguments(headers)
    check_not_temp(dest, "SUBSCRIBE")
    durable = is_durable_subscription(headers)
    kind = dest.kind
    if kind is DestinationKind.QUEUE:
        spec = _queue_spec(kind, dest.name, headers, arguments)
        return SubscribePlan(dest.name, spec, True, None, False, durable)
    if kind is DestinationKind.AMQ_QUEUE or kind is DestinationKind.REPLY_QUEUE:
        return SubscribePlan(dest.name, None, False, None, False, durable)
    # /topic and /exchange: a subscription queue bound to the exchange.
    spec = _queue_spec(kind, "", headers, arguments)  # durable checked first, as in Erlang
    name = headers.get("x-queue-name")
    if name is None:
        sub_id = subscription_id if durable else None
        if random_id is None and sub_id is None:
            random_id = os.urandom(16)
        name = subscription_queue_name(dest.key, sub_id, random_id or b"")
    spec = QueueSpec(
        name,
        durable=spec.durable,
        exclusive=spec.exclusive,
        auto_delete=spec.auto_delete,
        arguments=spec.arguments,
    )
    return SubscribePlan(name, spec, False, _routing(dest, default_topic_exchange), True, durable)


def unsubscribe_queue_to_delete(subscribed: Destination, headers: Mapping[str, str]) -> str | None:
    """The queue an UNSUBSCRIBE deletes, else None (``maybe_delete_durable_sub``).

    Only for a /topic subscription when the UNSUBSCRIBE frame carries durable:true
    or persistent:true; the name is recomputed from *this* frame's ``id`` and
    ``x-queue-name`` (3.10.8/4.3 behaviour). Call ``check_durable_id`` first.
    """
    if subscribed.kind is not DestinationKind.TOPIC or not is_durable_subscription(headers):
        return None
    name = headers.get("x-queue-name")
    if name is not None:
        return name
    return subscription_queue_name(subscribed.key, headers.get("id", ""), b"")


def consumer_tag(headers: Mapping[str, str]) -> str | None:
    """``T_<id>`` with an ``id`` header, else ``Q_<destination>``; None with neither.

    The session rejects an ``id`` starting with ``TEMP_QUEUE_ID_PREFIX`` (SUBSCRIBE:
    "Processing error", UNSUBSCRIBE: "Invalid id").
    """
    sub_id = headers.get("id")
    if sub_id is not None:
        return "T_" + sub_id
    destination = headers.get("destination")
    return None if destination is None else "Q_" + destination


def subscription_description(headers: Mapping[str, str]) -> str | None:
    """``id='<id>'`` or ``destination='<d>'``, as used in the plugin's error texts."""
    sub_id = headers.get("id")
    if sub_id is not None:
        return f"id='{sub_id}'"
    destination = headers.get("destination")
    return None if destination is None else f"destination='{destination}'"


# --------------------------------------------------------------------------
# Consumer arguments (rabbit_stomp_frame:stream_offset_header/1 and friends)

_STREAM_OFFSET_NAMES = frozenset(("first", "last", "next"))
_CONSUMER_ARGUMENT_NAMES = frozenset(
    ("x-stream-offset", "x-stream-filter", "x-stream-match-unfiltered", "x-priority")
)


def consumer_arguments(headers: Mapping[str, str]) -> dict[str, Any]:
    """basic.consume arguments from SUBSCRIBE headers, as aio-pika/pamqp values.

    * ``x-stream-offset``: first|last|next (longstr), ``offset=<n>`` (integer),
      ``timestamp=<unix seconds>`` (a UTC datetime, which pamqp sends as an AMQP
      timestamp, as the plugin does); other values are ignored. A non-integer
      after ``offset=``/``timestamp=`` is "Processing error" (``binary_to_integer``).
    * ``x-stream-filter`` (4.x): comma-separated list, sent as an array of strings.
    * ``x-stream-match-unfiltered`` (4.x): true|false|True|False, else ignored.
    * ``x-priority`` (4.x consumer priority): integer, else "Processing error".
    """
    if headers.keys().isdisjoint(_CONSUMER_ARGUMENT_NAMES):
        return {}
    arguments: dict[str, Any] = {}
    offset = headers.get("x-stream-offset")
    if offset is not None:
        if offset in _STREAM_OFFSET_NAMES:
            arguments["x-stream-offset"] = offset
        elif offset.startswith("offset="):
            arguments["x-stream-offset"] = _parse_long(offset[7:], strip=False)
        elif offset.startswith("timestamp="):
            arguments["x-stream-offset"] = _timestamp(offset[10:])
    stream_filter = headers.get("x-stream-filter")
    if stream_filter is not None:
        arguments["x-stream-filter"] = stream_filter.split(",")
    unfiltered = _BOOLEANS.get(headers.get("x-stream-match-unfiltered", ""))
    if unfiltered is not None:
        arguments["x-stream-match-unfiltered"] = unfiltered
    priority = headers.get("x-priority")
    if priority is not None:
        arguments["x-priority"] = _parse_long(priority)
    return arguments


def _timestamp(value: str) -> datetime:
    seconds = parse_integer(value, strip=False)
    if seconds < 0:  # an AMQP timestamp is unsigned
        raise ProcessingError()
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise ProcessingError() from None


def require_destination(frame: Frame) -> str:
    """The frame's ``destination`` header, or ProtocolError "Missing destination"."""
    dest = frame.headers.get("destination")
    if dest is None:
        raise ProtocolError(
            "Missing destination",
            f"\"{frame.command}\" must include a 'destination' header\n",
        )
    return dest
