"""The sans-I/O reader of client WebSocket frames (gateway.transport.wsframes).

Every refusal is also checked against websockets' own parser fed the same bytes: the
fast path must close with the code and reason websockets would have sent. With
permessage-deflate both sides get their own PerMessageDeflate with the same parameters,
and the messages decoded are compared too.
"""

from __future__ import annotations

import os
import struct

import pytest
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import OPEN, Protocol, Side

from gateway.transport.wsframes import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    Control,
    FrameReader,
    WsFrameError,
)

MASK = b"\x11\x22\x33\x44"


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    mask: bytes | None = MASK,
    rsv: int = 0,
    form: int | None = None,
) -> bytes:
    """A client frame; ``form`` forces the 7-, 16- or 64-bit length encoding."""
    n = len(payload)
    form = form or (7 if n < 126 else 16 if n < 65536 else 64)
    first = (0x80 if fin else 0) | rsv | opcode
    masked = 0x80 if mask is not None else 0
    if form == 7:
        head = struct.pack("!BB", first, masked | n)
    elif form == 16:
        head = struct.pack("!BBH", first, masked | 126, n)
    else:
        head = struct.pack("!BBQ", first, masked | 127, n)
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_all(
    data: bytes, max_size: int | None = None, decoder: PerMessageDeflate | None = None
) -> list[bytes | Control]:
    reader = FrameReader(decoder)
    reader.feed(data)
    items: list[bytes | Control] = []
    while (item := reader.next(max_size)) is not None:
        items.append(item)
    return items


def websockets_close(
    data: bytes, max_size: int | None = None, deflate: PerMessageDeflate | None = None
) -> tuple[int, str] | None:
    """The close frame websockets' own server-side parser sends for these bytes."""
    return websockets_read(data, max_size, deflate)[1]


def websockets_read(
    data: bytes, max_size: int | None = None, deflate: PerMessageDeflate | None = None
) -> tuple[list[bytes], tuple[int, str] | None]:
    """The messages (fragments joined) websockets' own parser reads, and its close."""
    protocol = Protocol(Side.SERVER, state=OPEN, max_size=max_size)
    if deflate is not None:
        protocol.extensions = [deflate]
    protocol.receive_data(data)
    messages: list[bytes] = []
    parts: list[bytes] = []
    for event in protocol.events_received():
        if isinstance(event, Frame) and event.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            parts.append(bytes(event.data))
            if event.fin:
                messages.append(b"".join(parts))
                parts = []
    sent = protocol.close_sent
    return messages, None if sent is None else (sent.code, sent.reason)


# ------------------------------------------------------------------ messages
@pytest.mark.parametrize(
    ("size", "form"),
    [(0, 7), (1, 7), (125, 7), (126, 16), (300, 16), (65535, 16), (65536, 64), (70_000, 64)],
)
@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_one_message_each_length_encoding(size: int, form: int, opcode: int) -> None:
    payload = (b"SEND\n\n" + b"x" * size)[:size]
    assert read_all(frame(opcode, payload, form=form)) == [payload]


def test_non_minimal_lengths_are_accepted_as_websockets_does() -> None:
    data = frame(TEXT, b"ab", form=16) + frame(BINARY, b"cd", form=64)
    assert read_all(data) == [b"ab", b"cd"]
    assert websockets_close(data) is None


def test_many_messages_in_one_read_in_order() -> None:
    payloads = [f"SEND\ndestination:/queue/q\n\n{i}\x00".encode() for i in range(50)]
    data = b"".join(frame(TEXT if i % 2 else BINARY, p) for i, p in enumerate(payloads))
    assert read_all(data) == payloads


def test_split_at_every_byte_boundary() -> None:
    payloads = [b"CONNECT\n\n\x00", b"\n", b"x" * 200, b"", b"SEND\n\nbody\x00" * 30]
    data = b"".join(frame(TEXT, p) for p in payloads)
    for cut in range(len(data) + 1):
        reader = FrameReader()
        items: list[bytes | Control] = []
        for part in (data[:cut], data[cut:]):
            reader.feed(part)
            while (item := reader.next(None)) is not None:
                items.append(item)
        assert items == payloads, cut
        assert reader.buffered() == 0


def test_byte_by_byte_yields_the_message_only_when_complete() -> None:
    payload = b"SEND\n\n" + b"y" * 1000 + b"\x00"
    data = frame(TEXT, payload)
    reader = FrameReader()
    for byte in data[:-1]:
        reader.feed(bytes([byte]))
        assert reader.next(None) is None
    reader.feed(data[-1:])
    assert reader.next(None) == payload
    assert reader.next(None) is None


def test_each_frame_has_its_own_mask() -> None:
    data = frame(TEXT, b"hello", mask=b"\x00\x00\x00\x00") + frame(
        TEXT, b"world", mask=b"\xff\x01\x80\x7f"
    )
    assert read_all(data) == [b"hello", b"world"]


# ------------------------------------------------------------------ fragmentation
def test_fragmented_message_is_joined() -> None:
    reader = FrameReader()
    reader.feed(frame(TEXT, b"SEND\n", fin=False))
    assert reader.next(None) is None
    assert reader.fragment_size == 5
    reader.feed(frame(CONT, b"destination:/queue/a\n", fin=False) + frame(CONT, b"\nbody\x00"))
    assert reader.next(None) == b"SEND\ndestination:/queue/a\n\nbody\x00"
    assert reader.fragment_size is None


def test_binary_fragments_and_empty_fragments() -> None:
    data = frame(BINARY, b"", fin=False) + frame(CONT, b"ab", fin=False) + frame(CONT, b"")
    assert read_all(data) == [b"ab"]


def test_control_frames_interleaved_in_a_fragmented_message() -> None:
    data = (
        frame(TEXT, b"SEND\n\n", fin=False)
        + frame(PING, b"p1")
        + frame(CONT, b"part", fin=False)
        + frame(PONG, b"")
        + frame(CONT, b"\x00")
    )
    reader = FrameReader()
    reader.feed(data)
    ping = reader.next(None)
    assert ping == Control(PING, b"p1", frame(PING, b"p1"))
    assert reader.fragment_size == 6
    assert reader.next(None) == Control(PONG, b"", frame(PONG, b""))
    assert reader.fragment_size == 10
    assert reader.next(None) == b"SEND\n\npart\x00"
    assert reader.next(None) is None
    assert websockets_close(data) is None


def test_close_frame_and_rest_start_at_a_frame_boundary() -> None:
    close = frame(CLOSE, Close(1000, "bye").serialize())
    after = frame(TEXT, b"late") + frame(TEXT, b"partial")[:5]
    reader = FrameReader()
    reader.feed(frame(TEXT, b"first") + close + after)
    assert reader.next(None) == b"first"
    item = reader.next(None)
    assert item == Control(CLOSE, b"\x03\xe8bye", close)
    assert reader.rest() == after
    assert reader.buffered() == 0


def test_rest_of_a_partial_frame_after_a_bytearray_buffer() -> None:
    data = frame(TEXT, b"x" * 300)
    reader = FrameReader()
    reader.feed(data[:100])
    reader.feed(data[100:200])  # accumulated in a bytearray from here
    assert reader.next(None) is None
    assert reader.rest() == data[:200]


# ------------------------------------------------------------------ limits
def test_oversized_frame_is_refused_on_its_header() -> None:
    reader = FrameReader()
    reader.feed(frame(TEXT, b"z" * 70_000)[:14])  # the header only: no payload yet
    with pytest.raises(WsFrameError) as info:
        reader.next(1000)
    assert (info.value.code, info.value.reason) == (
        1009,
        "frame with 70000 bytes exceeds limit of 1000 bytes",
    )


@pytest.mark.parametrize(
    ("data", "max_size", "expected"),
    [
        (frame(TEXT, b"a" * 101), 100, (1009, "frame with 101 bytes exceeds limit of 100 bytes")),
        (frame(BINARY, b"a" * 126), 125, (1009, "frame with 126 bytes exceeds limit of 125 bytes")),
        (
            frame(TEXT, b"a" * 60, fin=False) + frame(CONT, b"b" * 41),
            100,
            (1009, "frame with 41 bytes after reading 60 bytes exceeds limit of 100 bytes"),
        ),
        (
            frame(TEXT, b"a" * 60, fin=False) + frame(PING, b"p" * 41),
            100,
            (1009, "frame with 41 bytes after reading 60 bytes exceeds limit of 100 bytes"),
        ),
    ],
    ids=["7-bit", "16-bit", "fragments-add-up", "control-frame-counts-in-fragment"],
)
def test_message_size_limit(data: bytes, max_size: int, expected: tuple[int, str]) -> None:
    with pytest.raises(WsFrameError) as info:
        read_all(data, max_size)
    assert (info.value.code, info.value.reason) == expected
    assert websockets_close(data, max_size) == expected


def test_exactly_at_the_limit_passes() -> None:
    data = frame(TEXT, b"a" * 60, fin=False) + frame(CONT, b"b" * 40)
    assert read_all(data, 100) == [b"a" * 60 + b"b" * 40]
    assert read_all(frame(TEXT, b"c" * 100), 100) == [b"c" * 100]


def test_the_limit_is_read_per_frame() -> None:
    reader = FrameReader()
    reader.feed(frame(TEXT, b"CONNECT\n\n\x00") + frame(TEXT, b"s" * 500))
    assert reader.next(100) == b"CONNECT\n\n\x00"
    assert reader.next(1000) == b"s" * 500  # the caller raised its limit in between


# ------------------------------------------------------------------ protocol errors
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (frame(TEXT, b"x", mask=None), (1002, "incorrect masking")),
        (frame(BINARY, b"x" * 300, mask=None), (1002, "incorrect masking")),
        (frame(PING, b"", mask=None), (1002, "incorrect masking")),
        (frame(TEXT, b"x", rsv=0x40), (1002, "reserved bits must be 0")),
        (frame(TEXT, b"x", rsv=0x20), (1002, "reserved bits must be 0")),
        (frame(BINARY, b"x" * 200, rsv=0x10), (1002, "reserved bits must be 0")),
        (frame(PING, b"x", rsv=0x40), (1002, "reserved bits must be 0")),
        (frame(PING, b"p" * 126), (1002, "control frame too long")),
        (frame(PING, b"p", fin=False), (1002, "fragmented control frame")),
        (frame(CLOSE, b"", fin=False), (1002, "fragmented control frame")),
        (frame(CONT, b"orphan"), (1002, "unexpected continuation frame")),
        (
            frame(TEXT, b"a", fin=False) + frame(BINARY, b"b"),
            (1002, "expected a continuation frame"),
        ),
        (
            frame(TEXT, b"a", fin=False) + frame(TEXT, b"b", fin=False),
            (1002, "expected a continuation frame"),
        ),
    ],
    ids=[
        "unmasked-text",
        "unmasked-16bit",
        "unmasked-ping",
        "rsv1",
        "rsv2",
        "rsv3",
        "rsv1-ping",
        "long-ping",
        "fragmented-ping",
        "fragmented-close",
        "orphan-continuation",
        "binary-inside-text",
        "text-inside-text",
    ],
)
def test_protocol_errors(data: bytes, expected: tuple[int, str]) -> None:
    with pytest.raises(WsFrameError) as info:
        read_all(data)
    assert (info.value.code, info.value.reason) == expected
    assert websockets_close(data) == expected


@pytest.mark.parametrize("opcode", [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcodes(opcode: int) -> None:
    data = frame(opcode, b"x")
    with pytest.raises(WsFrameError) as info:
        read_all(data)
    assert (info.value.code, info.value.reason) == (1002, "invalid opcode")
    assert websockets_close(data) == (1002, "invalid opcode")


def test_error_after_good_messages_comes_in_order() -> None:
    reader = FrameReader()
    reader.feed(frame(TEXT, b"one") + frame(TEXT, b"two") + frame(TEXT, b"bad", mask=None))
    assert reader.next(None) == b"one"
    assert reader.next(None) == b"two"
    with pytest.raises(WsFrameError):
        reader.next(None)


# ------------------------------------------------------------------ UTF-8
def test_invalid_utf8_in_a_text_message_is_1007() -> None:
    with pytest.raises(WsFrameError) as info:
        read_all(frame(TEXT, b"CONNECT\n\n\xff\xfe\x00"))
    assert (info.value.code, info.value.reason) == (1007, "invalid start byte at position 9")


def test_invalid_utf8_across_fragments_is_1007() -> None:
    data = frame(TEXT, "é".encode()[:1] + b"ab", fin=False) + frame(CONT, b"cd")
    with pytest.raises(WsFrameError) as info:
        read_all(data)
    assert (info.value.code, info.value.reason) == (1007, "invalid continuation byte at position 0")


def test_utf8_split_across_fragments_is_fine() -> None:
    text = "SEND\n\nhé€😀\x00".encode()
    cut = text.index("€".encode()) + 1  # inside the three-byte sequence
    data = frame(TEXT, text[:cut], fin=False) + frame(CONT, text[cut:])
    assert read_all(data) == [text]


def test_binary_messages_are_not_checked_for_utf8() -> None:
    junk = b"\x00\n\n\x01\x02garbage\r\x03\xff"
    assert read_all(frame(BINARY, junk)) == [junk]
    assert read_all(frame(BINARY, junk[:3], fin=False) + frame(CONT, junk[3:])) == [junk]


def test_random_payloads_round_trip() -> None:
    payloads = [os.urandom(n) for n in (0, 1, 3, 4, 5, 125, 126, 127, 1000, 65535, 65536)]
    masks = [os.urandom(4) for _ in payloads]
    data = b"".join(frame(BINARY, p, mask=m) for p, m in zip(payloads, masks, strict=True))
    assert read_all(data) == payloads


# ------------------------------------------------------------------ permessage-deflate
# (client_no_context_takeover, window bits): each side's PerMessageDeflate, as the
# handshake would configure it (the client's local is the server's remote).
DEFLATE_PARAMS = [(False, 15), (True, 15), (False, 9)]


def deflaters(no_takeover: bool = False, bits: int = 15) -> tuple[PerMessageDeflate, ...]:
    """(the client's encoder, the reader's decoder, websockets' decoder)."""
    client = PerMessageDeflate(False, no_takeover, 15, bits)
    return (
        client,
        PerMessageDeflate(no_takeover, False, bits, 15),
        PerMessageDeflate(no_takeover, False, bits, 15),
    )


def compressed(
    client: PerMessageDeflate, opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0
) -> bytes:
    """A client frame compressed by ``client`` (rsv1 on a message's first frame)."""
    encoded = client.encode(Frame(Opcode(opcode), payload, fin))
    return frame(opcode, bytes(encoded.data), fin=fin, rsv=rsv | (0x40 if encoded.rsv1 else 0))


def deflate_refusal(
    data: bytes, max_size: int | None = None, *, params: tuple[bool, int] = (False, 15)
) -> tuple[int, str]:
    """The reader's refusal of ``data``, which must be websockets' own."""
    _, ours, theirs = deflaters(*params)
    with pytest.raises(WsFrameError) as info:
        read_all(data, max_size, decoder=ours)
    refusal = (info.value.code, info.value.reason)
    assert websockets_close(data, max_size, theirs) == refusal
    return refusal


@pytest.mark.parametrize("params", DEFLATE_PARAMS, ids=["takeover", "no-takeover", "window-9"])
@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_deflate_messages_of_every_size(params: tuple[bool, int], opcode: int) -> None:
    # Sizes around the 7/16/64-bit lengths and websockets' 2044-byte decode branch,
    # compressible and not (random bytes grow on the wire).
    payloads = [b"", b"x", b"SEND\n\n" + b"y" * 300 + b"\x00"]
    payloads += [os.urandom(n).hex().encode() for n in (60, 1100, 40_000)]
    if opcode == BINARY:
        payloads += [os.urandom(n) for n in (100, 2043, 2044, 2045, 70_000)]
    client, ours, theirs = deflaters(*params)
    data = b"".join(compressed(client, opcode, p) for p in payloads)
    assert read_all(data, decoder=ours) == payloads
    assert websockets_read(data, None, theirs) == (payloads, None)


@pytest.mark.parametrize("params", DEFLATE_PARAMS, ids=["takeover", "no-takeover", "window-9"])
def test_deflate_many_messages_share_the_context(params: tuple[bool, int]) -> None:
    payloads = [
        f'SEND\ndestination:/exchange/amq.topic/prices\n\n{{"seq":{i}}}\x00'.encode()
        for i in range(500)
    ]
    client, ours, theirs = deflaters(*params)
    frames = [compressed(client, TEXT, p) for p in payloads]
    if not params[0]:  # context takeover: later messages are back-references
        assert len(frames[-1]) < len(frames[0]) // 3
    data = b"".join(frames)
    reader = FrameReader(ours)
    for i, chunk in enumerate(frames):  # one message a read, then all at once below
        reader.feed(chunk)
        assert reader.next(None) == payloads[i]
    assert reader.next(None) is None
    assert websockets_read(data, None, theirs) == (payloads, None)


def test_deflate_split_at_every_byte_boundary() -> None:
    payloads = [b"CONNECT\n\n\x00", b"\n", b"x" * 200, b"", b"SEND\n\nbody\x00" * 30]
    client = deflaters()[0]
    data = b"".join(compressed(client, TEXT, p) for p in payloads)
    for cut in range(len(data) + 1):
        reader = FrameReader(PerMessageDeflate(False, False, 15, 15))
        items: list[bytes | Control] = []
        for part in (data[:cut], data[cut:]):
            reader.feed(part)
            while (item := reader.next(None)) is not None:
                items.append(item)
        assert items == payloads, cut
        assert reader.buffered() == 0


@pytest.mark.parametrize("params", DEFLATE_PARAMS, ids=["takeover", "no-takeover", "window-9"])
def test_deflate_fragments_with_control_frames_between(params: tuple[bool, int]) -> None:
    client, ours, theirs = deflaters(*params)
    body = b"SEND\ndestination:/queue/q\n\n" + bytes(range(256)) * 40 + b"\x00"
    data = (
        compressed(client, BINARY, body[:100], fin=False)
        + frame(PING, b"one")
        + compressed(client, CONT, body[100:5000], fin=False)
        + frame(PONG, b"two")
        + compressed(client, CONT, b"", fin=False)
        + compressed(client, CONT, body[5000:])
        + compressed(client, TEXT, b"after\x00")  # the context carries on
    )
    items = read_all(data, decoder=ours)
    assert [i.payload if isinstance(i, Control) else i for i in items] == [
        b"one",
        b"two",
        body,
        b"after\x00",
    ]
    assert websockets_read(data, None, theirs) == ([body, b"after\x00"], None)


def test_deflate_fragment_size_counts_decompressed_bytes() -> None:
    # websockets' current_size, handed over on a close, counts decoded bytes.
    client, ours, _ = deflaters()
    reader = FrameReader(ours)
    reader.feed(compressed(client, TEXT, b"a" * 5000, fin=False))
    assert reader.next(None) is None
    assert reader.fragment_size == 5000


def test_deflate_connection_takes_uncompressed_messages() -> None:
    # rsv1 clear: the message was sent uncompressed (allowed by RFC 7692), fragmented
    # or not, between compressed ones that keep sharing their context.
    client, ours, theirs = deflaters()
    data = (
        compressed(client, TEXT, b"SEND\n\none\x00")
        + frame(TEXT, b"SEND\n\ntwo\x00")
        + frame(BINARY, b"SEND\n", fin=False)
        + frame(CONT, b"\nthree\x00")
        + compressed(client, TEXT, b"SEND\n\nfour\x00")
    )
    expected = [b"SEND\n\none\x00", b"SEND\n\ntwo\x00", b"SEND\n\nthree\x00", b"SEND\n\nfour\x00"]
    assert read_all(data, decoder=ours) == expected
    assert websockets_read(data, None, theirs) == (expected, None)


def test_deflate_at_the_limit_passes() -> None:
    client, ours, _ = deflaters()
    data = compressed(client, TEXT, b"a" * 60, fin=False) + compressed(client, CONT, b"b" * 40)
    data += compressed(client, TEXT, b"c" * 100)
    assert read_all(data, 100, decoder=ours) == [b"a" * 60 + b"b" * 40, b"c" * 100]


def test_deflate_zip_bomb_is_refused() -> None:
    # ~1 KB on the wire, 1 MB inflated: refused while inflating, as websockets does.
    client = deflaters()[0]
    data = compressed(client, TEXT, b"\n" * 1_000_000)
    assert len(data) < 2000
    assert deflate_refusal(data, 100_000) == (1009, "frame exceeds limit of 100000 bytes")


def test_deflate_zip_bomb_in_a_fragment_is_refused() -> None:
    client = deflaters()[0]
    data = compressed(client, TEXT, b"a" * 60, fin=False) + compressed(client, CONT, b"b" * 41)
    assert deflate_refusal(data, 100) == (
        1009,
        "frame after reading 60 bytes exceeds limit of 100 bytes",
    )


def test_deflate_wire_length_is_checked_on_the_header() -> None:
    client = deflaters()[0]
    data = compressed(client, BINARY, os.urandom(3000))  # grows when compressed
    assert deflate_refusal(data, 3000)[0] == 1009
    reader = FrameReader(deflaters()[1])
    reader.feed(data[:8])  # the header alone is refused
    with pytest.raises(WsFrameError) as info:
        reader.next(3000)
    assert (info.value.code, info.value.reason) == deflate_refusal(data, 3000)


def _deflate_error_cases() -> list[tuple[str, bytes, tuple[int, str]]]:
    client = deflaters()[0]
    first = compressed(client, TEXT, b"SEND\n\n", fin=False)
    return [
        ("corrupt", frame(TEXT, b"garbage!", rsv=0x40), (1002, "decompression failed")),
        (
            "corrupt-in-a-fragment",
            first + frame(CONT, b"\xff\xff\xff\xff"),
            (1002, "decompression failed"),
        ),
        (
            "rsv1-on-a-compressed-continuation",
            first + frame(CONT, b"\x03\x00", rsv=0x40),
            (1002, "RSV1 bit set in continuation frame"),
        ),
        (
            "rsv1-on-an-uncompressed-continuation",
            frame(TEXT, b"a", fin=False) + frame(CONT, b"b", rsv=0x40),
            (1002, "reserved bits must be 0"),
        ),
        ("rsv1-on-a-ping", frame(PING, b"p", rsv=0x40), (1002, "reserved bits must be 0")),
        (
            "rsv2-on-compressed-text",
            compressed(deflaters()[0], TEXT, b"x", rsv=0x20),
            (1002, "reserved bits must be 0"),
        ),
        (
            "rsv3-uncompressed",
            frame(BINARY, b"x" * 200, rsv=0x10),
            (1002, "reserved bits must be 0"),
        ),
        (
            "compressed-text-inside-fragments",
            first + compressed(deflaters()[0], TEXT, b"x"),
            (1002, "expected a continuation frame"),
        ),
        (
            "orphan-compressed-continuation",
            frame(CONT, b"x", rsv=0x40),
            (1002, "reserved bits must be 0"),
        ),
        (
            "close-inside-compressed-fragments",
            first + frame(CLOSE, Close(1000, "").serialize()),
            (1002, "incomplete fragmented message"),
        ),
    ]


@pytest.mark.parametrize(
    ("data", "expected"),
    [case[1:] for case in _deflate_error_cases()],
    ids=[case[0] for case in _deflate_error_cases()],
)
def test_deflate_protocol_errors(data: bytes, expected: tuple[int, str]) -> None:
    if expected[1] == "incomplete fragmented message":
        # A close frame is handed over to websockets (with fragment_size): not ours.
        _, ours, theirs = deflaters()
        items = read_all(data, decoder=ours)
        assert len(items) == 1 and isinstance(items[0], Control) and items[0].opcode == CLOSE
        assert websockets_close(data, None, theirs) == expected
        return
    assert deflate_refusal(data) == expected


def test_deflate_invalid_utf8_is_1007() -> None:
    client, ours, _ = deflaters()
    data = compressed(client, TEXT, b"CONNECT\n\n\xff\xfe\x00")
    with pytest.raises(WsFrameError) as info:
        read_all(data, decoder=ours)
    assert (info.value.code, info.value.reason) == (1007, "invalid start byte at position 9")


def test_deflate_invalid_utf8_across_compressed_fragments_is_1007() -> None:
    client, ours, _ = deflaters()
    data = compressed(client, TEXT, "é".encode()[:1] + b"ab", fin=False) + compressed(
        client, CONT, b"cd"
    )
    with pytest.raises(WsFrameError) as info:
        read_all(data, decoder=ours)
    assert (info.value.code, info.value.reason) == (1007, "invalid continuation byte at position 0")


def test_deflate_binary_is_not_checked_for_utf8() -> None:
    client, ours, _ = deflaters()
    junk = b"\x00\n\n\xff\xfe"
    assert read_all(compressed(client, BINARY, junk), decoder=ours) == [junk]


def test_without_deflate_rsv1_is_still_refused() -> None:
    client = deflaters()[0]
    data = compressed(client, TEXT, b"SEND\n\nx\x00")
    with pytest.raises(WsFrameError) as info:
        read_all(data)
    assert (info.value.code, info.value.reason) == (1002, "reserved bits must be 0")
