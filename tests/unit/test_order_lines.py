"""What the sequencer keeps of an order for its refunds (state.order_lines): the
items that may have a line key, so a refund is routed to those lines alone.

The hypothesis property that routing fewer changes no output is
`test_skipping_those_wake_ups_changes_no_output` (tests/unit/test_rules_lifecycle.py);
here each case is pinned by what the sequencer routes.
"""

from __future__ import annotations

from typing import Any

import pytest

from state.facts import MemoryFacts
from state.messages import Refund, Route, ToLine, line_key
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
    """The items whose line key the refund is routed to (straight or relayed)."""
    sequencer, facts = Sequencer(), MemoryFacts()
    for n, event in enumerate([*before, ORDER]):
        sequencer.on_event(event, f"{n}-0", SMALL_RULES, facts)
    _out, routes = sequencer.on_event(refund, "99-0", SMALL_RULES, facts)
    refunds = [_refund_of(r) for r in routes]
    return [r.item_id for r in refunds if r is not None]


def _line_of(route: Route) -> str:
    return route.message.line_key if isinstance(route.message, ToLine) else route.key


def _refund_of(route: Route) -> Refund | None:
    message = route.message.message if isinstance(route.message, ToLine) else route.message
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
def test_a_refund_goes_only_to_lines_that_may_have_a_line_key(case, before, refund, items):
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
    assert [_line_of(r) for r in routes] == [line_key(i, "b", "o", T + 2) for i in ("i", "j")]
