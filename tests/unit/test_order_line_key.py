"""An order's lines that accrue share one line key (state.commissions.OrderLines):
what each message does to them, line by line, as when each line had its own key.

The flow against the plain loop, the oracle and the golden logs check that the
outputs are those of SPEC; here each message kind is pinned at the key.
"""

from __future__ import annotations

from typing import Any

import pytest

from state import ledgers
from state.commissions import OrderLines
from state.facts import MemoryFacts
from state.messages import Attributed, Credit, Refund, Route, Tick, line_key
from state.sequencer import Sequencer
from state.testing import SMALL_RULES
from tests.unit.test_order_lines import ORDER, REFUND, RULE, T, _scan

H, R = SMALL_RULES.holding_period_ms, SMALL_RULES.retention_ms
KEY = line_key("b", "o", T + 2)
APPROVE, FORGET = T + 2 + H + 1, T + 2 + R + 1


def _attributed() -> list[tuple[str, Attributed]]:
    """What the sequencer sends for ORDER, whose two lines both match and pay."""
    sequencer, facts = Sequencer(), MemoryFacts()
    routes: list[Route] = []
    for n, event in enumerate([RULE, _scan("a", "i"), _scan("c", "j"), ORDER]):
        routes += sequencer.on_event(event, f"{n}-0", SMALL_RULES, facts)[1]
    return [(r.key, r.message) for r in routes if isinstance(r.message, Attributed)]


def _key_after(*messages: Any) -> tuple[ledgers.KeyState, list[Any]]:
    state: ledgers.KeyState = None
    emitted: list[Any] = []
    for _key, message in _attributed():
        state, _ = ledgers.apply(state, message, SMALL_RULES)
    for message in messages:
        state, out = ledgers.apply(state, message, SMALL_RULES)
        emitted += out
    return state, emitted


def _refund(item: str, quantity: int | None, ts: int) -> Refund:
    return Refund({**REFUND, "ts": ts}, item, quantity, "9-0", 9)


def _summary(emitted: list[Any]) -> list[tuple[str, str, int]]:
    """(kind, item, amount) of each commission output; ("credit", "", amount) of each
    credit to a sharer."""
    rows = []
    for item in emitted:
        if isinstance(item, Route):
            assert isinstance(item.message, Credit) and item.key == "sharer:s1"
            rows.append(("credit", "", item.message.amount))
        else:
            rows.append((item["kind"], item["item_id"], item["commission_minor"]))
    return rows


def test_an_orders_paying_lines_go_to_one_key() -> None:
    sent = _attributed()
    assert [(key, message.record["item_id"]) for key, message in sent] == [(KEY, "i"), (KEY, "j")]
    state, _ = _key_after()
    assert isinstance(state, OrderLines) and sorted(state.lines) == ["i", "j"]


def test_an_order_asks_one_wake_up_for_its_lines() -> None:
    # A key woken twice at one moment would be ticked twice: the Redis store's loaded
    # buckets do not fold repeats, as the memory store does.
    sequencer, facts = Sequencer(), MemoryFacts()
    for n, event in enumerate([RULE, _scan("a", "i"), _scan("c", "j"), ORDER]):
        sequencer.on_event(event, f"{n}-0", SMALL_RULES, facts)
    assert facts.wakeups == [(T + 2 + H, KEY)]


@pytest.mark.parametrize(
    ("case", "messages", "left", "emitted"),
    [
        ("a tick before the holding period ends: nothing", [Tick(APPROVE - 1)], ["i", "j"], []),
        (
            "past it: each line approved, in item order, each with its credit",
            [Tick(APPROVE)],
            ["i", "j"],
            [
                ("approval", "i", 100),
                ("credit", "", 100),
                ("approval", "j", 25),
                ("credit", "", 25),
            ],
        ),
        (
            "a refund of one line reverses that line alone, and drops it when spent",
            [_refund("j", 1, T + 3)],
            ["i"],
            [("reversal", "j", -25)],
        ),
        (
            "the other line is then approved alone",
            [_refund("j", 1, T + 3), Tick(APPROVE)],
            ["i"],
            [("reversal", "j", -25), ("approval", "i", 100), ("credit", "", 100)],
        ),
        (
            "part of a line: reversed in proportion, the rest approved",
            [_refund("i", 1, T + 3), Tick(APPROVE)],
            ["i", "j"],
            [
                ("reversal", "i", -50),
                ("approval", "i", 50),
                ("credit", "", 50),
                ("approval", "j", 25),
                ("credit", "", 25),
            ],
        ),
        (
            "after approval a refund is a clawback, with its credit",
            [Tick(APPROVE), _refund("i", None, APPROVE + 1)],
            ["j"],
            [
                ("approval", "i", 100),
                ("credit", "", 100),
                ("approval", "j", 25),
                ("credit", "", 25),
                ("reversal", "i", -100),
                ("credit", "", -100),
            ],
        ),
        (
            "a refund whose own ts is past the holding period approves its line first",
            [_refund("i", None, APPROVE)],
            ["j"],
            [
                ("approval", "i", 100),
                ("credit", "", 100),
                ("reversal", "i", -100),
                ("credit", "", -100),
            ],
        ),
        (
            "a whole refund spends every line: the key is dropped",
            [_refund("i", None, T + 3), _refund("j", None, T + 3)],
            None,
            [("reversal", "i", -100), ("reversal", "j", -25)],
        ),
        (
            "an item without a line there: nothing",
            [_refund("k", None, T + 3)],
            ["i", "j"],
            [],
        ),
        (
            "past R every line is forgotten: the key is dropped",
            [Tick(APPROVE), Tick(FORGET)],
            None,
            [
                ("approval", "i", 100),
                ("credit", "", 100),
                ("approval", "j", 25),
                ("credit", "", 25),
            ],
        ),
    ],
)
def test_each_message_moves_the_lines_it_names(case, messages, left, emitted) -> None:
    state, out = _key_after(*messages)
    assert _summary(out) == emitted, case
    if left is None:
        assert state is None and ledgers.is_empty(state), case
    else:
        assert isinstance(state, OrderLines) and sorted(state.lines) == left, case
