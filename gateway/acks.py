"""Client acknowledgements: which deliveries a session may still ACK or NACK.

How it works. Every MESSAGE sent for a ``client`` or ``client-individual``
subscription is recorded as pending under its delivery tag, with the consumer tag
it was delivered for and whether that subscription acks cumulatively (``client``).
An ACK/NACK names ``<consumer tag>@@<session id>@@<delivery tag>``; ``settle``
finds that exact delivery and says what to send to the broker:

* ``client-individual``: only that delivery (basic.ack/nack, multiple=false).
* ``client``: that delivery *and every older pending one*, across all
  subscriptions of the session (basic.ack/nack, multiple=true). This is what
  AMQP's cumulative ack does on the one channel a session has, and RabbitMQ main
  keeps it on purpose (system_SUITE ``multiack_prune_is_connection_wide``).

Invariants, as in RabbitMQ main's ``rabbit_stomp_processor:collect_acks/3`` (the
newest behaviour; 3.10.8 sent any tag to the broker and the channel died on an
unknown one):

* The pending set equals the broker channel's unacked set: ``auto`` deliveries are
  never pending, and a multiple ack removes exactly the tags the broker acks.
* The ack mode is the one the delivery was made with, so a subscription id reused
  with another mode after UNSUBSCRIBE does not change older deliveries
  (``reused_subscription_id_keeps_ack_mode``), and deliveries stay settleable after
  their subscription is gone (``unsubscribe_ack``).
* A delivery is found only under the consumer tag it was delivered for: an id that
  pairs one subscription's tag with another's delivery is "Message not found", as
  is an unknown, already settled, or ``auto`` delivery. The session stays open.
* The session id inside the id must be this session's (main rejects ack tokens a
  publisher smuggled in from elsewhere; 3.10.8 ignored it).

Pure bookkeeping: no I/O. The session sends the basic.ack/nack.
"""

from __future__ import annotations

from dataclasses import dataclass

from .destinations import parse_integer
from .errors import ProtocolError

__all__ = ["AckTracker", "message_not_found", "parse_ack_id"]

SEPARATOR = "@@"


def parse_ack_id(value: str, *, command: str, header: str, session_id: str) -> tuple[str, int]:
    """``T_s@@session-x@@7`` -> ("T_s", 7), checked as RabbitMQ does it.

    * not three ``@@``-separated parts: "Invalid header" (3.10.8 text);
    * a delivery tag that is not an integer: "Processing error" (the plugin's
      ``list_to_integer`` crashes);
    * a session id that is not this session's: "Invalid header" (RabbitMQ main;
      3.10.8 did not look at it).
    """
    parts = value.split(SEPARATOR)
    if len(parts) != 3:
        raise _invalid(command, header)
    consumer_tag, session, tag_text = parts
    delivery_tag = parse_integer(tag_text, strip=False)
    if session != session_id:
        raise _invalid(command, header)
    return consumer_tag, delivery_tag


def _invalid(command: str, header: str) -> ProtocolError:
    return ProtocolError("Invalid header", f'"{command}" must include a valid "{header}" header\n')


def message_not_found(delivery_tag: int) -> ProtocolError:
    """RabbitMQ main: ``error("Message not found", "unknown delivery tag ~w~n")``."""
    return ProtocolError("Message not found", f"unknown delivery tag {delivery_tag}\n")


@dataclass(frozen=True, slots=True)
class Pending:
    consumer_tag: str
    multiple: bool  # delivered for an ack:client subscription


class AckTracker:
    """The deliveries of one session that still wait for an ACK or NACK."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        # Delivery tags grow, and dicts keep insertion order: oldest first.
        self._pending: dict[int, Pending] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, delivery_tag: object) -> bool:
        return delivery_tag in self._pending

    def delivered(self, delivery_tag: int, consumer_tag: str, *, multiple: bool) -> None:
        """A MESSAGE went out for a client/client-individual subscription."""
        self._pending[delivery_tag] = Pending(consumer_tag, multiple)

    def settle(self, consumer_tag: str, delivery_tag: int) -> tuple[bool, list[tuple[str, int]]]:
        """Remove what an ACK/NACK of this delivery settles.

        Returns ``(multiple, older)``: whether the broker call is cumulative, and the
        older deliveries (consumer tag, delivery tag) a cumulative one also settled.
        Raises ``message_not_found`` when the delivery is not pending under
        ``consumer_tag``.
        """
        pending = self._pending.get(delivery_tag)
        if pending is None or pending.consumer_tag != consumer_tag:
            raise message_not_found(delivery_tag)
        del self._pending[delivery_tag]
        if not pending.multiple:
            return False, []
        older: list[tuple[str, int]] = []
        for tag, other in self._pending.items():  # oldest first
            if tag > delivery_tag:
                break
            older.append((other.consumer_tag, tag))
        for _, tag in older:
            del self._pending[tag]
        return True, older
