"""One exception tree for everything that ends up as a STOMP ERROR frame.

Each error carries the short ``message`` header RabbitMQ's STOMP plugin uses and the
body it sends, plus whether the session ends after the ERROR (``fatal``). The session
turns any ``StompError`` into exactly one ERROR frame; anything else becomes
``ProcessingError`` so that internals never leak to a client.

    StompError
    ├── ProtocolError        a frame the session cannot act on (headers, commands)
    ├── DestinationError     Invalid destination / Unknown destination
    ├── ConnectError         Bad CONNECT (credentials, vhost, loopback) and friends
    ├── BrokerError          an AMQP channel or connection error (fatal: session dies)
    └── ProcessingError      bad integers/booleans, anything unexpected
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .broker.base import ChannelClosed


class StompError(Exception):
    """An error that is reported to the client as one ERROR frame."""

    fatal: bool = False

    def __init__(
        self,
        message: str,
        body: str = "",
        *,
        fatal: bool | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, body)
        self.message = message
        self.body = body
        if fatal is not None:
            self.fatal = fatal
        self.headers: dict[str, str] = headers or {}

    def __str__(self) -> str:
        return f"{self.message}: {self.body.strip()}" if self.body else self.message


class ProtocolError(StompError):
    """Missing/forbidden headers, unknown commands, frames in the wrong state."""


class DestinationError(StompError):
    """A destination that does not parse ("Invalid destination" / "Unknown destination")."""


class ConnectError(StompError):
    """CONNECT refused: bad credentials, unknown vhost, loopback-only user."""


class BrokerError(StompError):
    """The broker closed the channel or connection: the session cannot go on."""

    fatal = True


class ProcessingError(StompError):
    """RabbitMQ's catch-all: bad integers or booleans, unexpected failures."""

    def __init__(self, body: str = "Processing error", *, fatal: bool | None = None) -> None:
        super().__init__("Processing error", body, fatal=fatal)


def broker_error(exc: ChannelClosed) -> BrokerError:
    """An AMQP close -> ERROR as RabbitMQ words it: message ``not_found``, body the text."""
    name = exc.text.split(" - ", 1)[0].strip().lower() or "internal_error"
    return BrokerError(name, exc.text)
