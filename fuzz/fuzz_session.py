"""Fuzz a Session fed arbitrary bytes, against the in-memory broker of the unit tests.

Allowed: nothing escapes ``Session.data_received``; every bad input must become an
ERROR frame or a close. A frame handler that fails with an unexpected exception (the
session logs "frame handling failed" and answers "Processing error") is a bug too, so
the harness turns that log call into a crash.

    .venv/bin/python fuzz/fuzz_session.py -max_total_time=60 fuzz/corpus/session
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports():
    import gateway.session as session_module
    from gateway.session import Session
    from gateway.settings import load_settings
    from gateway.stomp import FrameParser
    from tests.unit.fake_broker import FakeBroker

SETTINGS = load_settings(login_timeout=0)
PREFIX = b"CONNECT\naccept-version:1.0,1.1,1.2\n\n\x00"


class Crash(Exception):
    pass


class Log:
    def exception(self, event: str, **kw: object) -> None:
        raise Crash(event, kw)

    def info(self, *_a: object, **_kw: object) -> None:
        return None


session_module.log = Log()  # type: ignore[assignment]


class Transport:
    def __init__(self) -> None:
        self.out = bytearray()
        self.closed = False

    def send_frame(self, data: bytes) -> None:
        assert not self.closed or data, "nothing is written after close"
        self.out += data

    async def close(self, code: int, reason: str) -> None:
        assert len(reason.encode()) <= 123
        self.closed = True


async def run(chunks: list[bytes]) -> None:
    transport = Transport()
    session = Session(SETTINGS, FakeBroker(), transport, client_host="127.0.0.1", peer="f")
    for chunk in chunks:
        await session.data_received(chunk)
    for channel in session.broker.channels:  # type: ignore[attr-defined]
        if channel.on_delivery is not None and session.subscriptions:
            tag = next(iter(session.subscriptions))
            channel.deliver(tag, 1, b"payload")
    await session.connection_lost()
    FrameParser().feed(bytes(transport.out))  # what we sent must parse


def check(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    connect_first = fdp.ConsumeBool()
    parts = [fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 64)) for _ in range(fdp.ConsumeIntInRange(1, 8))]
    chunks = ([PREFIX] if connect_first else []) + [p for p in parts if p]
    asyncio.run(run(chunks))


def main() -> None:
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
