"""SPEC "Share commissions: the rules", one case (at least) per sentence."""

from __future__ import annotations

import pytest

from state.commissions import commission_amount, resolve_rule
from state.config import RuleSettings
from state.money import round_half_up
from tests.support.logs import accruals, order, rule, scan

WEEK = 604_800_000


@pytest.mark.parametrize(
    ("num", "den", "expected"),
    [
        (0, 1, 0),
        (1, 2, 1),
        (3, 2, 2),
        (5, 2, 3),
        (1, 3, 0),
        (2, 3, 1),
        (99999, 100000, 1),
        (49999, 100000, 0),
        (50000, 100000, 1),
        (3003 * 333, 10000, 100),
    ],
)
def test_round_half_up_is_exact(num, den, expected):
    assert round_half_up(num, den) == expected


# (case, events before the order, order kwargs, expected (sharer, scan_id) per attributed line)
MATCHING = [
    (
        "last touch: latest scan by the buyer",
        [scan("a", 1, "s1", "b"), scan("c", 2, "s2", "b")],
        {},
        [("s2", "c")],
    ),
    (
        "last touch: equal ts, greatest scan_id",
        [scan("a", 2, "s1", "b"), scan("c", 2, "s2", "b")],
        {},
        [("s2", "c")],
    ),
    (
        "equal ts, greatest scan_id even if earlier in the log",
        [scan("z", 2, "s1", "b"), scan("c", 2, "s2", "b")],
        {},
        [("s1", "z")],
    ),
    (
        "self-referral never earns",
        [scan("a", 1, "s1", "b"), scan("self", 2, "b", "b")],
        {},
        [("s1", "a")],
    ),
    ("self-referral only: not attributed", [scan("self", 2, "b", "b")], {}, []),
    ("other scanners do not count for last touch", [scan("a", 1, "s1", "x")], {}, []),
    ("anonymous scans do not count for last touch", [scan("a", 1, "s1", None)], {}, []),
    (
        "hint on an anonymous scan matches",
        [scan("a", 1, "s1", None), scan("c", 2, "s2", "b")],
        {"hint": "a"},
        [("s1", "a")],
    ),
    (
        "hint on the buyer's own scan matches, over a later one",
        [scan("a", 1, "s1", "b"), scan("c", 2, "s2", "b")],
        {"hint": "a"},
        [("s1", "a")],
    ),
    (
        "hint on someone else's scan falls back to last touch",
        [scan("a", 1, "s1", "x"), scan("c", 2, "s2", "b")],
        {"hint": "a"},
        [("s2", "c")],
    ),
    (
        "hint on a self-referral scan is not a candidate",
        [scan("a", 1, "b", None), scan("c", 2, "s2", "b")],
        {"hint": "a"},
        [("s2", "c")],
    ),
    (
        "hint for another item is not a candidate",
        [scan("a", 1, "s1", None, item="j")],
        {"hint": "a"},
        [],
    ),
    (
        "hint naming an unknown scan falls back",
        [scan("c", 2, "s2", "b")],
        {"hint": "nope"},
        [("s2", "c")],
    ),
    ("scans of other items never match", [scan("a", 1, "s1", "b", item="j")], {}, []),
    (
        "scan at exactly O.ts - window is a candidate",
        [scan("a", 10, "s1", "b")],
        {"ts": 10 + WEEK},
        [("s1", "a")],
    ),
    ("scan older than the window is not", [scan("a", 10, "s1", "b")], {"ts": 11 + WEEK}, []),
    (
        "scan with the order's ts, earlier in the log, is a candidate",
        [scan("a", 100, "s1", "b")],
        {"ts": 100},
        [("s1", "a")],
    ),
]


@pytest.mark.parametrize(
    ("case", "before", "order_kwargs", "expected"), MATCHING, ids=[m[0] for m in MATCHING]
)
def test_matching(case, before, order_kwargs, expected):
    kwargs = {"ts": 100, **order_kwargs}
    events = [rule("r", 0), *before, order("o", **kwargs)]
    got = [(o["sharer_id"], o["scan_id"]) for o in accruals(events)]
    assert got == expected


def test_scan_later_in_the_log_than_the_order_never_matches():
    events = [order("o", 100), scan("a", 100, "s1", "b")]
    assert accruals(events) == []


def test_each_line_is_matched_on_its_own_item():
    events = [
        rule("r", 0),
        scan("a", 1, "s1", "b", item="i"),
        scan("c", 2, "s2", "b", item="j"),
        order("o", 10, lines=[("i", 1, 100), ("j", 2, 100), ("k", 1, 100)]),
    ]
    got = [(o["item_id"], o["sharer_id"]) for o in accruals(events)]
    assert got == [("i", "s1"), ("j", "s2")]


def test_attribution_window_is_a_setting():
    events = [rule("r", 0), scan("a", 0, "s1", "b"), order("o", 1000)]
    assert accruals(events, RuleSettings(attribution_window_ms=999)) == []
    assert len(accruals(events, RuleSettings(attribution_window_ms=1000))) == 1


R = rule  # shorthand for the table below

RESOLUTION = [
    ("sharer+item beats item only", [R("a", item_id="i"), R("b", sharer_id="s", item_id="i")], "b"),
    ("item only beats sharer only", [R("a", sharer_id="s"), R("b", item_id="i")], "b"),
    ("sharer only beats neither", [R("a"), R("b", sharer_id="s")], "b"),
    ("tie goes to the smallest rule_id", [R("b"), R("a"), R("c")], "a"),
    ("inactive rules are ignored", [R("a", active=False), R("b")], "b"),
    ("rules for another sharer are ignored", [R("a", sharer_id="other"), R("b")], "b"),
    ("rules for another item are ignored", [R("a", item_id="other"), R("b")], "b"),
    (
        "flat needs the order's currency",
        [R("a", kind="flat", amount_minor=5, currency="EUR", item_id="i"), R("b")],
        "b",
    ),
    (
        "flat in the order's currency applies",
        [R("a", kind="flat", amount_minor=5, currency="USD", item_id="i"), R("b")],
        "a",
    ),
    ("no rule left", [R("a", active=False)], None),
]


@pytest.mark.parametrize(("case", "rules", "expected"), RESOLUTION, ids=[r[0] for r in RESOLUTION])
def test_resolve_rule(case, rules, expected):
    got = resolve_rule(rules, "s", "i", "USD")
    assert (got and got["rule_id"]) == expected


def test_last_version_earlier_in_the_log_wins():
    events = [
        rule("r", 0, bps=1000),
        rule("r", 5, bps=2000),
        scan("a", 6, "s", "b"),
        order("o", 10),
        rule("r", 11, bps=3000),
    ]
    (acc,) = accruals(events)
    assert acc["rule"]["bps"] == 2000 and acc["commission_minor"] == 200


def test_deactivated_version_removes_the_rule():
    events = [rule("r", 0), rule("r", 1, active=False), scan("a", 2, "s", "b"), order("o", 10)]
    (acc,) = accruals(events)
    assert acc["rule"] is None and acc["commission_minor"] == 0


def test_rule_with_the_same_ts_as_the_order_but_later_in_the_log_does_not_apply():
    events = [scan("a", 2, "s", "b"), order("o", 10), rule("r", 10)]
    (acc,) = accruals(events)
    assert acc["rule"] is None


@pytest.mark.parametrize(
    ("rule_fields", "qty", "price", "expected"),
    [
        ({"kind": "percent", "bps": 333}, 3, 1001, 100),
        ({"kind": "percent", "bps": 500}, 1, 10, 1),  # 0.5 rounds up
        ({"kind": "percent", "bps": 499}, 1, 10, 0),  # 0.499 rounds down
        ({"kind": "percent", "bps": 10000}, 2, 7, 14),
        ({"kind": "percent", "bps": 0}, 2, 7, 0),
        ({"kind": "percent", "bps": 1000, "cap_minor": 50}, 10, 100, 50),
        ({"kind": "flat", "amount_minor": 25, "currency": "USD"}, 3, 1, 75),
        ({"kind": "flat", "amount_minor": 25, "currency": "USD", "cap_minor": 60}, 3, 1, 60),
        ({"kind": "percent", "bps": 1, "cap_minor": 0}, 5, 999_999, 0),
    ],
)
def test_commission_amount(rule_fields, qty, price, expected):
    assert commission_amount(rule_fields, qty, price) == expected


def test_accrual_record_fields():
    events = [
        rule("r", 0, bps=333),
        scan("c", 2, "s2", "b", share="x"),
        order("o", 4, lines=[("i", 3, 1001)]),
    ]
    (acc,) = accruals(events)
    assert acc == {
        "type": "commission",
        "output_id": "commission:accrual:o:4:i",
        "kind": "accrual",
        "status": "pending",
        "order_id": "o",
        "item_id": "i",
        "buyer_id": "b",
        "sharer_id": "s2",
        "share_id": "x",
        "scan_id": "c",
        "rule": {
            "rule_id": "r",
            "kind": "percent",
            "bps": 333,
            "amount_minor": None,
            "cap_minor": None,
        },
        "base_minor": 3003,
        "commission_minor": 100,
        "currency": "USD",
        "ts": 4,
        "refund_id": None,
    }
