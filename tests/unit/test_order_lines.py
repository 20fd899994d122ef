"""How the sequencer bills an order's lines and what it keeps of the order for its
refunds (state.order_lines): the items with a line key, so a refund is routed to
those lines alone.

The hypothesis property that routing fewer changes no output is
`test_skipping_those_messages_changes_no_output` (tests/unit/test_rules_wakeups.py);
here each case is pinned by what the sequencer routes.
"""

from __future__ import annotations

from typing import Any

import pytest

from state import order_lines
from state.facts import MemoryFacts
from state.messages import Attributed, Refund, Route, Tick, line_key
from state.sequencer import Sequencer
from state.testing import SMALL_RULES

T = 1_000_000
RULE = {"type": "commission_rule", "rule_id": "d", "ts": T, "kind": "percent", "bps": 500}
ZERO = {"type": "commission_rule", "rule_id": "z", "ts": T, "kind": "percent", "bps": 0}


def _scan(scan_id: str, item: str, scanner: str = "b") -> dict[str, Any]:
    return {
        "type": "scan",
        "scan_id": scan_id,
        "ts": T + 1,
        "share_id": "x",
        "item_id": item,
        "sharer_id": "s1",
        "scanner_id": scanner,
    }


ORDER = {
    "type": "order",
    "order_id": "o",
    "ts": T + 2,
    "buyer_id": "b",
    "currency": "USD",
    "lines": [
        {"item_id": "i", "quantity": 2, "unit_price_minor": 1000},
        {"item_id": "j", "quantity": 1, "unit_price_minor": 500},
    ],
}
REFUND = {"type": "refund", "refund_id": "r", "order_id": "o", "ts": T + 3}


def _refund_items(before: list[dict[str, Any]], refund: dict[str, Any]) -> list[str]:
    """The items whose line key the refund is routed to."""
    sequencer, facts = Sequencer(), MemoryFacts()
    for n, event in enumerate([*before, ORDER]):
        sequencer.on_event(event, f"{n}-0", SMALL_RULES, facts)
    _out, routes = sequencer.on_event(refund, "99-0", SMALL_RULES, facts)
    refunds = [_refund_of(r) for r in routes]
    return [r.item_id for r in refunds if r is not None]


def _line_of(route: Route) -> str:
    return route.key


def _inner(route: Route) -> Any:
    return route.message


def _refund_of(route: Route) -> Refund | None:
    message = _inner(route)
    return message if isinstance(message, Refund) else None


@pytest.mark.parametrize(
    ("case", "before", "refund", "items"),
    [
        (
            "the buyer scanned both items",
            [RULE, _scan("a", "i"), _scan("c", "j")],
            REFUND,
            ["i", "j"],
        ),
        ("the buyer scanned one item", [RULE, _scan("a", "i")], REFUND, ["i"]),
        ("no scan by the buyer", [RULE, _scan("a", "i", scanner="q")], REFUND, []),
        ("a scan, but the only rule pays 0", [ZERO, _scan("a", "i")], REFUND, []),
        ("no rule at all", [_scan("a", "i")], REFUND, []),
        (
            "a refund naming a line with no line key",
            [RULE, _scan("a", "i")],
            {**REFUND, "lines": [{"item_id": "j", "quantity": 1}]},
            [],
        ),
        (
            "a refund naming the line with one",
            [RULE, _scan("a", "i")],
            {**REFUND, "lines": [{"item_id": "i", "quantity": 1}]},
            ["i"],
        ),
    ],
)
def test_a_refund_goes_only_to_lines_with_a_line_key(case, before, refund, items):
    assert _refund_items(before, refund) == items, case


def test_an_orders_fact_from_before_with_every_item_still_routes() -> None:
    # The version before kept every item of the order; a superset of the lines with
    # a key, so its refunds reach each line that has one (and others, for nothing).
    sequencer, facts = Sequencer(), MemoryFacts()
    for n, event in enumerate([RULE, _scan("a", "i")]):
        sequencer.on_event(event, f"{n}-0", SMALL_RULES, facts)
    assert facts.first_use(
        "order", "o", T + 2, "5-0", SMALL_RULES.retention_ms, ("b", T + 2, ["i", "j"])
    )
    _out, routes = sequencer.on_event(REFUND, "6-0", SMALL_RULES, facts)
    assert [_line_of(r) for r in routes] == [line_key("b", "o", T + 2)] * 2
    assert [r.item_id for r in map(_refund_of, routes) if r is not None] == ["i", "j"]


H, R = SMALL_RULES.holding_period_ms, SMALL_RULES.retention_ms
LINE_I = line_key("b", "o", T + 2)  # the key of ORDER's lines


def _line_ticks(refund: dict[str, Any] | None, refund_ts: int, fact: Any = None) -> list[int]:
    """The log times at which line i of ORDER is ticked (its scan matched, its rule
    pays), with `refund` at `refund_ts`, the time then moved past R in steps."""
    sequencer, facts = Sequencer(), MemoryFacts()
    before = [RULE, _scan("a", "i")]
    for n, event in enumerate(before):
        sequencer.on_event(event, f"{n}-0", SMALL_RULES, facts)
    if fact is None:
        sequencer.on_event(ORDER, "5-0", SMALL_RULES, facts)
    else:  # a fact stored by the version before, and the wake-up it asked
        assert facts.first_use("order", "o", T + 2, "5-0", R, fact)
        facts.wake_at(T + 2 + H, LINE_I)
    ticks: list[int] = []
    times = sorted({refund_ts, T + 2 + H + 1, T + 2 + R + 1, T + 2 + 2 * R})
    for n, now in enumerate(times):
        if refund is not None and now == refund_ts:
            _out, routes = sequencer.on_event(
                {**refund, "ts": now}, f"{10 + n}-0", SMALL_RULES, facts
            )
        else:
            routes = sequencer.advance(now, SMALL_RULES, facts)
        ticks += [now for r in routes if _line_of(r) == LINE_I and isinstance(_inner(r), Tick)]
    return sorted(set(ticks))


APPROVE, FORGET = T + 2 + H + 1, T + 2 + R + 1


@pytest.mark.parametrize(
    ("case", "refund", "refund_ts", "ticks"),
    [
        ("no refund: approved, then forgotten", None, T + 10, [APPROVE, FORGET]),
        ("a whole refund before approval withdraws both", REFUND, T + 10, []),
        ("a whole refund after approval withdraws the forgetting", REFUND, APPROVE + 5, [APPROVE]),
        (
            "a refund of some units withdraws nothing",
            {**REFUND, "lines": [{"item_id": "i", "quantity": 1}]},
            T + 10,
            [APPROVE, FORGET],
        ),
        (
            "a refund naming all of the line's units withdraws nothing either",
            {**REFUND, "lines": [{"item_id": "i", "quantity": 2}]},
            T + 10,
            [APPROVE, FORGET],
        ),
    ],
)
def test_a_whole_refund_withdraws_the_wake_ups_still_to_come(case, refund, refund_ts, ticks):
    # A whole refund spends every line (`Line.spent`), and its key is dropped; the
    # wake-ups would reach nothing. Other refunds may leave a line, so they keep them.
    assert _line_ticks(refund, refund_ts) == ticks, case


def test_a_fact_from_before_withdraws_nothing() -> None:
    # Without the approval's time in the fact, nothing is withdrawn: the ticks reach
    # nothing, as before.
    assert _line_ticks(REFUND, T + 10, fact=("b", T + 2, ["i"])) == [APPROVE, FORGET]


def test_an_order_whose_planning_fails_is_a_reject_and_its_id_is_used(monkeypatch) -> None:
    # As an error in any handler: after the duplicate check, so the id counts as
    # seen (SPEC: seen means seen in the log), and a second use is a duplicate.
    def broken(order: dict[str, Any], *args: Any) -> Any:
        raise ArithmeticError("boom in the plan")

    monkeypatch.setattr(order_lines, "plan_order", broken)
    sequencer, facts = Sequencer(), MemoryFacts()
    first, _ = sequencer.on_event(ORDER, "1-0", SMALL_RULES, facts)
    again, _ = sequencer.on_event({**ORDER, "ts": T + 5}, "2-0", SMALL_RULES, facts)
    assert [(o["type"], o.get("reason"), o.get("error")) for o in first + again] == [
        ("reject", "invalid_event", "ArithmeticError: boom in the plan"),
        ("reject", "duplicate", None),
    ]


def test_a_line_whose_rule_fails_is_that_lines_reject_alone() -> None:
    # A rule that cannot be applied (a percent rule without bps, for item j) rejects
    # the line it resolves to, named by the order's position and the item, as any
    # keyed step's error is; the order's other line is billed, and keeps its key.
    broken = {**RULE, "rule_id": "e", "item_id": "j"}
    del broken["bps"]
    sequencer, facts = Sequencer(), MemoryFacts()
    for n, event in enumerate([RULE, broken, _scan("a", "i"), _scan("c", "j")]):
        sequencer.on_event(event, f"{n}-0", SMALL_RULES, facts)
    out, routes = sequencer.on_event(ORDER, "5-0", SMALL_RULES, facts)
    assert [(o["type"], o.get("kind") or o.get("reason"), o["output_id"]) for o in out] == [
        ("commission", "accrual", f"commission:accrual:o:{T + 2}:i"),
        ("reject", "invalid_event", "reject:5-0:j"),
    ]
    assert [(r.key, type(r.message)) for r in routes] == [(LINE_I, Attributed)]
