"""SPEC "Share commissions: the rules", its refund and duplicate sentences: refunds
reverse in proportion, and a duplicate id is rejected while the first use wins."""

from __future__ import annotations

import pytest

from tests.support.logs import accruals, engine_outputs, order, refund, rule, scan


def rejects(events):
    return [o["reason"] for o in engine_outputs(events) if o["type"] == "reject"]


def reversals(events):
    return [
        (o["refund_id"], o["item_id"], o["commission_minor"])
        for o in engine_outputs(events)
        if o["type"] == "commission" and o["kind"] == "reversal"
    ]


BASE = [rule("r", 0, bps=333), scan("c", 1, "s", "b"), order("o", 2, lines=[("i", 3, 1001)])]


@pytest.mark.parametrize(
    ("refunds", "expected"),
    [
        ([refund("r1", "o", 3, [("i", 1)])], [("r1", "i", -33)]),
        (
            [refund("r1", "o", 3, [("i", 1)]), refund("r2", "o", 4)],
            [("r1", "i", -33), ("r2", "i", -67)],
        ),
        (
            [refund("r1", "o", 3, [("i", 2)]), refund("r2", "o", 4, [("i", 1)])],
            [("r1", "i", -67), ("r2", "i", -33)],
        ),
        ([refund("r1", "o", 3, [("i", 5)])], [("r1", "i", -100)]),  # capped at q
        ([refund("r1", "o", 3), refund("r2", "o", 4)], [("r1", "i", -100)]),  # nothing left
        ([refund("r1", "o", 3, [("x", 1)])], []),  # item not in the order
    ],
)
def test_refunds_reverse_in_proportion(refunds, expected):
    assert reversals([*BASE, *refunds]) == expected


def test_refund_rounding_never_reverses_more_than_accrued():
    events = [rule("r", 0, bps=5000), scan("c", 1, "s", "b"), order("o", 2, lines=[("i", 3, 1)])]
    # A = round_half_up(1.5) = 2; one of three: round_half_up(2/3) = 1; two: round_half_up(4/3) = 1
    got = reversals(
        [
            *events,
            refund("r1", "o", 3, [("i", 1)]),
            refund("r2", "o", 4, [("i", 1)]),
            refund("r3", "o", 5, [("i", 1)]),
        ]
    )
    assert got == [("r1", "i", -1), ("r3", "i", -1)]


def test_refund_of_unknown_order_is_rejected():
    assert rejects([refund("r1", "nope", 1)]) == ["unknown_order"]


def test_refund_before_its_order_in_the_log_is_unknown():
    assert "unknown_order" in rejects([refund("r1", "o", 1), order("o", 1)])


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([scan("a", 1, "s", "b"), scan("a", 2, "s2", "b")], ["duplicate"]),
        ([order("o", 1), order("o", 2, buyer="other")], ["duplicate"]),
        ([order("o", 1), refund("r", "o", 2), refund("r", "o", 3)], ["duplicate"]),
        (
            [
                {
                    "type": "share",
                    "share_id": "x",
                    "ts": 1,
                    "item_id": "i",
                    "sharer_id": "s",
                    "activity_url": "https://a",
                }
            ]
            * 2,
            ["duplicate"],
        ),
    ],
)
def test_duplicates_are_rejected_and_the_first_wins(events, expected):
    assert rejects(events) == expected


def test_duplicate_scan_is_ignored_for_matching():
    events = [rule("r", 0), scan("a", 1, "s1", "b"), scan("a", 2, "s2", "b"), order("o", 3)]
    (acc,) = accruals(events)
    assert acc["sharer_id"] == "s1"


def test_duplicate_order_does_not_accrue_again():
    events = [rule("r", 0), scan("a", 1, "s1", "b"), order("o", 2), order("o", 3)]
    assert len(accruals(events)) == 1
