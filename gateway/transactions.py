"""STOMP transactions (BEGIN / COMMIT / ABORT), emulated as RabbitMQ does it.

How it works. RabbitMQ's STOMP plugin does not use AMQP tx: BEGIN opens an empty
list of actions, a SEND/ACK/NACK that names the transaction is checked and
prepared at once (destination, declares, properties, ack header) and appended as
an action, COMMIT replays the actions in order, ABORT drops them. This module
keeps the lists; the session prepares and runs the actions.

Rules (RabbitMQ main ``rabbit_stomp_processor``, the newest behaviour):

* At most ``max_transactions`` (setting, default ``MAX_TRANSACTIONS`` = 16) open
  transactions per session: BEGIN beyond that is "Transaction limit exceeded" (not
  fatal, as in main). 3.10.8 had no limit.
* At most ``MAX_TRANSACTION_ACTIONS`` (1024) actions per transaction: the next
  one is "Transaction too large". 3.10.8 had no limit.
* BEGIN of an id that is already open silently starts it again, empty (3.10.8 and
  main), but still counts against the limit.
* COMMIT/ABORT/SEND/ACK/NACK naming an unknown id: "Bad transaction" with
  ``Invalid transaction identifier: "<id>"`` (3.10.8's text; main prints the id
  as an Erlang binary).
* COMMIT is not atomic: each action runs in turn; one that fails gets its own
  ERROR and, unless that ERROR ends the session, the rest still run.
"""

from __future__ import annotations

from dataclasses import dataclass

from .broker.base import Properties
from .errors import ProtocolError
from .metrics import METRICS

__all__ = [
    "MAX_TRANSACTIONS",
    "MAX_TRANSACTION_ACTIONS",
    "Action",
    "PublishAction",
    "SettleAction",
    "Transactions",
]

MAX_TRANSACTIONS = 16
MAX_TRANSACTION_ACTIONS = 1024


@dataclass(frozen=True, slots=True)
class PublishAction:
    """A SEND, checked and ready to publish."""

    exchange: str
    routing_key: str
    body: bytes
    properties: Properties
    receipt: str | None  # sent once the broker confirms the publish


@dataclass(frozen=True, slots=True)
class SettleAction:
    """An ACK or NACK whose header was valid."""

    consumer_tag: str
    delivery_tag: int
    nack: bool
    requeue: bool


Action = PublishAction | SettleAction


def bad_transaction(tx: str) -> ProtocolError:
    return ProtocolError("Bad transaction", f'Invalid transaction identifier: "{tx}"\n')


class Transactions:
    """The open transactions of one session."""

    __slots__ = ("_open", "limit")

    def __init__(self, limit: int = MAX_TRANSACTIONS) -> None:
        self._open: dict[str, list[Action]] = {}
        self.limit = limit  # the max_transactions setting

    def __len__(self) -> int:
        return len(self._open)

    def begin(self, tx: str) -> None:
        if len(self._open) >= self.limit:
            METRICS.limit_breaches.inc("max_transactions")
            raise ProtocolError(
                "Transaction limit exceeded",
                f"Too many concurrent transactions (limit {self.limit})",
            )
        self._open[tx] = []

    def add(self, tx: str, action: Action) -> None:
        actions = self._open.get(tx)
        if actions is None:
            raise bad_transaction(tx)
        if len(actions) >= MAX_TRANSACTION_ACTIONS:
            raise ProtocolError(
                "Transaction too large",
                f"Too many actions in transaction (limit {MAX_TRANSACTION_ACTIONS})",
            )
        actions.append(action)

    def commit(self, tx: str) -> list[Action]:
        """Close the transaction and return its actions, oldest first."""
        actions = self._open.pop(tx, None)
        if actions is None:
            raise bad_transaction(tx)
        return actions

    def abort(self, tx: str) -> None:
        if self._open.pop(tx, None) is None:
            raise bad_transaction(tx)
