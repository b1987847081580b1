"""Hypothesis properties of the STOMP codec (after RabbitMQ's prop_frame_SUITE).

1. serialize -> parse is the identity, with escape-heavy names/values (``:``, ``\\``,
   CR, LF, NUL, non-ASCII, bytes that are not UTF-8) and bodies holding NUL and
   backslash. Nothing is filtered out.
2. A serialized stream parses to the same frames however it is chunked: split at
   every byte boundary, byte by byte, and at random cut points.
3. Limits: the parser rejects a stream iff some frame breaks a limit; it never
   returns a frame that breaks one, and never holds more than max_frame_size.
4. Any content-length text (negative, huge, garbage, unicode digits) gives the
   documented outcome and never an exception other than FrameError.
5. Arbitrary bytes in arbitrary chunks never raise anything but FrameError, and
   chunking does not change the frames returned nor whether an error occurs.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gateway.stomp import (
    Command,
    Frame,
    FrameError,
    FrameParser,
    encode_frame,
    escape,
    parse_content_length,
)

# No example database (nothing written to the repository), no deadlines (CI noise).
FAST = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SLOW = settings(FAST, max_examples=40)

# --------------------------------------------------------------------------- strategies

# Byte pieces that stress the codec: the four escaped characters, NUL, a backslash
# followed by escape letters, UTF-8 multi-byte sequences and invalid UTF-8.
_PIECES = [
    b":", b"\\", b"\n", b"\r", b"\x00", b"\r\n", b"\\n", b"\\c", b"c", b"n", b"r",
    b"a", b"Z", b" ", b"-", "\u00e9".encode(), "\u20ac".encode(), "\U0001f600".encode(),
    b"\xff", b"\xc3", b"\x80", b"\xed\xa0\x80",
]  # fmt: skip


def _from_bytes(data: bytes) -> str:
    # One decode of one byte string: canonical, so encode/decode round-trips exactly.
    return data.decode("utf-8", "surrogateescape")


header_text = st.one_of(
    st.lists(st.sampled_from(_PIECES), max_size=12).map(b"".join).map(_from_bytes),
    st.binary(max_size=12).map(_from_bytes),
    st.text(max_size=12),
)
header_names = header_text.filter(lambda name: name != "content-length")
bodies = st.one_of(
    st.lists(st.sampled_from([b"\x00", b"\\", b"\n", b"\r\n", b"x", b"\xff"]), max_size=20).map(
        b"".join
    ),
    st.binary(max_size=64),
)
commands = st.one_of(
    st.sampled_from(list(Command)),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_-:\\", min_size=1, max_size=32),
)


@st.composite
def frames(draw: st.DrawFn, command: st.SearchStrategy[str] = commands) -> Frame:
    """A frame as the parser will return it (content-length appended by serialize)."""
    headers = draw(st.dictionaries(header_names, header_text, max_size=6))
    body = draw(bodies)
    if body:
        headers["content-length"] = str(len(body))
    return Frame(draw(command), headers, body)


noise = st.lists(st.sampled_from([b"\n", b"\r\n", b"\x00"]), max_size=3).map(b"".join)


@st.composite
def sized_streams(
    draw: st.DrawFn, command: st.SearchStrategy[str] = commands
) -> tuple[list[Frame], bytes, list[int]]:
    """Frames, their wire form (heart-beats and optional trailing LFs between), and each
    frame's size on the wire (command through NUL, as the parser counts it).

    Each line of a frame's head ends in LF or CR LF (drawn per line), so bare-LF,
    CR LF and mixed framing are all exercised.
    """
    items = draw(st.lists(frames(command), max_size=4))
    wire = draw(noise)
    sizes = []
    for frame in items:
        trailing_lf = draw(st.booleans())
        head, _, rest = frame.serialize(trailing_lf=trailing_lf).partition(b"\n\n")
        # escaped names/values hold no raw LF, so the first blank line ends the head
        head_wire = b"".join(
            line + draw(st.sampled_from([b"\n", b"\r\n"])) for line in [*head.split(b"\n"), b""]
        )
        sizes.append(len(head_wire) + len(rest) - trailing_lf)
        wire += head_wire + rest + draw(noise)
    return items, wire, sizes


def streams(command: st.SearchStrategy[str] = commands) -> st.SearchStrategy[tuple[list[Frame], bytes]]:
    return sized_streams(command).map(lambda s: (s[0], s[1]))


def feed_chunks(parser: FrameParser, chunks: list[bytes]) -> list[Frame]:
    out: list[Frame] = []
    for chunk in chunks:
        out += parser.feed(chunk)
    return out


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def run(data: bytes | list[bytes], **limits: object) -> tuple[list[Frame], FrameError | None]:
    """Frames returned (including those carried by the error) and the error, if any."""
    parser = FrameParser(**limits)  # type: ignore[arg-type]
    out: list[Frame] = []
    try:
        for chunk in [data] if isinstance(data, bytes) else data:
            out += parser.feed(chunk)
    except FrameError as exc:
        return out + exc.frames, exc
    return out, None


# --------------------------------------------------------------------------- 1. round trip


@FAST
@given(frames(), st.booleans())
def test_serialize_then_parse_is_identity(frame: Frame, trailing_lf: bool) -> None:
    assert FrameParser().feed(frame.serialize(trailing_lf=trailing_lf)) == [frame]


@FAST
@given(frames(st.just(Command.SEND)))
def test_send_round_trips_when_only_send_honours_content_length(frame: Frame) -> None:
    parser = FrameParser(content_length_commands=frozenset({"SEND"}))
    assert parser.feed(frame.serialize()) == [frame]


@FAST
@given(header_text)
def test_escape_round_trip(text: str) -> None:
    escaped = escape(text)
    assert not {"\n", "\r", ":"} & set(escaped)
    wire = encode_frame("X", [("k", text)])
    assert FrameParser().feed(wire) == [Frame("X", {"k": text})]


# --------------------------------------------------------------------------- 2. chunking


@SLOW
@given(streams())
def test_split_at_every_byte_boundary(stream: tuple[list[Frame], bytes]) -> None:
    expected, wire = stream
    assert FrameParser().feed(wire) == expected
    for i in range(len(wire) + 1):
        parser = FrameParser()
        assert parser.feed(wire[:i]) + parser.feed(wire[i:]) == expected
        assert parser.buffered == 0


@FAST
@given(streams())
def test_byte_by_byte(stream: tuple[list[Frame], bytes]) -> None:
    expected, wire = stream
    parser = FrameParser()
    assert feed_chunks(parser, [wire[i : i + 1] for i in range(len(wire))]) == expected


@FAST
@given(streams(), st.lists(st.integers(min_value=0, max_value=2000), max_size=20))
def test_random_chunking(stream: tuple[list[Frame], bytes], cuts: list[int]) -> None:
    expected, wire = stream
    assert feed_chunks(FrameParser(), split_at(wire, cuts)) == expected


# --------------------------------------------------------------------------- 3. limits


@dataclass(frozen=True)
class Limits:
    max_headers: int
    max_header_length: int
    max_body_length: int
    max_frame_size: int | None

    def broken_by(self, frame: Frame, wire_size: int) -> set[str]:
        """Which limits ``frame`` breaks (``wire_size`` counts command..NUL)."""
        broken = set()
        if len(frame.headers) > self.max_headers:
            broken.add("max_headers")
        for name, value in frame.headers.items():
            for text in (name, value):
                if len(text.encode("utf-8", "surrogateescape")) > self.max_header_length:
                    broken.add("max_header_length")
        if len(frame.body) > self.max_body_length:
            broken.add("max_body_length")
        if self.max_frame_size is not None and wire_size > self.max_frame_size:
            broken.add("frame_too_big")
        return broken


limits = st.builds(
    Limits,
    max_headers=st.integers(0, 6),
    max_header_length=st.integers(0, 16),
    max_body_length=st.integers(0, 48),
    max_frame_size=st.none() | st.integers(8, 160),
)


@FAST
@given(sized_streams(), limits, st.lists(st.integers(min_value=0, max_value=2000), max_size=8))
def test_limits_are_always_enforced(
    stream: tuple[list[Frame], bytes, list[int]], limit: Limits, cuts: list[int]
) -> None:
    expected, wire, sizes = stream
    parser = FrameParser(
        max_headers=limit.max_headers,
        max_header_length=limit.max_header_length,
        max_body_length=limit.max_body_length,
        max_frame_size=limit.max_frame_size,
    )
    got: list[Frame] = []
    error: FrameError | None = None
    try:
        for chunk in split_at(wire, cuts):
            got += parser.feed(chunk)
            if limit.max_frame_size is not None:
                assert parser.buffered <= limit.max_frame_size
    except FrameError as exc:
        got += exc.frames
        error = exc
    for frame, size in zip(got, sizes, strict=False):
        assert not limit.broken_by(frame, size)
    first_bad = next(
        (i for i, f in enumerate(expected) if limit.broken_by(f, sizes[i])), None
    )
    event("within limits" if first_bad is None else "limit broken")
    if first_bad is None:
        assert error is None
        assert got == expected
    else:
        assert error is not None
        assert error.kind in limit.broken_by(expected[first_bad], sizes[first_bad])
        assert got == expected[:first_bad]


# --------------------------------------------------------------------------- 4. content-length

content_length_texts = st.one_of(
    st.integers(-(10**40), 10**40).map(str),
    st.integers(-5, 80).map(lambda n: f" {n}\t"),
    st.text(alphabet="0123456789+- \t\u0661\u0663\u06f5\uff11\u2028x.e_", max_size=12),
    st.text(max_size=8),
    st.binary(max_size=8).map(_from_bytes),
)


@FAST
@given(content_length_texts, bodies, st.booleans())
def test_any_content_length_text(value: str, body: bytes, honoured: bool) -> None:
    wire = b"SEND\ncontent-length:" + escape(value).encode("utf-8", "surrogateescape")
    wire += b"\n\n" + body + b"\x00"
    parser = FrameParser(
        max_body_length=64,
        content_length_commands=None if honoured else frozenset({"MESSAGE"}),
    )
    parser.receive_data(wire)
    got: list[Frame] = []
    error: FrameError | None = None
    try:  # only the first frame: what follows a short body is garbage by design
        frame = parser.next_frame()
        got = [] if frame is None else [frame]
    except FrameError as exc:
        error = exc
    parsed = parse_content_length(value) if honoured else None
    if parsed is None:  # ignored: the body ends at the first NUL
        assert error is None
        assert got[0].body == body.split(b"\x00", 1)[0]
        assert got[0].get("content-length") == value
    elif parsed[0] < 0:
        assert error is not None
        assert error.reason == f"{{invalid_content_length,{parsed[1]}}}"
    elif parsed[0] > 64:
        assert error is not None
        assert error.reason == f"{{max_body_length,{parsed[1]}}}"
    elif parsed[0] > len(body):
        # waiting for more body (or NUL), unless a wrong byte already sits there
        assert error is None
        assert got == []
    elif parsed[0] == len(body) or body[parsed[0]] == 0:
        assert error is None
        assert got[0].body == (body + b"\x00")[: parsed[0]]
    else:
        assert error is not None
        assert error.reason == "missing_body_terminator"


# --------------------------------------------------------------------------- 5. garbage

garbage = st.one_of(
    st.binary(max_size=200),
    st.lists(
        st.sampled_from(
            [*_PIECES, b"SEND", b"CONNECT", b"content-length:", b"3", b"-1", b"\n\n", b"x" * 40]
        ),
        max_size=40,
    ).map(b"".join),
)
small_limits = st.fixed_dictionaries(
    {},
    optional={
        "max_headers": st.integers(0, 4),
        "max_header_length": st.integers(0, 20),
        "max_body_length": st.integers(0, 40),
        "max_frame_size": st.integers(0, 120),
        "content_length_commands": st.just(frozenset({"SEND"})),
    },
)


@FAST
@given(garbage, st.lists(st.integers(min_value=0, max_value=400), max_size=12), small_limits)
def test_arbitrary_bytes_only_ever_raise_frame_error(
    data: bytes, cuts: list[int], limit: dict[str, object]
) -> None:
    whole, whole_error = run(data, **limit)
    event("error" if whole_error else f"{min(len(whole), 2)} frames")
    chunked, chunked_error = run(split_at(data, cuts), **limit)
    assert chunked == whole
    assert (chunked_error is None) == (whole_error is None)
    for frame in whole:
        assert frame.command
        assert isinstance(frame.body, bytes)
