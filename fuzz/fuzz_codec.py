"""Fuzz the STOMP codec: arbitrary bytes, fed in arbitrary chunks.

Allowed: ``FrameError`` (the documented way a parser refuses input). Anything else is a
bug. Every frame the parser returns must also survive serialize -> parse unchanged, and
no frame may break the limits the parser was built with.

    .venv/bin/python fuzz/fuzz_codec.py -max_total_time=60 fuzz/corpus/codec
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from gateway.stomp import FrameError, FrameParser

LIMITS = {"max_headers": 8, "max_header_length": 64, "max_body_length": 256, "max_frame_size": 512}


def check(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    cuts = sorted({fdp.ConsumeIntInRange(0, 512) for _ in range(fdp.ConsumeIntInRange(0, 6))})
    stream = fdp.ConsumeBytes(fdp.remaining_bytes())
    parser = FrameParser(**LIMITS)  # type: ignore[arg-type]
    frames = []
    try:
        for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
            frames += parser.feed(stream[a:b])
    except FrameError as exc:
        frames += exc.frames
    for frame in frames:
        assert len(frame.headers) <= LIMITS["max_headers"]
        assert len(frame.body) <= LIMITS["max_body_length"]
        [again] = FrameParser().feed(frame.serialize())
        assert (again.command, again.body) == (frame.command, frame.body), (frame, again)
        assert without_length(again.headers) == without_length(frame.headers), (frame, again)


def without_length(headers: dict[str, str]) -> dict[str, str]:
    # serialize() recomputes content-length; every other header must come back as it was
    return {k: v for k, v in headers.items() if k != "content-length"}


def main() -> None:
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
