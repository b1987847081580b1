"""Table tests for the STOMP codec.

They mirror RabbitMQ's ``frame_SUITE``, ``unit_frame_SUITE`` and
``unit_content_length_SUITE`` (deps/rabbitmq_stomp/test), plus the serializer
behaviour observed live on 3.10.8 (reference 2.3). Error reasons are compared
byte for byte with the Erlang terms RabbitMQ puts in the WebSocket close reason.
"""

from __future__ import annotations

import pytest

from gateway.stomp import (
    BadEscape,
    Command,
    Frame,
    FrameError,
    FrameParser,
    encode_frame,
    erlang_string,
    escape,
    escape_bytes,
    parse_content_length,
    unescape,
    unescape_bytes,
)


def parse(data: bytes, **limits: object) -> list[Frame]:
    return FrameParser(**limits).feed(data)  # type: ignore[arg-type]


def parse_one(data: bytes, **limits: object) -> Frame:
    frames = parse(data, **limits)
    assert len(frames) == 1, frames
    return frames[0]


def reason_of(data: bytes | list[bytes], **limits: object) -> str:
    parser = FrameParser(**limits)  # type: ignore[arg-type]
    chunks = [data] if isinstance(data, bytes) else data
    with pytest.raises(FrameError) as info:
        for chunk in chunks:
            parser.feed(chunk)
    return info.value.reason


# --------------------------------------------------------------------------- frame_SUITE


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"], ids=["lf", "crlf"])
def test_parse_simple_frame(eol: bytes) -> None:
    data = b"COMMAND" + eol + b"header1:value1" + eol + b"header2:value2" + eol + eol
    frame = parse_one(data + b"Body Content\x00\n")
    assert frame == Frame("COMMAND", {"header1": "value1", "header2": "value2"}, b"Body Content")


def test_parse_command_only() -> None:
    assert parse_one(b"COMMAND\n\n\x00") == Frame("COMMAND", {}, b"")


@pytest.mark.parametrize(
    "noise",
    [b"\n", b"\x00\x00", b"\r\n", b"\n\r\n\x00\n", b"\x00\n" * 50],
    ids=["heartbeat", "empty-frames", "crlf", "mixed", "many"],
)
def test_noise_between_frames_is_ignored(noise: bytes) -> None:
    frames = parse(noise + b"COMMAND\n\n\x00" + noise + b"OTHER\n\n\x00" + noise)
    assert [f.command for f in frames] == ["COMMAND", "OTHER"]


def test_heartbeats_alone_produce_nothing_and_hold_nothing() -> None:
    parser = FrameParser()
    assert parser.feed(b"\n") == []
    assert parser.feed(b"\r\n\n\x00") == []
    assert parser.buffered == 0


def test_carriage_return_not_ignored_interframe() -> None:
    assert reason_of(b"\rCOMMAND\n\n\x00") == r'{unexpected_chars_between_frames,"\rC"}'
    assert reason_of(b"A\n\n\x00\rB\n\n\x00") == r'{unexpected_chars_between_frames,"\rB"}'


def test_carriage_return_split_from_its_lf_between_frames_waits() -> None:
    parser = FrameParser()
    assert parser.feed(b"A\n\n\x00\r") == [Frame("A")]
    assert parser.feed(b"\nB\n\n\x00") == [Frame("B")]


def test_carriage_return_mid_command() -> None:
    assert reason_of(b"COMM\rAND\n\n\x00") == r'{unexpected_chars_in_command,"\rA"}'


def test_carriage_return_end_command() -> None:
    assert reason_of(b"COMMAND\r\r\n\n\x00") == r'{unexpected_chars_in_command,"\r\r"}'


def test_carriage_return_in_command_split_across_feeds() -> None:
    assert reason_of([b"COMM\r", b"AND\n\n\x00"]) == r'{unexpected_chars_in_command,"\rA"}'
    assert parse_one(b"COMMAND\r\n\n\x00") == Frame("COMMAND")
    parser = FrameParser()
    assert parser.feed(b"COMMAND\r") == []
    assert parser.feed(b"\n\r") == []
    assert parser.feed(b"\n\x00") == [Frame("COMMAND")]


def test_unknown_and_lowercase_commands_are_kept_as_is() -> None:
    assert parse_one(b"FOO\n\n\x00").command == "FOO"
    frame = parse_one(b"connect\n\n\x00")
    assert frame.command == "connect"
    assert frame.command != Command.CONNECT
    assert parse_one(b"X\n\n\x00").command == "X"


def test_known_commands_come_out_as_enum_members() -> None:
    for command in Command:
        frame = parse_one(command.value.encode() + b"\n\n\x00")
        assert frame.command is command


def test_command_longer_than_32_bytes_is_fatal() -> None:
    assert parse_one(b"C" * 32 + b"\n\n\x00").command == "C" * 32
    assert reason_of(b"C" * 33 + b"\n\n\x00") == "{command_too_long,32}"
    # ...and an unfinished one is rejected before any LF arrives (no unbounded buffering)
    assert reason_of(b"C" * 33) == "{command_too_long,32}"
    assert reason_of([b"C" * 20, b"C" * 13]) == "{command_too_long,32}"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (b"COMM", b"AND\nheader1:value1\n\n\x00"),
        (b"COMMAND\nheade", b"r1:value1\n\n\x00"),
        (b"COMMAND\nheader1:val", b"ue1\n\n\x00"),
        (b"COMMAND\nheader1:value1\n", b"\n\x00"),
        (b"COMMAND\nheader1:value1\r", b"\n\r\n\x00"),
        (b"COMMAND\nheader1:value1\n\n", b"\x00"),
    ],
    ids=["mid-command", "mid-header-key", "mid-header-value", "mid-eoh", "mid-crlf", "before-nul"],
)
def test_resume_mid_frame(first: bytes, second: bytes) -> None:
    parser = FrameParser()
    assert parser.feed(first) == []
    assert parser.buffered > 0
    assert parser.feed(second) == [Frame("COMMAND", {"header1": "value1"})]
    assert parser.buffered == 0


def test_resume_mid_body() -> None:
    parser = FrameParser()
    assert parser.feed(b"COMMAND\n\nABC") == []
    assert parser.feed(b"DEF\x00") == [Frame("COMMAND", {}, b"ABCDEF")]


def test_no_header_stripping() -> None:
    assert parse_one(b"COMMAND\nheader: foo \n\n\x00").headers == {"header": " foo "}


def test_multiple_headers_first_wins() -> None:
    frame = parse_one(b"COMMAND\nheader:correct\nother:1\nheader:incorrect\n\n\x00")
    assert frame.headers == {"header": "correct", "other": "1"}
    assert list(frame.headers) == ["header", "other"]


def test_header_no_colon() -> None:
    data = b"COMMAND\nhdr1:val1\nhdrerror\nhdr2:val2\n\n\x00"
    assert reason_of(data) == '{header_no_value,"hdrerror"}'


def test_header_no_colon_name_is_unescaped_in_the_reason() -> None:
    assert reason_of(b"COMMAND\nhdr\\nerr\n\n\x00") == r'{header_no_value,"hdr\nerr"}'


def test_no_nested_escapes() -> None:
    frame = parse_one(b"COM\\\\rAND\nhdr\\\\rname:hdr\\\\rval\n\n\x00")
    # the command is never unescaped; names and values are, exactly once
    assert frame == Frame("COM\\\\rAND", {"hdr\\rname": "hdr\\rval"}, b"")


def test_header_name_with_cr() -> None:
    assert reason_of(b"COMMAND\nhead\rer:val\n\n\x00") == r'{unexpected_chars_in_header,"\re"}'


def test_header_value_with_cr() -> None:
    assert reason_of(b"COMMAND\nheader:val\rue\n\n\x00") == r'{unexpected_chars_in_header,"\ru"}'


def test_header_line_starting_with_cr() -> None:
    assert reason_of(b"COMMAND\n\rx:1\n\n\x00") == r'{unexpected_chars_in_header,"\rx"}'


def test_bad_escape_before_stray_cr_is_reported_first() -> None:
    # RabbitMQ reads the line byte by byte: the first problem wins.
    assert reason_of(b"COMMAND\nh:a\\tb\rc\n\n\x00") == r'{bad_escape,"\\t"}'


def test_header_value_with_colon() -> None:
    assert parse_one(b"COMMAND\nheader:val:ue\n\n\x00").headers == {"header": "val:ue"}


def test_empty_header_name_and_value_are_allowed() -> None:
    assert parse_one(b"COMMAND\n:\nk:\n\n\x00").headers == {"": "", "k": ""}


@pytest.mark.parametrize("trailing_lf", [True, False])
def test_headers_escaping_roundtrip(trailing_lf: bool) -> None:
    wire = b"COMMAND\nhead\\r\\c\\ner:\\c\\n\\r\\\\\n\n\x00" + (b"\n" if trailing_lf else b"")
    frame = parse_one(wire)
    assert frame.get("head\r:\ner") == ":\n\r\\"
    assert frame.serialize(trailing_lf=trailing_lf) == wire


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"foo:a\\tb", r'{bad_escape,"\\t"}'),
        (b"fo\\o:bar", r'{bad_escape,"\\o"}'),
        (b"foo:bar\\", r'{bad_escape,"\\\n"}'),
        (b"foo:bar\\\r", r'{bad_escape,"\\\r"}'),
        (b"foo\\:bar", r'{bad_escape,"\\:"}'),
        (b"foo:\\\x00", "{bad_escape,[92,0]}"),
        (b"foo:\\N", r'{bad_escape,"\\N"}'),
    ],
)
def test_bad_escapes_are_fatal(line: bytes, reason: str) -> None:
    assert reason_of(b"SEND\n" + line + b"\n\n\x00") == reason


def test_escapes_decoded_in_connect_frames_too() -> None:
    # RabbitMQ decodes escapes in every frame, CONNECT included ([live] passcode \c -> :)
    frame = parse_one(b"CONNECT\nlogin:guest\npasscode:pa\\css\n\n\x00")
    assert frame.get("passcode") == "pa:ss"
    assert reason_of(b"CONNECT\npasscode:a\\b\n\n\x00") == r'{bad_escape,"\\b"}'


def test_non_utf8_header_bytes_round_trip() -> None:
    frame = parse_one(b"SEND\nk\xff:\xc3\xa9\xfe\n\n\x00")
    assert frame.headers == {"k\udcff": "\u00e9\udcfe"}
    assert frame.serialize() == b"SEND\nk\xff:\xc3\xa9\xfe\n\n\x00\n"


def test_nul_inside_header_value_is_kept() -> None:
    assert parse_one(b"SEND\nk:a\x00b\n\nbody\x00").headers == {"k": "a\x00b"}


# --------------------------------------------------------------------------- chunking


def test_several_frames_in_one_feed() -> None:
    data = b"CONNECT\naccept-version:1.2\n\n\x00\nSUBSCRIBE\nid:0\ndestination:/queue/a\n\n\x00\n"
    frames = parse(data)
    assert frames == [
        Frame(Command.CONNECT, {"accept-version": "1.2"}),
        Frame(Command.SUBSCRIBE, {"id": "0", "destination": "/queue/a"}),
    ]


def test_one_frame_over_many_feeds_byte_by_byte() -> None:
    data = b"SEND\r\ndestination:/queue/a\r\ncontent-length:5\r\n\r\nab\x00cd\x00\r\n"
    parser = FrameParser()
    out: list[Frame] = []
    for i in range(len(data)):
        out += parser.feed(data[i : i + 1])
    assert out == [Frame("SEND", {"destination": "/queue/a", "content-length": "5"}, b"ab\x00cd")]
    assert parser.buffered == 0


def test_next_frame_lets_the_caller_act_between_frames() -> None:
    parser = FrameParser(max_frame_size=64)
    parser.receive_data(b"CONNECT\n\n\x00SEND\n\n" + b"x" * 100 + b"\x00")
    assert parser.next_frame() == Frame("CONNECT")
    parser.max_frame_size = None  # the session lifts the pre-login cap after CONNECT
    assert parser.next_frame() == Frame("SEND", {}, b"x" * 100)
    assert parser.next_frame() is None
    assert list(parser) == []


def test_receive_data_accepts_bytearray_and_memoryview() -> None:
    parser = FrameParser()
    parser.receive_data(bytearray(b"SEND\n\nab"))
    parser.receive_data(memoryview(b"c\x00"))
    assert list(parser) == [Frame("SEND", {}, b"abc")]


# --------------------------------------------------------------------------- content-length


def test_content_length_body_may_hold_nul() -> None:
    frame = parse_one(b"SEND\ncontent-length:5\n\na\x00b\x00c\x00")
    assert frame.body == b"a\x00b\x00c"


def test_content_length_zero() -> None:
    assert parse_one(b"SEND\ncontent-length:0\n\n\x00").body == b""


@pytest.mark.parametrize("value", [" 3", "3 ", "\t3\t", " +3 ", "003"])
def test_content_length_whitespace_and_sign(value: str) -> None:
    assert (
        parse_one(b"SEND\ncontent-length:" + value.encode() + b"\n\na\x00c\x00").body == b"a\x00c"
    )


@pytest.mark.parametrize(("value", "text"), [("-1", "-1"), (" -42 ", "-42"), ("-007", "-7")])
def test_negative_content_length_is_fatal(value: str, text: str) -> None:
    data = b"SEND\ncontent-length:" + value.encode() + b"\n\n\x00"
    assert reason_of(data) == "{invalid_content_length," + text + "}"


@pytest.mark.parametrize("value", ["abc", "", "1.5", "0x10", "1_0", "\u0661\u0662", "3a", "- 3"])
def test_non_numeric_content_length_falls_back_to_nul(value: str) -> None:
    data = b"SEND\ncontent-length:" + value.encode() + b"\n\nab\x00cd\x00"
    frame = parse_one(data)
    assert frame.body == b"ab"
    assert frame.get("content-length") == value


def test_missing_nul_after_content_length_body() -> None:
    assert reason_of(b"SEND\ncontent-length:2\n\nabc\x00") == "missing_body_terminator"
    assert reason_of([b"SEND\ncontent-length:2\n\nab", b"c"]) == "missing_body_terminator"


def test_content_length_honoured_only_for_configured_commands() -> None:
    only_send = frozenset({"SEND"})
    data = b"MESSAGE\ncontent-length:3\n\na\x00b\x00"
    frames = parse(data, content_length_commands=only_send)
    assert [f.body for f in frames] == [b"a"]  # and "b\0" is the start of a garbage frame
    assert parse_one(data).body == b"a\x00b"
    # a negative content-length on a command that ignores it is no error either
    assert parse_one(b"ACK\ncontent-length:-1\n\n\x00", content_length_commands=only_send)
    assert parse_one(b"SEND\ncontent-length:1\n\n\x00\x00", content_length_commands=only_send)


def test_huge_content_length_is_a_body_limit_error_not_a_crash() -> None:
    assert reason_of(b"SEND\ncontent-length:" + b"9" * 5000 + b"\n\n\x00").startswith(
        "{max_body_length,9999"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12", (12, "12")),
        ("  +0012\t", (12, "12")),
        ("-0", (0, "0")),
        ("-5", (-5, "-5")),
        ("x", None),
        ("\u0663", None),
        ("1e3", None),
        ("", None),
    ],
)
def test_parse_content_length(value: str, expected: tuple[int, str] | None) -> None:
    assert parse_content_length(value) == expected


# --------------------------------------------------------------------------- limits


def test_max_headers() -> None:
    def frame(n: int) -> bytes:
        return b"SEND\n" + b"".join(b"h%d:v\n" % i for i in range(n)) + b"\n\x00"

    assert len(parse_one(frame(3), max_headers=3).headers) == 3
    assert reason_of(frame(4), max_headers=3) == "{max_headers,3}"
    data = frame(4)
    assert reason_of([data[i : i + 1] for i in range(len(data))], max_headers=3) == (
        "{max_headers,3}"
    )


def test_duplicate_headers_do_not_count_toward_max_headers() -> None:
    data = b"SEND\na:1\nb:2\na:3\nb:4\na:5\n\n\x00"
    assert parse_one(data, max_headers=2).headers == {"a": "1", "b": "2"}


def test_max_header_length_applies_to_names_and_values() -> None:
    assert parse_one(b"SEND\nabcd:1234\n\n\x00", max_header_length=4)
    assert reason_of(b"SEND\nabcde:1\n\n\x00", max_header_length=4) == "{max_header_length,4}"
    assert reason_of(b"SEND\na:12345\n\n\x00", max_header_length=4) == "{max_header_length,4}"


def test_max_header_length_counts_decoded_bytes() -> None:
    # four escapes decode to four bytes: within a limit of 4
    assert parse_one(b"SEND\nk:\\n\\c\\r\\\\\n\n\x00", max_header_length=4).headers == {
        "k": "\n:\r\\"
    }
    assert parse_one("SEND\nk:\u00e9\u00e9\n\n\x00".encode(), max_header_length=4)
    assert reason_of("SEND\nk:\u00e9\u00e9\u00e9\n\n\x00".encode(), max_header_length=4) == (
        "{max_header_length,4}"
    )


def test_unfinished_header_line_over_the_limit_is_rejected_early() -> None:
    parser = FrameParser(max_header_length=10)
    parser.feed(b"SEND\nname:")
    with pytest.raises(FrameError) as info:
        parser.feed(b"x" * 11)  # no LF yet
    assert info.value.reason == "{max_header_length,10}"
    assert reason_of([b"SEND\n", b"n" * 11], max_header_length=10) == "{max_header_length,10}"
    # an escape-heavy value may legitimately be up to twice as long on the wire
    parser = FrameParser(max_header_length=10)
    assert parser.feed(b"SEND\nk:" + b"\\n" * 10) == []
    assert parser.feed(b"\n\n\x00") == [Frame("SEND", {"k": "\n" * 10})]


def test_max_body_length() -> None:
    assert parse_one(b"SEND\n\n12345\x00", max_body_length=5).body == b"12345"
    assert reason_of(b"SEND\n\n123456\x00", max_body_length=5) == "{max_body_length,unknown}"
    assert reason_of(b"SEND\n\n123456", max_body_length=5) == "{max_body_length,unknown}"
    # a declared content-length is checked before any body byte arrives
    assert reason_of(b"SEND\ncontent-length:6\n\n", max_body_length=5) == "{max_body_length,6}"
    assert parse_one(b"SEND\ncontent-length:5\n\n1\x0034\x00\x00", max_body_length=5)


def test_max_frame_size_on_a_frame_split_across_feeds() -> None:
    frame = b"SEND\ndestination:/queue/a\n\n" + b"x" * 100 + b"\x00"
    size = len(frame)
    assert parse_one(frame, max_frame_size=size).body == b"x" * 100
    assert reason_of(frame, max_frame_size=size - 1) == f"{{frame_too_big,{{{size},{size - 1}}}}}"
    # split over many messages: rejected as soon as the held bytes pass the cap
    parser = FrameParser(max_frame_size=64)
    assert parser.feed(frame[:40]) == []
    with pytest.raises(FrameError) as info:
        parser.feed(frame[40:70])
    assert info.value.reason == "{frame_too_big,{70,64}}"
    assert info.value.kind == "frame_too_big"


def test_max_frame_size_counts_consumed_header_lines() -> None:
    parser = FrameParser(max_frame_size=30)
    assert parser.feed(b"SEND\nh0:123456\n") == []
    assert parser.feed(b"h1:123456\n") == []
    assert parser.buffered == 25  # decoded header lines still count toward the frame
    with pytest.raises(FrameError) as info:
        parser.feed(b"h2:123456\n")
    assert info.value.reason == "{frame_too_big,{35,30}}"


def test_max_frame_size_with_content_length_is_checked_up_front() -> None:
    head = b"SEND\ncontent-length:1000\n\n"
    assert reason_of(head, max_frame_size=500) == f"{{frame_too_big,{{{len(head) + 1001},500}}}}"


def test_max_frame_size_excludes_noise_and_applies_per_frame() -> None:
    one = b"SEND\n\nabc\x00"
    frames = parse(b"\n\n\n" + one + b"\n\n\n" + one + b"\n", max_frame_size=len(one))
    assert len(frames) == 2


def test_buffer_never_exceeds_max_frame_size() -> None:
    parser = FrameParser(max_frame_size=100)
    with pytest.raises(FrameError):
        for _ in range(1000):
            parser.feed(b"SEND\n" if parser.buffered == 0 else b"a:b\n")
            assert parser.buffered <= 100


# --------------------------------------------------------------------------- failure state


def test_parser_is_dead_after_an_error() -> None:
    parser = FrameParser()
    with pytest.raises(FrameError) as first:
        parser.feed(b"CONNECT\n\n\x00SEND\nbad\n\n\x00RECEIPT\n\n\x00")
    assert first.value.reason == '{header_no_value,"bad"}'
    assert first.value.frames == [Frame("CONNECT")]  # completed before the error
    assert parser.error is first.value
    assert parser.buffered == 0
    with pytest.raises(FrameError) as again:
        parser.feed(b"SEND\n\n\x00")
    assert again.value.reason == first.value.reason
    assert again.value.frames == []
    with pytest.raises(FrameError):
        parser.next_frame()


def test_frame_error_attributes() -> None:
    error = FrameError('{bad_escape,"\\\\t"}')
    assert error.kind == "bad_escape"
    assert str(error) == error.reason
    assert FrameError("missing_body_terminator").kind == "missing_body_terminator"


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"\\t", r'"\\t"'),
        (b"\ro", r'"\ro"'),
        (b'a"b', r'"a\"b"'),
        (b"\\\x00", "[92,0]"),
        (b"", "[]"),
        (b"\xe9\t\x1b", '"\u00e9\\t\\e"'),
    ],
)
def test_erlang_string(data: bytes, text: str) -> None:
    assert erlang_string(data) == text


# --------------------------------------------------------------------------- serializer


def test_serializer_is_byte_exact() -> None:
    wire = encode_frame("MESSAGE", [("destination", "/queue/a"), ("x-custom", "v:1")], b"hi")
    assert wire == b"MESSAGE\ndestination:/queue/a\nx-custom:v\\c1\ncontent-length:2\n\nhi\x00\n"


def test_empty_body_has_no_content_length() -> None:
    assert encode_frame("RECEIPT", {"receipt-id": "77"}) == b"RECEIPT\nreceipt-id:77\n\n\x00\n"
    assert encode_frame("RECEIPT", {"receipt-id": "7", "content-length": "9"}) == (
        b"RECEIPT\nreceipt-id:7\n\n\x00\n"
    )


def test_stored_content_length_is_dropped_and_recomputed_last() -> None:
    headers = {"content-length": "999", "message": "x", "content-type": "text/plain"}
    assert encode_frame("ERROR", headers, b"abc", trailing_lf=False) == (
        b"ERROR\nmessage:x\ncontent-type:text/plain\ncontent-length:3\n\nabc\x00"
    )


def test_serializer_escapes_names_and_values_in_every_frame() -> None:
    wire = encode_frame("CONNECTED", [("a:b", "c\\d\ne\rf")])
    assert wire == b"CONNECTED\na\\cb:c\\\\d\\ne\\rf\n\n\x00\n"


def test_serializer_keeps_order_and_repeats_of_pairs() -> None:
    assert encode_frame("X", [("a", "1"), ("a", "2")]) == b"X\na:1\na:2\n\n\x00\n"


def test_frame_serialize_and_get() -> None:
    frame = Frame(Command.SEND, {"destination": "/topic/t"}, b"\x00\\")
    assert frame.get("destination") == "/topic/t"
    assert frame.get("missing") is None
    assert frame.get("missing", "d") == "d"
    wire = frame.serialize()
    assert wire == b"SEND\ndestination:/topic/t\ncontent-length:2\n\n\x00\\\x00\n"
    assert parse_one(wire) == Frame(
        "SEND", {"destination": "/topic/t", "content-length": "2"}, b"\x00\\"
    )


def test_frame_is_frozen() -> None:
    frame = Frame("SEND")
    with pytest.raises(AttributeError):
        frame.command = "ACK"  # type: ignore[misc]


# --------------------------------------------------------------------------- escaping


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain", "plain"),
        ("a:b", "a\\cb"),
        ("\\", "\\\\"),
        ("\n\r", "\\n\\r"),
        ("\\n", "\\\\n"),
        ("\u00e9:\u20ac", "\u00e9\\c\u20ac"),
    ],
)
def test_escape_and_unescape(raw: str, escaped: str) -> None:
    assert escape(raw) == escaped
    assert unescape(escaped) == raw
    assert escape_bytes(raw.encode()) == escaped.encode()
    assert unescape_bytes(escaped.encode()) == raw.encode()


def test_escape_fast_path_returns_the_same_object() -> None:
    text = "no-specials-here"
    assert escape(text) is text
    assert unescape(text) is text


@pytest.mark.parametrize(("bad", "code"), [("\\t", "t"), ("ab\\", None), ("\\\n", "\n")])
def test_unescape_rejects_unknown_sequences(bad: str, code: str | None) -> None:
    with pytest.raises(BadEscape) as info:
        unescape(bad)
    assert info.value.code == code
    with pytest.raises(BadEscape):
        unescape_bytes(bad.encode())
