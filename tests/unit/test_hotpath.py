"""gateway.broker.hotpath: the per-message AMQP path must equal aiormq/pamqp's.

* frames cut out of a byte stream, however it is chunked, equal pamqp's decoding;
* content header properties decode as pamqp + the adapter's conversion would, and
  encode to pamqp's exact bytes;
* ``MessageEncoder`` writes what ``encode_frame(message_headers(...))`` writes;
* ``ChannelPump``: deliveries assembled from frames, acks coalesced into ``multiple``
  acks only when every older tag is being settled, nacks never covering a delivery
  the client still holds, confirms resolving their publishes, and held ack:auto acks
  released when the transport drains.
"""

from __future__ import annotations

import asyncio
import struct
from datetime import UTC, datetime
from typing import Any

import pamqp.frame
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands as spec
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from gateway.broker import amqp
from gateway.broker.base import Delivery, Properties
from gateway.broker.hotpath import AUTO, CLIENT, ChannelPump, FastFrameReceiver
from gateway.broker.properties import (
    LazyContentHeader,
    decode_properties,
    encode_properties,
    header_properties,
)
from gateway.mapping import MessageEncoder, message_headers
from gateway.stomp import encode_frame

FAST = settings(max_examples=150, deadline=None)

short_text = st.text(max_size=20).filter(lambda s: len(s.encode()) <= 255)
table_values = st.one_of(
    st.text(max_size=10),
    st.integers(min_value=-(2**31), max_value=2**31 - 1),
    st.booleans(),
)
tables = st.dictionaries(st.text(min_size=1, max_size=8), table_values, max_size=4)


@st.composite
def pamqp_properties(draw: st.DrawFn) -> spec.Basic.Properties:
    def maybe(strategy: st.SearchStrategy[Any]) -> Any:
        return draw(st.one_of(st.none(), strategy))

    stamp = maybe(st.integers(min_value=0, max_value=2**40))
    return spec.Basic.Properties(
        content_type=maybe(short_text),
        content_encoding=maybe(short_text),
        headers=maybe(tables),
        delivery_mode=maybe(st.sampled_from([1, 2])),
        priority=maybe(st.integers(min_value=0, max_value=255)),
        correlation_id=maybe(short_text),
        reply_to=maybe(short_text),
        expiration=maybe(short_text),
        message_id=maybe(short_text),
        timestamp=None if stamp is None else _pamqp_time(stamp),
        message_type=maybe(short_text),
        user_id=maybe(short_text),
        app_id=maybe(short_text),
    )


def _pamqp_time(stamp: int) -> datetime:
    # What pamqp's decoder turns the wire value into (milliseconds above 2106).
    return datetime.fromtimestamp(stamp / 1000.0 if stamp > 0xFFFFFFFF else stamp, tz=UTC)


def _reference(props: spec.Basic.Properties) -> Properties:
    header = ContentHeader()
    header.unmarshal(ContentHeader(0, 3, props).marshal())
    return header_properties(header)  # a plain ContentHeader: pamqp's path


@FAST
@given(pamqp_properties())
def test_properties_decode_as_pamqp_does(props: spec.Basic.Properties) -> None:
    raw = ContentHeader(0, 3, props).marshal()
    assert decode_properties(raw) == _reference(props)
    lazy = LazyContentHeader(raw, 60, 0, 3)
    assert header_properties(lazy) == _reference(props)
    plain = ContentHeader()
    plain.unmarshal(raw)
    assert lazy.properties == plain.properties  # what other aiormq users read


@FAST
@given(pamqp_properties())
def test_properties_encode_as_pamqp_does(props: spec.Basic.Properties) -> None:
    ours = _reference(props)
    expected = amqp._to_amqp_properties(ours).marshal()
    assert encode_properties(ours, amqp.pamqp_encode.field_table) == expected


def test_encode_refuses_what_pamqp_must_judge() -> None:
    for props in (
        Properties(delivery_mode=3),
        Properties(priority=256),
        Properties(timestamp=2**63),
        Properties(content_type="x" * 300),
    ):
        with pytest.raises((ValueError, TypeError)):
            encode_properties(props, amqp.pamqp_encode.field_table)


# ---------------------------------------------------------------------------- frame reader
class _Reader:
    """Enough of asyncio.StreamReader for FastFrameReceiver: chunks, then EOF."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def read(self, _n: int) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""

    def at_eof(self) -> bool:
        return not self.chunks


def _stream_frames() -> list[tuple[int, Any]]:
    props = spec.Basic.Properties(content_type="text/plain", headers={"a": "b", "n": 7})
    return [
        (1, spec.Basic.Deliver("ctag", 7, True, "amq.topic", "a.b")),
        (1, ContentHeader(0, 5, props)),
        (1, ContentBody(b"he\x00lo")),
        (2, spec.Basic.Ack(3, multiple=True)),
        (2, spec.Basic.Nack(4, multiple=False, requeue=True)),
        (1, spec.Basic.ConsumeOk("ctag")),
        (0, spec.Connection.Blocked("low memory")),
        (1, spec.Basic.Deliver("ünï", 8, False, "", "q")),
        (1, ContentHeader(0, 0, spec.Basic.Properties())),
    ]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, ContentHeader):
        return (a.class_id, a.body_size, a.properties) == (b.class_id, b.body_size, b.properties)
    if isinstance(a, ContentBody):
        return bool(a.value == b.value)
    return type(a) is type(b) and all(getattr(a, k) == getattr(b, k) for k in type(a).__slots__)


@FAST
@given(st.lists(st.integers(min_value=1, max_value=60), max_size=40))
def test_frames_survive_any_chunking(cuts: list[int]) -> None:
    frames = _stream_frames()
    data = b"".join(pamqp.frame.marshal(f, ch) for ch, f in frames)
    chunks, pos = [], 0
    for cut in cuts:
        if pos >= len(data):
            break
        chunks.append(data[pos : pos + cut])
        pos += cut
    if pos < len(data):
        chunks.append(data[pos:])

    async def read_all() -> list[tuple[int, int, Any]]:
        receiver = FastFrameReceiver(_Reader(chunks))  # type: ignore[arg-type]
        receiver.started = True
        return [item async for item in receiver]

    got = asyncio.run(read_all())
    assert [(w, ch) for w, ch, _ in got] == [
        (len(pamqp.frame.marshal(f, ch)), ch) for ch, f in frames
    ]
    for (_, _, frame), (_, expected) in zip(got, frames, strict=True):
        decoded = pamqp.frame.unmarshal(pamqp.frame.marshal(expected, 0))[2]
        assert _same(frame, decoded)


def test_truncated_stream_is_a_connection_error() -> None:
    import aiormq.exceptions

    data = pamqp.frame.marshal(spec.Basic.Ack(1), 1)

    async def read() -> None:
        receiver = FastFrameReceiver(_Reader([data[:-3]]))  # type: ignore[arg-type]
        receiver.started = True
        await receiver.__anext__()

    with pytest.raises(aiormq.exceptions.AMQPConnectionError):
        asyncio.run(read())


def test_bad_frame_end_is_pamqps_error() -> None:
    import aiormq.exceptions

    data = bytearray(pamqp.frame.marshal(spec.Basic.Ack(1), 1))
    data[-1] = 0

    async def read() -> None:
        receiver = FastFrameReceiver(_Reader([bytes(data)]))  # type: ignore[arg-type]
        receiver.started = True
        await receiver.__anext__()

    with pytest.raises(aiormq.exceptions.InvalidFrameError):
        asyncio.run(read())


# -------------------------------------------------------------------------- MESSAGE frames
@st.composite
def deliveries(draw: st.DrawFn) -> Delivery:
    names = st.text(max_size=12)
    table = draw(
        st.one_of(
            st.none(),
            st.dictionaries(
                st.one_of(
                    names, st.sampled_from(["reply-to", "ack", "content-length", "destination"])
                ),
                st.one_of(names, st.integers(), st.binary(max_size=4)),
                max_size=4,
            ),
        )
    )
    props = Properties(
        content_type=draw(st.one_of(st.none(), names)),
        headers=table,
        delivery_mode=draw(st.one_of(st.none(), st.integers(1, 2))),
        priority=draw(st.one_of(st.none(), st.integers(0, 9))),
        reply_to=draw(st.one_of(st.none(), names)),
        timestamp=draw(st.one_of(st.none(), st.integers(0, 2**33))),
        app_id=draw(st.one_of(st.none(), names)),
    )
    return Delivery(
        consumer_tag="T_x",
        delivery_tag=draw(st.integers(1, 10**12)),
        redelivered=draw(st.booleans()),
        exchange=draw(st.sampled_from(["", "amq.topic", "ex:1", "x\\y"])),
        routing_key=draw(names),
        properties=props,
        body=draw(st.binary(max_size=20)),
    )


@FAST
@given(
    deliveries(),
    st.one_of(st.none(), st.text(max_size=6)),
    st.sampled_from(["T_x@@s-1@@", "Q_/queue/a:b\n@@s-1@@"]),
    st.booleans(),
    st.booleans(),
)
def test_message_encoder_equals_encode_frame(
    delivery: Delivery, subscription: str | None, id_prefix: str, ack: bool, trailing_lf: bool
) -> None:
    encoder = MessageEncoder(
        subscription=subscription, id_prefix=id_prefix, ack=ack, trailing_lf=trailing_lf
    )
    message_id = f"{id_prefix}{delivery.delivery_tag}"
    headers = message_headers(
        delivery, subscription=subscription, message_id=message_id, ack=message_id if ack else None
    )
    expected = encode_frame("MESSAGE", headers, delivery.body, trailing_lf=trailing_lf)
    assert encoder.encode(delivery) == expected
    assert encoder.encode(delivery) == expected  # from the prefix cache


@FAST
@given(deliveries(), deliveries())
def test_one_delivery_for_many_subscriptions_in_any_order(
    first: Delivery, second: Delivery
) -> None:
    # Local fan-out encodes one delivery for subscription after subscription; the
    # property lines are reused while the properties are the same object, never after.
    encoders = {
        sub: MessageEncoder(
            subscription=sub, id_prefix=f"T_{sub}@@s@@", ack=False, trailing_lf=False
        )
        for sub in ("a", "b")
    }

    def expected(delivery: Delivery, sub: str) -> bytes:
        message_id = f"T_{sub}@@s@@{delivery.delivery_tag}"
        headers = message_headers(delivery, subscription=sub, message_id=message_id, ack=None)
        return encode_frame("MESSAGE", headers, delivery.body, trailing_lf=False)

    for delivery, sub in [(first, "a"), (first, "b"), (second, "a"), (first, "b"), (second, "b")]:
        assert encoders[sub].encode(delivery) == expected(delivery, sub)


# ------------------------------------------------------------------------------------ pump
_METHOD = struct.Struct(">BHIHH")


class _RawChannel:
    """The attributes of an aiormq channel the pump uses."""

    number = 1
    max_content_size = 131072 - 8

    def __init__(self) -> None:
        self.frames: Any = asyncio.Queue()
        self.write_queue: asyncio.Queue[Any] = asyncio.Queue()
        self.delivery_tag = 0
        self.confirmations: dict[int, Any] = {}
        self.closing: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.is_closed = False

    def create_future(self) -> asyncio.Future[None]:
        return asyncio.get_running_loop().create_future()


def _settles(raw: _RawChannel) -> list[tuple[str, int, int]]:
    """(ack|nack, delivery tag, bits) of every Basic.Ack/Nack written so far."""
    out = []
    while not raw.write_queue.empty():
        data = raw.write_queue.get_nowait().payload
        pos = 0
        while pos < len(data):
            _, _, size, cls, method = _METHOD.unpack_from(data, pos)
            if (cls, method) in ((60, 80), (60, 120)):
                tag, bits = struct.unpack_from(">QB", data, pos + 11)
                out.append(("ack" if method == 80 else "nack", tag, bits))
            pos += 8 + size
    return out


async def _pump(taken: bool = True) -> tuple[_RawChannel, ChannelPump, list[Delivery]]:
    raw = _RawChannel()
    seen: list[Delivery] = []

    def on_delivery(d: Delivery) -> bool:
        seen.append(d)
        return taken

    pump = ChannelPump(
        raw,
        on_delivery,
        to_amqp=amqp._to_amqp_properties,
        encode_table=amqp.pamqp_encode.field_table,
        closed_error=amqp._channel_closed,
        nacked_error=amqp.PublishNacked,
    )
    return raw, pump, seen


async def _deliver(pump: ChannelPump, tag: int, consumer: str, body: bytes = b"hi") -> None:
    props = spec.Basic.Properties(content_type="t")
    await pump.put((0, spec.Basic.Deliver(consumer, tag, False, "", "q")))
    await pump.put((0, ContentHeader(0, len(body), props)))
    for i in range(0, len(body), 2):
        await pump.put((0, ContentBody(body[i : i + 2])))


async def _turn() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_pump_assembles_deliveries_and_acks_auto_ones_cumulatively() -> None:
    raw, pump, seen = await _pump()
    pump.set_mode("auto", AUTO)
    for tag in (1, 2, 3):
        await _deliver(pump, tag, "auto", b"hello")
    assert [(d.delivery_tag, d.body, d.properties.content_type) for d in seen] == [
        (1, b"hello", "t"),
        (2, b"hello", "t"),
        (3, b"hello", "t"),
    ]
    await _turn()
    assert _settles(raw) == [("ack", 3, 1)]  # one multiple ack for the three


async def test_pump_never_acks_past_a_tag_the_client_holds() -> None:
    raw, pump, _ = await _pump()
    pump.set_mode("auto", AUTO)
    pump.set_mode("client", CLIENT)
    await _deliver(pump, 1, "auto")
    await _deliver(pump, 2, "client")
    await _deliver(pump, 3, "auto")
    await _deliver(pump, 4, "auto")
    await _turn()
    assert _settles(raw) == [("ack", 1, 0), ("ack", 3, 0), ("ack", 4, 0)]
    pump.ack(2, multiple=False)
    await _turn()
    assert _settles(raw) == [("ack", 2, 0)]


async def test_pump_coalesces_client_individual_acks_of_one_turn() -> None:
    raw, pump, _ = await _pump()
    pump.set_mode("c", CLIENT)
    for tag in range(1, 6):
        await _deliver(pump, tag, "c")
    for tag in (2, 1, 3):
        pump.ack(tag, multiple=False)
    pump.ack(5, multiple=False)
    await _turn()
    assert _settles(raw) == [("ack", 3, 1), ("ack", 5, 0)]  # 4 is still held


async def test_pump_multiple_nack_skips_held_auto_deliveries() -> None:
    raw, pump, _ = await _pump()
    pump.set_mode("auto", AUTO)
    pump.set_mode("c", CLIENT)
    pump.pause(True)  # the transport is congested: auto acks wait
    await _deliver(pump, 1, "c")
    await _deliver(pump, 2, "auto")
    await _deliver(pump, 3, "c")
    pump.nack(3, multiple=True, requeue=True)
    await _turn()
    # Delivery 2 went to the client already: a multiple nack would requeue it too.
    assert _settles(raw) == [("nack", 1, 2), ("nack", 3, 2)]
    pump.pause(False)
    await _turn()
    assert _settles(raw) == [("ack", 2, 0)]


async def test_pump_nacks_what_nobody_took() -> None:
    raw, pump, seen = await _pump(taken=False)
    pump.set_mode("auto", AUTO)
    await _deliver(pump, 1, "auto")
    await _turn()
    assert len(seen) == 1 and _settles(raw) == [("nack", 1, 2)]


async def test_pump_resolves_confirms_and_fails_them_on_close() -> None:
    raw, pump, _ = await _pump()
    calls: list[int] = []
    pump.on_confirm = lambda: calls.append(len(pump.confirms))
    futures = [pump.publish("", "q", b"x", Properties(headers={})) for _ in range(4)]
    await _turn()
    [written] = [raw.write_queue.get_nowait()]  # one write for the four publishes
    assert written.payload.count(b"\xce") == 4 * 3
    await pump.put((0, spec.Basic.Ack(2, multiple=True)))
    await pump.put((0, spec.Basic.Nack(3, multiple=False)))
    assert [f.done() for f in futures] == [True, True, True, False]
    assert calls == [2, 1]
    assert isinstance(futures[2].exception(), amqp.PublishNacked)
    raw.closing.set_exception(RuntimeError("gone"))
    await _turn()
    exc = futures[3].exception()
    assert isinstance(exc, amqp.ChannelClosed) and exc.code == 320


async def test_pump_passes_other_frames_and_returned_content_on() -> None:
    _raw, pump, seen = await _pump()
    returned = spec.Basic.Return(312, "NO_ROUTE", "x", "k")
    frames = [
        spec.Basic.ConsumeOk("c"),
        returned,
        ContentHeader(0, 2, spec.Basic.Properties()),
        ContentBody(b"ab"),
    ]
    for frame in frames:
        await pump.put((0, frame))
    passed = [pump._queue.get_nowait()[1] for _ in range(4)]
    assert passed == frames and seen == []
    await _deliver(pump, 1, "c")
    assert [d.delivery_tag for d in seen] == [1]


async def test_channels_of_one_connection_share_one_write() -> None:
    raw, pump, _ = await _pump()
    other = _RawChannel()
    other.number = 2
    other.write_queue = raw.write_queue  # the same connection
    second = ChannelPump(
        other,
        lambda d: True,
        to_amqp=amqp._to_amqp_properties,
        encode_table=amqp.pamqp_encode.field_table,
        closed_error=amqp._channel_closed,
        nacked_error=amqp.PublishNacked,
    )
    for p in (pump, second):
        p.set_mode("c", CLIENT)
        await _deliver(p, 1, "c")
        await _deliver(p, 2, "c")
        p.ack(1, multiple=False)
        p.ack(2, multiple=False)
    await _turn()
    [written] = [raw.write_queue.get_nowait()]
    channels = []
    pos, data = 0, written.payload
    while pos < len(data):
        _, channel, size, _, _ = _METHOD.unpack_from(data, pos)
        channels.append(channel)
        pos += 8 + size
    assert channels == [1, 2]  # one cumulative ack each, in one write
    second._muted = True
    second.ack(3, multiple=False)
    await second.sync()
    assert raw.write_queue.empty()  # a channel being closed sends nothing more


async def test_receiver_hands_a_registered_pumps_frames_over_directly() -> None:
    from pamqp.heartbeat import Heartbeat

    _raw, pump, seen = await _pump()
    pump.set_mode("auto", AUTO)
    props = spec.Basic.Properties()
    delivery = b"".join(
        pamqp.frame.marshal(f, 1)
        for tag in (1, 2)
        for f in (
            spec.Basic.Deliver("auto", tag, False, "", "q"),
            ContentHeader(0, 2, props),
            ContentBody(b"hi"),
        )
    )
    first = pamqp.frame.marshal(spec.Basic.ConsumeOk("auto"), 1)
    receiver = FastFrameReceiver(_Reader([first, delivery]))  # type: ignore[arg-type]
    receiver.started = True
    returned = []
    async for _weight, channel, frame in receiver:  # what aiormq's reader does
        returned.append((channel, type(frame)))
        if channel == 1:
            await pump.put((0, frame))
    # The ConsumeOk went aiormq's way (and registered the pump); the deliveries went
    # straight to the pump; aiormq's reader saw a heart-beat for them.
    assert returned == [(1, spec.Basic.ConsumeOk), (0, Heartbeat)]
    assert [d.delivery_tag for d in seen] == [1, 2]
    assert receiver.pumps == {1: pump}
    await pump.put((0, spec.Channel.CloseOk()))  # the channel's last frame
    assert receiver.pumps == {}
