"""The per-message AMQP work, below aiormq: frames in, deliveries out, publishes and acks.

aiormq is built for generality: every inbound frame is read with three
``readexactly`` calls under a lock, decoded by pamqp's reflective unmarshaller,
queued to the connection's reader, queued again to the channel's reader, then a
delivery becomes a ``DeliveredMessage`` and a new Task per message; every publish
and every ack is its own write with futures around it. Profiles showed that path as
60 % of the gateway's CPU when delivering. This module keeps aiormq for everything
else (handshake, RPCs, closing, heart-beats) and takes over the per-message part:

* ``FastFrameReceiver`` replaces ``aiormq.connection.FrameReceiver`` (``install()``,
  once per process): it reads the socket in big chunks and cuts frames out of its
  buffer with ``struct``; Basic.Deliver, Basic.Ack/Nack and content frames are built
  without pamqp's reflection, content header properties are decoded only when asked
  (``LazyContentHeader``, in ``gateway.broker.properties`` with the properties codec).
  ``install()`` also gives aiormq lighter channels (``gateway.broker.lean``). Any frame it does not special-case, and any frame its fast
  decoder cannot read, goes through pamqp exactly as before, so errors are the same.
* ``ChannelPump`` sits in front of one aiormq channel's frame queue (``raw.frames``).
  Deliveries are assembled there and handed to the session synchronously, in the
  connection reader's own step (no Task, no ``DeliveredMessage``); publisher confirms
  resolve the publish futures there. Every other frame continues to aiormq's channel
  reader, in order. Once a pump has seen a frame come from a ``FastFrameReceiver``
  (it recognises the very frame object the receiver just returned), it registers with
  that receiver, which from then on hands it its deliveries and confirms directly,
  without going through aiormq's connection reader at all (whose per-frame cost was
  the largest left). Every other frame still takes aiormq's way, so the order of a
  channel's frames is kept; a synthetic heart-beat goes to aiormq's reader after each
  chunk read (and every ``_KEEPALIVE`` frames) so its "connection stuck" watch, fed
  by the frames it sees, knows the connection is alive. Publishes, acks and nacks are encoded here and written once per
  event-loop turn as one ``ChannelFrame`` (one socket write for a burst).
* Acks are coalesced: the pump knows every delivery tag the broker still considers
  unacknowledged, so the acks of one loop turn become one ``multiple`` ack up to the
  oldest tag still outstanding, plus single acks above it. The wire effect equals the
  acks the session asked for, one by one.
* Flow control: consumers the session starts with ``no_ack`` (STOMP ``ack:auto``)
  are consumed with manual acks; the pump acks each delivery as soon as the session
  has handed it to its transport, unless the transport is congested
  (``pause_deliveries``), in which case the acks wait. The consumer's prefetch (the
  delivery window, set by the adapter) then stops the broker.

Invariants: the pump's ``unsettled`` holds exactly the delivery tags the broker
still counts as unacknowledged on this channel (auto and client deliveries alike),
oldest first; a ``multiple`` ack/nack never covers a tag outside the set being
settled; output handed to ``ChannelPump`` reaches aiormq's write queue in call order,
and ``sync()`` puts it ahead of anything queued afterwards.
"""

from __future__ import annotations

import asyncio
import struct
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import aiormq.base
import aiormq.connection
from aiormq.abc import ChannelFrame
from aiormq.exceptions import AMQPConnectionError, InvalidFrameError
from pamqp import commands as spec
from pamqp import frame as pamqp_frame
from pamqp.body import ContentBody
from pamqp.exceptions import PAMQPException
from pamqp.header import ContentHeader
from pamqp.heartbeat import Heartbeat

from ..logging import get_logger
from .base import Delivery, Properties
from .lean import LeanChannel, LeanFutureStore
from .properties import LazyContentHeader, encode_properties, header_properties, short_str

log = get_logger("gateway.broker")

__all__ = [
    "AUTO",
    "CLIENT",
    "NO_ACK",
    "ChannelPump",
    "FastFrameReceiver",
    "install",
]

_HEAD = struct.Struct(">BHI")  # frame type, channel, payload size
_CLASS_METHOD = struct.Struct(">HH")
_LONGLONG = struct.Struct(">Q")
_HEADER = struct.Struct(">HHQH")  # class, weight, body size, first property flags
_ACK = struct.Struct(">BHIHHQBB")  # a whole Basic.Ack/Nack frame, frame-end included
_CONTENT_HEAD = struct.Struct(">BHIHHQ")  # header frame head: ..., class, weight, size
_FRAME_END = 0xCE
_FRAME_END_BYTE = b"\xce"
_READ_SIZE = 256 * 1024
_MAX_PUBLISH_CACHE = 1024
_KEEPALIVE = 512  # frames a receiver takes directly before aiormq's reader sees one

# The frame a FastFrameReceiver returned last (to aiormq's connection reader, which
# puts it into the channel's queue, a ChannelPump, in the same step) and the receiver.
_last_returned: tuple[Any, FastFrameReceiver | None] = (None, None)

_FRAME_METHOD, _FRAME_HEADER, _FRAME_BODY = 1, 2, 3
_CLOSE_FRAMES = (spec.Channel.Close, spec.Channel.CloseOk)
_BASIC = 60
_DELIVER, _ACK_METHOD, _NACK_METHOD = 60, 80, 120


# ---------------------------------------------------------------------------------- reading
def _new(cls: type[Any]) -> Any:
    return object.__new__(cls)


def _decode_method(buf: bytes, pos: int, end: int) -> Any:
    """Basic.Deliver / Basic.Ack / Basic.Nack without pamqp's reflection, else None."""
    class_id, method_id = _CLASS_METHOD.unpack_from(buf, pos)
    if class_id != _BASIC:
        return None
    p = pos + 4
    if method_id == _DELIVER:
        consumer_tag, p = short_str(buf, p)
        (delivery_tag,) = _LONGLONG.unpack_from(buf, p)
        redelivered = bool(buf[p + 8] & 1)
        exchange, p = short_str(buf, p + 9)
        routing_key, p = short_str(buf, p)
        if p != end:
            raise ValueError("Basic.Deliver size mismatch")
        frame = _new(spec.Basic.Deliver)
        frame.consumer_tag = consumer_tag
        frame.delivery_tag = delivery_tag
        frame.redelivered = redelivered
        frame.exchange = exchange
        frame.routing_key = routing_key
        return frame
    if method_id == _ACK_METHOD or method_id == _NACK_METHOD:
        if p + 9 != end:
            raise ValueError("Basic.Ack/Nack size mismatch")
        (delivery_tag,) = _LONGLONG.unpack_from(buf, p)
        bits = buf[p + 8]
        if method_id == _ACK_METHOD:
            frame = _new(spec.Basic.Ack)
        else:
            frame = _new(spec.Basic.Nack)
            frame.requeue = bool(bits & 2)
        frame.delivery_tag = delivery_tag
        frame.multiple = bool(bits & 1)
        return frame
    return None


class FastFrameReceiver(aiormq.connection.FrameReceiver):
    """aiormq's frame reader, reading in chunks and decoding the common frames itself.

    The handshake (until the first frame) takes aiormq's own path, which checks for
    a protocol-header answer; from then on frames are cut out of a local buffer.
    """

    def __init__(self, reader: asyncio.StreamReader) -> None:
        super().__init__(reader)
        self._buf = b""
        self._pos = 0
        self.pumps: dict[int, ChannelPump] = {}  # channel number -> its registered pump
        self._taken = 0  # frames handed to pumps since aiormq's reader saw one

    async def get_frame(self) -> Any:
        if not self.started:
            return await super().get_frame()
        return await self.__anext__()

    async def __anext__(self) -> Any:
        global _last_returned
        if not self.started:
            return await super().get_frame()
        pumps = self.pumps
        while True:
            buf, pos = self._buf, self._pos
            if len(buf) - pos >= 7:
                frame_type, channel, size = _HEAD.unpack_from(buf, pos)
                end = pos + 8 + size
                if end <= len(buf):
                    self._pos = end
                    frame = _decode(buf, pos, end, frame_type)
                    if pumps:
                        pump = pumps.get(channel)
                        if pump is not None and pump.take(frame):
                            self._taken += 1
                            if self._taken < _KEEPALIVE:
                                continue
                            frame, channel = Heartbeat(), 0  # "the connection is alive"
                    self._taken = 0
                    _last_returned = (frame, self)
                    return end - pos, channel, frame
            if self._taken:
                # Frames went to pumps since aiormq's reader last saw one: let it see
                # traffic before waiting for more (its heart-beat watch would think a
                # connection that only carries deliveries is stuck).
                self._taken = 0
                return 0, 0, Heartbeat()
            await self._fill()

    async def _fill(self) -> None:
        """Read more bytes (AMQPConnectionError mid-frame, StopAsyncIteration at EOF)."""
        try:
            data = await self.reader.read(_READ_SIZE)
        except ConnectionRefusedError as e:
            raise AMQPConnectionError(f"Server connection refused: {e!r}") from e
        except ConnectionResetError as e:
            raise AMQPConnectionError(f"Server connection reset: {e!r}") from e
        except ConnectionError as e:
            raise AMQPConnectionError(f"Server connection error: {e!r}") from e
        except OSError as e:
            raise AMQPConnectionError(f"Server communication error: {e!r}") from e
        rest = len(self._buf) - self._pos
        if not data:
            if rest == 0:
                raise StopAsyncIteration
            raise AMQPConnectionError(
                f"Server connection unexpectedly closed. Read {rest} bytes of an unfinished frame"
            )
        self._buf = self._buf[self._pos :] + data if rest else data
        self._pos = 0


def _decode(buf: bytes, pos: int, end: int, frame_type: int) -> Any:
    try:
        if buf[end - 1] == _FRAME_END:
            if frame_type == _FRAME_BODY:
                return ContentBody(buf[pos + 7 : end - 1])
            if frame_type == _FRAME_METHOD:
                frame = _decode_method(buf, pos + 7, end - 1)
                if frame is not None:
                    return frame
            elif frame_type == _FRAME_HEADER and end - pos >= 22:
                class_id, weight, body_size, _ = _HEADER.unpack_from(buf, pos + 7)
                return LazyContentHeader(buf[pos + 7 : end - 1], class_id, weight, body_size)
    except (ValueError, IndexError, struct.error):
        pass  # pamqp below raises the error aiormq always raised
    try:
        return pamqp_frame.unmarshal(buf[pos:end])[2]
    except PAMQPException as e:
        raise InvalidFrameError(str(e)) from e


def install() -> None:
    """Make every aiormq connection opened from now on use ``FastFrameReceiver``,
    ``LeanChannel`` and ``LeanFutureStore``."""
    aiormq.connection.FrameReceiver = FastFrameReceiver  # type: ignore[misc]
    aiormq.connection.Channel = LeanChannel  # type: ignore[attr-defined]
    aiormq.base.FutureStore = LeanFutureStore  # type: ignore[misc]


# ------------------------------------------------------------------------------------ pump
# How a consumer's deliveries are settled.
CLIENT = 0  # the session acks/nacks them (STOMP client, client-individual)
AUTO = 1  # manual acks the pump sends itself (STOMP ack:auto under a delivery window)
NO_ACK = 2  # the broker needs no ack (a no_ack consumer)

DeliveryCallback = Callable[[Delivery], object]  # returns False when nobody took it


class _Content:
    """A Basic.Deliver whose header/body frames are still arriving."""

    __slots__ = ("body", "deliver", "header", "remaining")

    def __init__(self, deliver: Any) -> None:
        self.deliver = deliver
        self.header: ContentHeader | None = None
        self.body: list[bytes] = []
        self.remaining = 0


class ChannelPump:
    """The per-message side of one aiormq channel (see the module docstring).

    ``to_amqp`` turns a port ``Properties`` into pamqp's (the slow path, for publishes
    the fast encoder refuses); ``encode_table`` encodes a header table as pamqp does.
    """

    def __init__(
        self,
        raw: Any,
        on_delivery: DeliveryCallback,
        *,
        to_amqp: Callable[[Properties], spec.Basic.Properties],
        encode_table: Callable[[Any], bytes],
        closed_error: Callable[[BaseException | None], BaseException],
        nacked_error: Callable[[], BaseException],
        watch_closing: bool = True,
    ) -> None:
        self.raw = raw
        self.number: int = raw.number
        self.loop = asyncio.get_running_loop()
        self.on_delivery = on_delivery
        self._to_amqp = to_amqp
        self._encode_table = encode_table
        self._closed_error = closed_error
        self._nacked_error = nacked_error
        self._queue: asyncio.Queue[Any] = raw.frames
        self._max_content: int = raw.max_content_size
        # inbound
        self._content: _Content | None = None
        self._forward_content = -1  # bytes of a Return/GetOk body still to pass on
        self.modes: dict[str, int] = {}  # consumer tag -> CLIENT | AUTO | NO_ACK
        self.unsettled: OrderedDict[int, bool] = OrderedDict()  # tag -> auto (held)
        self.paused = False
        # outbound
        self._out: list[bytes] = []
        self._acks: list[int] = []
        self._queued = False  # waiting for the connection's end-of-turn write
        self._muted = False  # being closed: output is dropped
        self._conn = ConnectionOut.of(raw.write_queue)
        self._publish_heads: dict[tuple[str, str], bytes] = {}
        self.confirms: OrderedDict[int, asyncio.Future[None]] = OrderedDict()
        self.on_confirm: Callable[[], None] | None = None  # after confirms resolved
        self._closed = False
        self._receiver: FastFrameReceiver | None = None
        self._ended = False  # the channel's last frame went by: never register again
        raw.frames = self  # aiormq's connection reader now puts frames here
        if watch_closing:  # else the owner calls _channel_closed (gateway.broker.amqp)
            raw.closing.add_done_callback(self._channel_closed)

    # -- the queue interface aiormq uses ---------------------------------------------------
    async def put(self, item: tuple[int, Any]) -> None:
        frame = item[1]
        if self._receiver is None and not self._ended:
            returned, receiver = _last_returned
            if returned is frame and receiver is not None:
                # This frame came straight from that receiver: from now on it hands
                # this channel's deliveries and confirms to the pump directly.
                self._receiver = receiver
                receiver.pumps[self.number] = self
                self._conn.receiver = receiver
        if not self.take(frame):
            if type(frame) in _CLOSE_FRAMES:
                self._unregister()  # the channel's last frame: its number may be reused
            await self._queue.put(item)

    def take(self, frame: Any) -> bool:
        """Handle a delivery or confirm frame now; False: aiormq's channel reader's."""
        content = self._content
        if content is not None:
            self._content_frame(content, frame)
            return True
        if self._forward_content >= 0:
            self._forward_frame(frame)
            return False
        kind = type(frame)
        if kind is spec.Basic.Deliver:
            self._content = _Content(frame)
            return True
        if (kind is spec.Basic.Ack or kind is spec.Basic.Nack) and not self.raw.confirmations:
            self._confirm(frame)
            return True
        if kind is spec.Basic.Return or kind is spec.Basic.GetOk:
            self._forward_content = 0
        return False

    def get(self) -> Any:
        return self._queue.get()

    def task_done(self) -> None:
        self._queue.task_done()

    def _forward_frame(self, frame: Any) -> None:
        """Content of a Return/GetOk: aiormq reads it; note when it ends."""
        if isinstance(frame, ContentHeader):
            self._forward_content = frame.body_size
        elif isinstance(frame, ContentBody):
            self._forward_content -= len(frame.value)
        if self._forward_content <= 0:
            self._forward_content = -1

    def _content_frame(self, content: _Content, frame: Any) -> None:
        if content.header is None:
            if not isinstance(frame, ContentHeader):
                self._content = None
                raise InvalidFrameError(f"Unexpected frame {frame!r} instead of ContentHeader")
            content.header = frame
            content.remaining = frame.body_size
            if content.remaining:
                return
        elif isinstance(frame, ContentBody):
            content.body.append(frame.value)
            content.remaining -= len(frame.value)
            if content.remaining > 0:
                return
        else:
            self._content = None
            raise InvalidFrameError(f"Unexpected frame {frame!r}")
        self._content = None
        body = content.body
        self._deliver(
            content.deliver,
            content.header,
            body[0] if len(body) == 1 else b"".join(body),
        )

    # -- deliveries ------------------------------------------------------------------------
    def _deliver(self, d: Any, header: ContentHeader, body: bytes) -> None:
        tag: int = d.delivery_tag
        consumer: str = d.consumer_tag or ""
        mode = self.modes.get(consumer, CLIENT)
        delivery = Delivery(
            consumer,
            tag,
            d.redelivered,
            d.exchange or "",
            d.routing_key or "",
            header_properties(header),
            body,
        )
        try:
            taken = self.on_delivery(delivery)
        except Exception:  # a bug: must not stop the connection's reader
            log.exception("delivery handler failed", consumer_tag=consumer)
            taken = False
        if self._closed or mode == NO_ACK:
            return
        if taken is False:
            # Nobody took it (unsubscribed meanwhile, session closing): back to the queue.
            self._out.append(_ACK.pack(1, self.number, 13, _BASIC, _NACK_METHOD, tag, 2, 0xCE))
            self._schedule()
        elif mode == CLIENT:
            self.unsettled[tag] = False
        elif self.paused:
            self.unsettled[tag] = True
        else:
            self._acks.append(tag)
            self._schedule()

    def set_mode(self, consumer_tag: str, mode: int) -> None:
        self.modes[consumer_tag] = mode

    def pause(self, paused: bool) -> None:
        """Stop (or resume) acknowledging ack:auto deliveries: the transport is congested."""
        if paused == self.paused:
            return
        self.paused = paused
        if not paused:
            held = [tag for tag, auto in self.unsettled.items() if auto]
            for tag in held:
                del self.unsettled[tag]
            if held:
                self._acks.extend(held)
                self._schedule()

    def ack(self, tag: int, multiple: bool) -> None:
        """The client acknowledged ``tag`` (and with ``multiple`` every older client tag)."""
        unsettled = self.unsettled
        if multiple:
            older = [t for t in _upto(unsettled, tag) if not unsettled[t]]
            for t in older:
                del unsettled[t]
            self._acks.extend(older)
        else:
            unsettled.pop(tag, None)
            self._acks.append(tag)
        self._schedule()

    def nack(self, tag: int, multiple: bool, requeue: bool) -> None:
        self._emit_acks()  # acks asked for earlier go first, computed with this tag unsettled
        unsettled = self.unsettled
        bits = 2 if requeue else 0
        if multiple:
            older = [t for t in _upto(unsettled, tag) if not unsettled[t]]
            for t in older:
                del unsettled[t]
            first = next(iter(unsettled), None)
            if first is None or first > tag:
                self._out.append(
                    _ACK.pack(1, self.number, 13, _BASIC, _NACK_METHOD, tag, bits | 1, 0xCE)
                )
            else:
                for t in older:
                    self._out.append(
                        _ACK.pack(1, self.number, 13, _BASIC, _NACK_METHOD, t, bits, 0xCE)
                    )
        else:
            unsettled.pop(tag, None)
            self._out.append(_ACK.pack(1, self.number, 13, _BASIC, _NACK_METHOD, tag, bits, 0xCE))
        self._schedule()

    def _emit_acks(self) -> None:
        """Encode the acks of this turn: one multiple ack for the prefix, singles after."""
        acks = self._acks
        if not acks:
            return
        self._acks = []
        acks.sort()
        first = next(iter(self.unsettled), None)
        out, number = self._out, self.number
        i = 0
        if first is None:
            i = len(acks)
        else:
            while i < len(acks) and acks[i] < first:
                i += 1
        if i == 1:
            out.append(_ACK.pack(1, number, 13, _BASIC, _ACK_METHOD, acks[0], 0, 0xCE))
        elif i > 1:
            out.append(_ACK.pack(1, number, 13, _BASIC, _ACK_METHOD, acks[i - 1], 1, 0xCE))
        for tag in acks[i:]:
            out.append(_ACK.pack(1, number, 13, _BASIC, _ACK_METHOD, tag, 0, 0xCE))

    # -- publishes and confirms ------------------------------------------------------------
    def publish(
        self, exchange: str, routing_key: str, body: bytes, properties: Properties
    ) -> asyncio.Future[None]:
        data = self._encode_publish(exchange, routing_key, body, properties)
        raw = self.raw
        raw.delivery_tag += 1
        result: asyncio.Future[None] = self.loop.create_future()
        self.confirms[raw.delivery_tag] = result
        self._out.append(data)
        self._schedule()
        return result

    def _encode_publish(
        self, exchange: str, routing_key: str, body: bytes, properties: Properties
    ) -> bytes:
        number = self.number
        key = (exchange, routing_key)
        head = self._publish_heads.get(key)
        if head is None:
            # pamqp validates the names (and raises) exactly as before.
            head = pamqp_frame.marshal(
                spec.Basic.Publish(exchange=exchange, routing_key=routing_key), number
            )
            if len(self._publish_heads) >= _MAX_PUBLISH_CACHE:
                self._publish_heads.clear()
            self._publish_heads[key] = head
        size = len(body)
        try:
            props = encode_properties(properties, self._encode_table)
        except Exception:  # pamqp's marshaller decides (and raises its own error)
            props = self._to_amqp(properties).marshal()
        parts: list[bytes | memoryview] = [
            head,
            _CONTENT_HEAD.pack(_FRAME_HEADER, number, 12 + len(props), _BASIC, 0, size),
            props,
            _FRAME_END_BYTE,
        ]
        if size:
            step = self._max_content
            if size < step:
                parts += (_HEAD.pack(_FRAME_BODY, number, size), body, _FRAME_END_BYTE)
            else:
                view = memoryview(body)
                for start in range(0, size, step):
                    chunk = view[start : start + step]
                    parts += (_HEAD.pack(_FRAME_BODY, number, len(chunk)), chunk, _FRAME_END_BYTE)
        return b"".join(parts)

    def _confirm(self, frame: Any) -> None:
        confirms = self.confirms
        tag: int = frame.delivery_tag
        nacked = type(frame) is spec.Basic.Nack
        if frame.multiple:
            done = list(_upto(confirms, tag))
        elif tag in confirms:
            done = [tag]
        else:
            return
        for t in done:
            future = confirms.pop(t)
            if not future.done():
                if nacked:
                    future.set_exception(self._nacked_error())
                else:
                    future.set_result(None)
        if done and self.on_confirm is not None:
            self.on_confirm()

    def _unregister(self) -> None:
        self._ended = True
        receiver, self._receiver = self._receiver, None
        if receiver is not None and receiver.pumps.get(self.number) is self:
            del receiver.pumps[self.number]

    def _channel_closed(self, closing: asyncio.Future[Any]) -> None:
        self._closed = True
        self._unregister()
        exc = None if closing.cancelled() else closing.exception()
        confirms, self.confirms = self.confirms, OrderedDict()
        for future in confirms.values():
            if not future.done():
                future.set_exception(self._closed_error(exc))

    # -- writing ---------------------------------------------------------------------------
    def _schedule(self) -> None:
        if not self._queued:
            self._queued = True
            self._conn.want(self)

    def _collect(self, chunks: list[bytes]) -> None:
        """This turn's output, for the connection's one write (see ``ConnectionOut``)."""
        self._queued = False
        self._emit_acks()
        if self._out:
            if not self._closed and not self._muted:
                chunks.extend(self._out)
            self._out = []

    async def sync(self, *, final: bool = False) -> None:
        """Hand everything buffered to aiormq's writer now (ahead of what is queued
        after). ``final``: the channel is being closed: nothing more goes out."""
        if not self._queued:
            self._conn.want(self)
            self._queued = True
        await self._conn.sync()
        if final:
            self._muted = True


class ConnectionOut:
    """One write per event-loop turn for all the channels (pumps) of a connection.

    Pumps with output register with ``want``; at the end of the turn their frames are
    joined, each channel's in its own order, and written at once: straight to the
    socket when aiormq's write queue is empty (its writer has written everything
    queued before: it takes a frame and writes it in one step), else through that
    queue. A session per channel and many sessions per connection (a fan-out) then
    cost one ``send`` per turn, not one per session.
    """

    __slots__ = ("_backlog", "_pending", "_scheduled", "_slow", "loop", "receiver", "write_queue")

    def __init__(self, write_queue: asyncio.Queue[Any]) -> None:
        self.loop = asyncio.get_running_loop()
        self.write_queue = write_queue
        self.receiver: FastFrameReceiver | None = None  # the connection's frame reader
        self._pending: list[ChannelPump] = []
        self._scheduled = False
        self._slow: asyncio.Task[None] | None = None  # waiting for room in the queue
        self._backlog: list[bytes] = []

    @classmethod
    def of(cls, write_queue: asyncio.Queue[Any]) -> ConnectionOut:
        out = _CONNECTION_OUT.get(write_queue)
        if out is None:
            out = _CONNECTION_OUT[write_queue] = cls(write_queue)
        return out

    def want(self, pump: ChannelPump) -> None:
        self._pending.append(pump)
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        pumps, self._pending = self._pending, []
        chunks: list[bytes] = []
        for pump in pumps:
            pump._collect(chunks)
        if not chunks:
            return
        payload = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if self._slow is not None:
            self._backlog.append(payload)
            return
        if self.receiver is not None and self.write_queue.empty():
            transport = getattr(getattr(self.receiver, "reader", None), "_transport", None)
            if transport is not None and not transport.is_closing():
                transport.write(payload)
                return
        frame = ChannelFrame(payload=payload, should_close=False)
        try:
            self.write_queue.put_nowait(frame)
        except asyncio.QueueFull:
            self._slow = self.loop.create_task(self._put_slowly(frame))

    async def _put_slowly(self, frame: ChannelFrame) -> None:
        try:
            await self.write_queue.put(frame)
            while self._backlog:
                backlog, self._backlog = self._backlog, []
                payload = b"".join(backlog)
                await self.write_queue.put(ChannelFrame(payload=payload, should_close=False))
        finally:
            self._slow = None

    async def sync(self) -> None:
        self.flush()
        while self._slow is not None:
            await asyncio.shield(self._slow)


_CONNECTION_OUT: weakref.WeakKeyDictionary[asyncio.Queue[Any], ConnectionOut] = (
    weakref.WeakKeyDictionary()
)


def _upto(tags: OrderedDict[int, Any], limit: int) -> list[int]:
    """The keys of ``tags`` (ascending) up to and including ``limit``."""
    found = []
    for tag in tags:
        if tag > limit:
            break
        found.append(tag)
    return found
