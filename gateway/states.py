"""What every part of a session shares: its states, its transport, its close codes."""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol


class State(StrEnum):
    AWAITING_CONNECT = "awaiting-connect"
    CONNECTED = "connected"
    CLOSED = "closed"


class Transport(Protocol):
    """What a session needs from the connection it runs on."""

    def send_frame(self, data: bytes) -> None:
        """Queue one outbound STOMP frame (or heart-beat EOL); never blocks."""

    async def close(self, code: int, reason: str) -> None:
        """Flush queued frames, then close with ``code``/``reason``."""


CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_INVALID_DATA = 1007
MAX_CLOSE_REASON = 123  # RFC 6455: a close reason fits in 123 bytes
STOMP_DIED = "STOMP died"  # RabbitMQ's close reason for every session end
