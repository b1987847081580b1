"""A small STOMP-over-TCP (and TLS) client for tests, with the API of
:class:`tests.support.wsclient.StompWs`, so a scenario can run over either transport.

Like the WebSocket client it shares no code with ``gateway.stomp``: it reuses the test
framing of ``wsclient`` (``encode_frame``, ``FrameParser``) on a byte stream.

* ``send_raw`` writes bytes as they are (there are no message boundaries on TCP);
  ``send_frame`` encodes one frame; ``send_split`` writes it in several ``send`` calls
  with a drain and a loop turn between them (separate TCP segments in practice).
* Inbound: EOLs between frames are heart-beats (``heartbeats_received``), except the
  one LF that directly follows a frame's NUL (the server's trailing LF, which
  rabbitmq_stomp and the gateway send by default): it belongs to that frame.
  ``raw_messages`` mirrors the WebSocket client's list of messages: one entry per frame
  (its bytes plus its trailing LF) and one per heart-beat EOL, in arrival order.
* ``recv_close`` waits for EOF and returns ``(None, "")``: TCP has no close code or
  reason. ``close_code`` / ``close_reason`` are therefore always None.
* ``is_open`` waits ``timeout`` seconds for an EOF (there is no ping on TCP) without
  sending anything; frames that arrive meanwhile are kept for ``recv_frame``.
"""

# the helpers take per-call timeouts by design (recv_frame(timeout=5) ...)
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections import deque
from typing import Any

from tests.support.wsclient import (
    Frame,
    FrameParser,
    HeadersLike,
    StompCommands,
    StompWsClosed,
    encode_frame,
)

READ_SIZE = 65536


class StreamParser(FrameParser):
    """``FrameParser`` for a byte stream: counts heart-beat EOLs, keeps frame bytes."""

    def __init__(self, trailing_lf: bool = True) -> None:
        super().__init__()
        self.trailing_lf = trailing_lf
        self.heartbeats = 0
        self.pieces: list[bytes] = []  # frames (with their trailing LF) and heart-beats
        self._after_frame = False  # the next LF is the previous frame's trailing LF

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while True:
            self._skip_eols()
            if not self._buf:
                return frames
            frame = self._parse_one()
            if frame is None:
                return frames
            frames.append(frame)
            self.pieces.append(frame.raw)
            self._after_frame = self.trailing_lf

    def _skip_eols(self) -> None:
        buf = self._buf
        i = 0
        while i < len(buf):
            byte = buf[i]
            if byte == 0x0A:
                if self._after_frame:
                    self.pieces[-1] += b"\n"
                else:
                    self.heartbeats += 1
                    self.pieces.append(b"\n")
                self._after_frame = False
            elif byte == 0x0D and i + 1 < len(buf) and buf[i + 1] == 0x0A:
                pass  # CR LF heart-beat: counted on its LF
            elif byte == 0x0D and i + 1 == len(buf):
                break  # wait for the LF
            else:
                break
            i += 1
        if i:
            del buf[:i]
        if buf and buf[0] != 0x0D:
            self._after_frame = False


class StompTcp(StompCommands):
    """One TCP (or TLS) connection speaking STOMP; see the module docstring."""

    transport = "tcp"

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, trailing_lf: bool = True
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = StreamParser(trailing_lf)
        self.received = bytearray()  # every byte received, in order
        self.messages_received = 0  # reads that returned data
        self.drained_frames: list[Frame] = []
        self.connected: Frame | None = None
        self.eof = False
        self._frames: deque[Frame] = deque()
        self._read_task: asyncio.Task[bytes] | None = None

    # -- info ------------------------------------------------------------------------------
    @property
    def heartbeats_received(self) -> int:
        return self.parser.heartbeats

    @property
    def raw_messages(self) -> list[bytes]:
        return self.parser.pieces

    @property
    def session(self) -> str:
        assert self.connected is not None, "not connected"
        value = self.connected.header("session")
        assert value is not None, "CONNECTED without session header"
        return value

    @property
    def close_code(self) -> int | None:
        return None

    @property
    def close_reason(self) -> str | None:
        return None

    @property
    def peer_certificate(self) -> Any:
        sslobj = self.writer.get_extra_info("ssl_object")
        return None if sslobj is None else sslobj.getpeercert()

    # -- sending ---------------------------------------------------------------------------
    async def send_raw(self, data: bytes | str, binary: bool = False) -> None:
        """Write ``data`` (``binary`` is accepted for API parity and ignored)."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.writer.write(data)
        await self.writer.drain()

    async def send_frame(
        self,
        command: str,
        headers: HeadersLike | None = None,
        body: bytes | str = b"",
        *,
        raw: bool | None = None,
        content_length: bool = False,
        binary: bool = False,
    ) -> bytes:
        data = encode_frame(command, headers, body, raw=raw, content_length=content_length)
        await self.send_raw(data)
        return data

    async def send_split(self, data: bytes, parts: int, binary: bool = False) -> None:
        step = max(1, -(-len(data) // parts))
        for i in range(0, len(data), step):
            await self.send_raw(data[i : i + step])
            await asyncio.sleep(0)  # let the other side read this piece on its own

    # -- receiving -------------------------------------------------------------------------
    async def _read(self) -> None:
        """One read; raises EOFError at the end of the stream."""
        if self.eof:
            raise EOFError
        if self._read_task is None:
            self._read_task = asyncio.ensure_future(self.reader.read(READ_SIZE))
        try:
            data = await asyncio.shield(self._read_task)
        except (ConnectionError, ssl.SSLError):
            data = b""
        finally:
            if self._read_task is not None and self._read_task.done():
                self._read_task = None
        if not data:
            # Like telnet, PHP's Stomp or stomp.py: the server ended the stream, close ours.
            self.eof = True
            self.writer.close()
            raise EOFError
        self.messages_received += 1
        self.received += data
        self._frames.extend(self.parser.feed(data))

    async def recv_frame(self, timeout: float = 5) -> Frame:
        """The next frame; raises TimeoutError, or StompWsClosed (code None) at EOF."""
        async with asyncio.timeout(timeout):
            while not self._frames:
                try:
                    await self._read()
                except EOFError:
                    raise StompWsClosed(None, "", list(self._frames)) from None
            return self._frames.popleft()

    async def recv_close(self, timeout: float = 5) -> tuple[int | None, str]:
        """Wait for EOF; returns ``(None, "")``. Unread frames go to ``drained_frames``."""
        async with asyncio.timeout(timeout):
            while True:
                try:
                    await self._read()
                except EOFError:
                    break
        self.drained_frames.extend(self._frames)
        self._frames.clear()
        return None, ""

    async def is_open(self, timeout: float = 0.3) -> bool:
        """True unless the server ends the stream within ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self._read()
        except TimeoutError:
            return True
        except EOFError:
            return False

    # -- STOMP helpers (same as StompWs) ---------------------------------------------------
    async def disconnect(self, receipt: str | None = None) -> None:
        headers = [("receipt", receipt)] if receipt else []
        with contextlib.suppress(ConnectionError):
            await self.send_frame("DISCONNECT", headers)

    async def close(self) -> None:
        if self._read_task is not None:
            self._read_task.cancel()
            with contextlib.suppress(BaseException):
                await self._read_task
            self._read_task = None
        self.writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await self.writer.wait_closed()

    async def __aenter__(self) -> StompTcp:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def connect_tcp(
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    trailing_lf: bool = True,
    rcvbuf: int | None = None,
    timeout: float = 10,
) -> StompTcp:
    """Open a TCP (TLS with ``ssl_context``) connection to ``host:port``.

    ``rcvbuf`` shrinks the socket's receive buffer and the stream's buffer, so that a
    client that does not call ``recv_frame`` really stops reading (the server's writes
    then back up)."""
    async with asyncio.timeout(timeout):
        if rcvbuf is None:
            reader, writer = await asyncio.open_connection(
                host,
                port,
                ssl=ssl_context,
                server_hostname=server_hostname if ssl_context is not None else None,
                limit=2**24,
            )
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (host, port))
            reader, writer = await asyncio.open_connection(
                sock=sock,
                ssl=ssl_context,
                server_hostname=server_hostname if ssl_context is not None else None,
                limit=rcvbuf,  # the stream buffer stops reading past 2 * limit
            )
    return StompTcp(reader, writer, trailing_lf)
