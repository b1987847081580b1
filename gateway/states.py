"""What every part of a session shares: its states, its transport, its close codes, and
``SessionPart``, the base of the mixins ``Session`` is made of."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .broker.base import BrokerChannel
    from .errors import StompError
    from .settings import Settings
    from .stomp import Frame
    from .subscribing import Subscription


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


class SessionPart:
    """The base of ``Session``'s mixins (``gateway.publishing``, ``gateway.subscribing``,
    ``gateway.heartbeats``): the state and the methods of ``Session`` they use, declared
    for the type checker; ``Session`` has them all."""

    # The slots are Session's; an empty __slots__ here adds no instance dict. (Hidden
    # from mypy, which would otherwise refuse assignments to Session's slots here.)
    if not TYPE_CHECKING:
        __slots__ = ()

    settings: Settings
    state: State
    transport: Transport
    subscriptions: dict[str, Subscription]
    declared_queues: set[str]

    def _channel(self) -> BrokerChannel:
        raise NotImplementedError

    def _check_rule(self, action: str, destination: str, frame: Frame) -> None:
        raise NotImplementedError

    def _fail(self, err: StompError, code: int = CLOSE_NORMAL, reason: str = STOMP_DIED) -> None:
        raise NotImplementedError

    def _shutdown(self, code: int, reason: str, *, why: str) -> None:
        raise NotImplementedError

    def _send(self, command: str, headers: list[tuple[str, str]], body: bytes = b"") -> None:
        raise NotImplementedError

    def _receipt(self, frame: Frame) -> None:
        raise NotImplementedError

    def _write(self, data: bytes) -> None:
        raise NotImplementedError
