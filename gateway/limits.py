"""Connection limits: at most ``max_connections`` clients at once, and at most
``max_connections_per_ip`` from one client address (0 = no limit).

Every listener (WebSocket, wss, TCP, TLS) asks ``ConnectionLimiter.acquire`` once the
client's address is known (after a PROXY header or a trusted X-Forwarded-For) and
calls ``release`` exactly once when the connection ends. A refused client gets the
ERROR RabbitMQ main sends at its node limit (``message:Bad CONNECT``, body
``Connection refused: node connection limit reached``; per address: ``... per-address
connection limit reached``) and is closed (WebSocket 1013 "Try Again Later").

Every limit breach, of these or of the per-session limits, is counted in
``stomp_gateway_limit_breaches_total{limit=...}``.
"""

from __future__ import annotations

from .errors import ConnectError, StompError
from .metrics import METRICS
from .settings import Settings

__all__ = [
    "CLOSE_POLICY_VIOLATION",
    "CLOSE_TRY_AGAIN_LATER",
    "ConnectionLimiter",
    "LimitExceeded",
    "breach",
]

CLOSE_POLICY_VIOLATION = 1008
CLOSE_TRY_AGAIN_LATER = 1013


class LimitExceeded(StompError):
    """A per-session limit (max_subscriptions): ERROR, then close 1008."""

    fatal = True
    close_code = CLOSE_POLICY_VIOLATION


def breach(limit: str) -> None:
    """Count one breach of ``limit`` (the setting's name)."""
    METRICS.limit_breaches.inc(limit)


class ConnectionLimiter:
    def __init__(self, settings: Settings) -> None:
        self.max_total = settings.max_connections
        self.max_per_ip = settings.max_connections_per_ip
        self.total = 0
        self.per_ip: dict[str, int] = {}

    def acquire(self, host: str) -> StompError | None:
        """Count a new connection from ``host``; the ERROR to send if it is refused."""
        if self.max_total and self.total >= self.max_total:
            breach("max_connections")
            return ConnectError("Bad CONNECT", "Connection refused: node connection limit reached")
        if self.max_per_ip and self.per_ip.get(host, 0) >= self.max_per_ip:
            breach("max_connections_per_ip")
            return ConnectError(
                "Bad CONNECT", "Connection refused: per-address connection limit reached"
            )
        self.total += 1
        self.per_ip[host] = self.per_ip.get(host, 0) + 1
        return None

    def release(self, host: str) -> None:
        self.total -= 1
        left = self.per_ip.get(host, 0) - 1
        if left > 0:
            self.per_ip[host] = left
        else:
            self.per_ip.pop(host, None)
