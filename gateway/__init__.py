"""stomp-gateway: STOMP over WebSocket (and TCP) to RabbitMQ over AMQP 0-9-1."""

from __future__ import annotations

__version__ = "0.1.0"
