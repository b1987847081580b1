"""Ack bookkeeping and transaction lists (gateway.acks, gateway.transactions), pure."""

from __future__ import annotations

import pytest

from gateway.acks import AckTracker, parse_ack_id
from gateway.broker.base import Properties
from gateway.errors import ProcessingError, ProtocolError
from gateway.transactions import (
    MAX_TRANSACTION_ACTIONS,
    MAX_TRANSACTIONS,
    PublishAction,
    SettleAction,
    Transactions,
)


def test_parse_ack_id() -> None:
    assert parse_ack_id("T_s@@sess@@7", command="ACK", header="id", session_id="sess") == (
        "T_s",
        7,
    )
    # the consumer tag may hold anything but "@@" (Q_/queue/x, T_/temp-queue/t)
    assert parse_ack_id(
        "Q_/queue/a b@@sess@@+3", command="ACK", header="id", session_id="sess"
    ) == ("Q_/queue/a b", 3)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("T_s", ProtocolError),
        ("T_s@@sess", ProtocolError),
        ("a@@sess@@1@@2", ProtocolError),
        ("T_s@@other@@1", ProtocolError),
        ("T_s@@sess@@x", ProcessingError),
        ("T_s@@sess@@ 1", ProcessingError),  # Erlang list_to_integer does not trim
        ("T_s@@sess@@", ProcessingError),
    ],
)
def test_parse_ack_id_errors(value: str, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        parse_ack_id(value, command="NACK", header="message-id", session_id="sess")
    if error is ProtocolError:
        assert info.value.body == '"NACK" must include a valid "message-id" header\n'  # type: ignore[attr-defined]


def test_tracker_individual_and_cumulative() -> None:
    acks = AckTracker()
    acks.delivered(1, "T_b", multiple=False)
    acks.delivered(2, "T_a", multiple=True)
    acks.delivered(3, "T_b", multiple=False)
    acks.delivered(4, "T_a", multiple=True)
    assert acks.settle("T_b", 3) == (False, [])
    assert acks.settle("T_a", 4) == (True, [("T_b", 1), ("T_a", 2)])
    assert len(acks) == 0


def test_tracker_not_found() -> None:
    acks = AckTracker()
    acks.delivered(1, "T_a", multiple=True)
    for tag, delivery in (("T_b", 1), ("T_a", 2)):
        with pytest.raises(ProtocolError) as info:
            acks.settle(tag, delivery)
        assert (info.value.message, info.value.body) == (
            "Message not found",
            f"unknown delivery tag {delivery}\n",
        )
    assert 1 in acks


def test_transactions() -> None:
    txs = Transactions()
    action = SettleAction("T_s", 1, nack=False, requeue=True)
    txs.begin("a")
    txs.add("a", action)
    txs.begin("a")  # restarts
    assert txs.commit("a") == []
    with pytest.raises(ProtocolError, match="Bad transaction"):
        txs.commit("a")
    with pytest.raises(ProtocolError, match="Bad transaction"):
        txs.add("nope", action)
    for i in range(MAX_TRANSACTIONS):
        txs.begin(str(i))
    with pytest.raises(ProtocolError, match="Transaction limit exceeded"):
        txs.begin("one more")
    txs.abort("0")
    publish = PublishAction("", "q", b"x", Properties(), None)
    for _ in range(MAX_TRANSACTION_ACTIONS):
        txs.add("1", publish)
    with pytest.raises(ProtocolError, match="Transaction too large"):
        txs.add("1", publish)
    assert len(txs.commit("1")) == MAX_TRANSACTION_ACTIONS
