"""Inputs the fuzzers (fuzz/) found to break the session, kept as regression tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.session import Session
from gateway.settings import load_settings
from gateway.stomp import FrameParser

from .fake_broker import FakeBroker
from .test_session import FakeTransport

CORPUS = Path(__file__).resolve().parents[2] / "fuzz" / "corpus" / "session"


async def test_error_quoting_non_utf8_destination_is_sent() -> None:
    # The ERROR body quotes the destination; a non-UTF-8 byte in it used to crash
    # the encoder (fuzz_session, "regression-non-utf8-destination").
    transport = FakeTransport()
    session = Session(load_settings(login_timeout=0), FakeBroker(), transport, client_host="127.0.0.1", peer="x")
    await session.data_received(b"CONNECT\n\n\x00SEND\ndestination:/q\x84eue/a\n\nhi\x00")
    connected, error = transport.frames()
    assert connected.command == "CONNECTED"
    assert error.headers["message"] == "Unknown destination"
    assert error.body.startswith(b"'/q\x84eue/a' is not a valid destination.\n")


@pytest.mark.parametrize("seed", sorted(p.name for p in CORPUS.iterdir()))
async def test_fuzz_seeds_run_clean(seed: str) -> None:
    transport = FakeTransport()
    session = Session(load_settings(login_timeout=0), FakeBroker(), transport, client_host="127.0.0.1", peer="x")
    await session.data_received(b"CONNECT\n\n\x00" + (CORPUS / seed).read_bytes()[1:])
    await session.connection_lost()
    assert FrameParser().feed(bytes(transport.out))  # everything sent parses back
