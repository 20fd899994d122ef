"""Wake-ups only for lines that can accrue: a line gets a key, and so a wake-up to
approve and to forget, only when its matched scan's sharer's rule pays (SPEC
"Holding period and approval", "Rule resolution", "Matching"); and what the
sequencer leaves out never changes an output."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from state import order_lines
from state.config import RuleSettings
from state.engine import Engine
from state.facts import MemoryFacts
from state.testing import SMALL_RULES, random_log
from tests.support.logs import engine_outputs, order, positioned, rule, scan
from tests.unit.test_rules_lifecycle import RULES, H, T  # the lifecycle tables' settings


def _line_wakeups(events, rules=RULES):
    facts = MemoryFacts()
    engine = Engine(rules, facts)
    for position, event in positioned(events):
        engine.feed(event, position)
    return sorted(key for _due, key in facts.wakeups if key.startswith("line:"))


@pytest.mark.parametrize(
    ("case", "rules_events", "line", "wakes"),
    [
        ("a percent rule and a price", [rule("ten", 0)], ("i", 4, 1000), 1),
        ("no rule at all", [], ("i", 4, 1000), 0),
        ("a percent rule on a free item", [rule("ten", 0)], ("i", 4, 0), 0),
        (
            "a flat rule on a free item still pays",
            [rule("f", 0, kind="flat", amount_minor=5, currency="USD")],
            ("i", 1, 0),
            1,
        ),
        (
            "a flat rule in another currency",
            [rule("f", 0, kind="flat", amount_minor=5, currency="EUR")],
            ("i", 1, 1000),
            0,
        ),
        ("0 bps", [rule("zero", 0, bps=0)], ("i", 4, 1000), 0),
        ("a cap of 0", [rule("capped", 0, cap_minor=0)], ("i", 4, 1000), 0),
        ("an inactive rule", [rule("off", 0, active=False)], ("i", 4, 1000), 0),
        ("a rule for another item", [rule("other", 0, item_id="j")], ("i", 4, 1000), 0),
        (
            "the rule of the scan's sharer pays",
            [rule("zero", 0, bps=0), rule("ten", 1, sharer_id="s")],
            ("i", 4, 1000),
            1,
        ),
        (
            "only another sharer's rule pays",
            [rule("zero", 0, bps=0), rule("ten", 1, sharer_id="t")],
            ("i", 4, 1000),
            0,
        ),
        (
            "the sharer's own rule pays 0, a general one would pay",
            [rule("ten", 0), rule("mine", 1, sharer_id="s", bps=0)],
            ("i", 4, 1000),
            0,
        ),
        (
            "the sharer's rule is for another currency",
            [rule("zero", 0, bps=0), rule("f", 1, kind="flat", amount_minor=5, currency="EUR")],
            ("i", 4, 1000),
            0,
        ),
    ],
)
def test_a_line_its_sharers_rule_does_not_pay_gets_no_wake_up(case, rules_events, line, wakes):
    # The line resolves to its matched scan's sharer's rule (SPEC "Rule resolution");
    # if that accrues 0, it has no line key (SPEC: "an accrual of 0 ... nothing to
    # approve"), so nothing needs waking.
    events = [*rules_events, scan("c", T - 1, "s", "b"), order("o", T, lines=[line])]
    assert len(_line_wakeups(events)) == wakes, case


@pytest.mark.parametrize(
    ("case", "scans", "hint", "wakes"),
    [
        ("the later of two scans is the last touch", [("c", 1, "t"), ("d", 2, "s")], None, 1),
        ("the earlier sharer's scan is not", [("c", 1, "s"), ("d", 2, "t")], None, 0),
        ("equal ts: the greater scan id wins", [("d", 2, "s"), ("c", 2, "t")], None, 1),
        ("equal ts, the other way", [("c", 2, "s"), ("d", 2, "t")], None, 0),
        ("a hint names the paying sharer's scan", [("c", 1, "s"), ("d", 2, "t")], "c", 1),
    ],
)
def test_the_sharer_whose_rule_decides_is_the_matched_scans(case, scans, hint, wakes):
    # Only sharer s has a paying rule: a wake-up exactly when the match is s's scan.
    events = [
        rule("zero", 0, bps=0),
        rule("ten", 1, sharer_id="s"),
        *(scan(sid, T - 10 + dt, sharer, "b") for sid, dt, sharer in scans),
        order("o", T, lines=[("i", 4, 1000)], hint=hint),
    ]
    assert len(_line_wakeups(events)) == wakes, case
    approvals = [o for o in engine_outputs([*events, scan("z", T + 2 * H, "x", None)], RULES)]
    assert sum(o.get("kind") == "approval" for o in approvals) == wakes, case


def _time_jumps_back(log, seed):
    """The log with some events' ts moved back by up to 2 R: a recorded log need
    not be in ts order, and a buyer's best scan may then be forgotten (past R of
    the log's time) while an order behind the time would still see it."""
    rng = random.Random(seed)
    back = 2 * SMALL_RULES.retention_ms
    return [{**e, "ts": e["ts"] - rng.randrange(back)} if rng.random() < 0.1 else e for e in log]


@pytest.mark.parametrize("skip", ["refunds", "refunds and withdrawals"])
@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.booleans())
def test_skipping_those_messages_changes_no_output(skip, seed, jumps_back):
    # What the sequencer leaves out must never reach a line that exists: the outputs
    # equal those of a sequencer that routes every refund to each line of its order
    # (the order's fact then keeps every item), and that never withdraws a wake-up.
    log = random_log(seed, 400)
    if jumps_back:
        log = _time_jumps_back(log, seed)
    assert sum(e["type"] == "refund" for e in log) > 0
    skipping = engine_outputs(log, SMALL_RULES)
    with pytest.MonkeyPatch.context() as patch:

        def every_item(order: dict[str, Any], plan: Any) -> tuple[Any, ...]:
            items = [line["item_id"] for line in order["lines"]]
            return (order["buyer_id"], order["ts"], items, plan.approve_at)

        patch.setattr(order_lines, "order_fact", every_item)
        if skip == "refunds and withdrawals":
            patch.setattr(MemoryFacts, "unwake", lambda *a: None)
        sending_all = engine_outputs(log, SMALL_RULES)
    assert skipping == sending_all


W = 50_000  # the attribution window of WINDOWED
WINDOWED = RuleSettings(holding_period_ms=H, attribution_window_ms=W)


@pytest.mark.parametrize(
    ("case", "before", "order_kwargs", "wakes"),
    [
        ("the buyer scanned the item inside the window", [scan("c", T - W, "s", "b")], {}, 1),
        ("no scan at all", [], {}, 0),
        ("the scan is older than the window", [scan("c", T - W - 1, "s", "b")], {}, 0),
        ("someone else scanned it", [scan("c", T - 1, "s", "x")], {}, 0),
        ("the buyer scanned another item", [scan("c", T - 1, "s", "b", item="j")], {}, 0),
        ("a self-referral scan", [scan("c", T - 1, "b", "b")], {}, 0),
        ("a scan by nobody known", [scan("c", T - 1, "s", None)], {}, 0),
        (
            "no scan by the buyer, but a hint that applies",
            [scan("c", T - 1, "s", None)],
            {"hint": "c"},
            1,
        ),
        ("a hint that does not apply", [scan("c", T - 1, "s", "x")], {"hint": "c"}, 0),
        (
            "a duplicate scan id notes nothing",
            [scan("c", T - 2 * W, "s", "x"), scan("c", T - 1, "s", "b")],
            {},
            0,
        ),
    ],
)
def test_a_line_with_no_scan_to_match_gets_no_wake_up(case, before, order_kwargs, wakes):
    # Such a line finds no last touch at its touch key (SPEC "Matching"), so it gets
    # no line key; in a shop most lines are like it.
    events = [rule("ten", 0), *before, order("o", T, lines=[("i", 4, 1000)], **order_kwargs)]
    assert len(_line_wakeups(events, WINDOWED)) == wakes, case
