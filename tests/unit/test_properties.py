"""Hypothesis properties of the pure state."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from state import commissions
from state.commissions import Line, attribute, commission_amount
from state.config import RuleSettings
from state.facts import MemoryFacts
from state.intervals import IntervalSet
from state.messages import Attributed, Route
from state.metering import Session, Tariff

intervals = st.lists(
    st.tuples(st.integers(0, 300), st.integers(0, 60)).map(lambda t: (t[0], t[0] + t[1])),
    max_size=30,
)


def union_of(pairs):
    result = IntervalSet()
    for start, end in pairs:
        result.add(start, end)
    return result


@given(intervals, st.randoms())
def test_union_is_order_independent(pairs, rnd):
    shuffled = list(pairs)
    rnd.shuffle(shuffled)
    assert union_of(pairs) == union_of(shuffled)


@given(intervals)
def test_union_is_idempotent(pairs):
    once = union_of(pairs)
    twice = union_of(pairs + pairs)
    assert once == twice and once.total == twice.total


@given(intervals)
def test_union_total_is_the_covered_length(pairs):
    points: set[int] = set()
    for start, end in pairs:
        points.update(range(start, end))
    got = union_of(pairs)
    assert got.total == len(points)
    assert all(p in got for p in points)
    runs = got.runs()
    assert all(a < b for a, b in runs)
    assert all(runs[i][1] < runs[i + 1][0] for i in range(len(runs) - 1))


@given(intervals)
def test_add_reports_new_coverage(pairs):
    result = IntervalSet()
    added = sum(result.add(s, e) for s, e in pairs)
    assert added == result.total


def test_snapshot_is_a_copy():
    original = union_of([(0, 5)])
    copy = original.snapshot()
    original.add(10, 20)
    assert copy.runs() == [(0, 5)]


T0 = 1_000_000
segments = st.lists(
    st.tuples(
        st.integers(0, 40),
        st.integers(-2000, 30_000),
        st.integers(1, 3000),
        st.integers(0, 6000),
        st.booleans(),
    ),
    max_size=25,
)


@settings(max_examples=200)
@given(segments)
def test_billed_time_is_bounded_by_raw_sum_and_span(raw):
    rules = RuleSettings()
    session = Session(
        {
            "session_id": "s",
            "ts": T0,
            "user_id": "u",
            "service_id": "v",
            "report_interval_ms": 1000,
        },
        Tariff("t", "USD", 1000, 1),
    )
    accepted: list[Any] = []
    ts = T0
    for seq, offset, length, advance, end in raw:
        ts += advance
        seg = {
            "session_id": "s",
            "seq": seq,
            "ts": ts,
            "start_ms": T0 + offset,
            "end_ms": T0 + offset + length,
            "end": end,
        }
        outs, _ = session.advance(ts, rules)
        outs += session.on_segment(seg, "p", rules)
        if any(o["type"] == "usage" and o["segments"] == len(accepted) + 1 for o in outs):
            accepted.append(seg)
    raw_sum = sum(s["end_ms"] - s["start_ms"] for s in accepted)
    assert session.billed_ms <= raw_sum
    if accepted:
        span = max(s["end_ms"] for s in accepted) - T0
        assert session.billed_ms <= span
    assert session.segments == len(accepted)


@given(
    st.integers(0, 10**7),
    st.integers(0, 10**7),
    st.integers(1, 10**5),
    st.integers(0, 10**4),
    st.integers(0, 10**6),
    st.integers(0, 10**4),
)
def test_fee_is_monotone_in_time(a, b, unit, price, free, minimum):
    tariff = Tariff("t", "USD", unit, price, free, minimum)
    low, high = sorted((a, b))
    assert tariff.fee(low) <= tariff.fee(high)


refund_plans = st.lists(st.one_of(st.none(), st.integers(1, 12)), min_size=1, max_size=8)


@given(
    st.integers(1, 10),
    st.integers(0, 50_000),
    st.integers(0, 10_000),
    refund_plans,
    st.integers(0, 8),
)
def test_reversals_never_exceed_accruals(quantity, price, bps, plan, approve_after):
    scan = {"scan_id": "c", "ts": 1, "share_id": "x", "sharer_id": "s"}
    order: dict[str, Any] = {"order_id": "o", "ts": 2, "buyer_id": "b", "currency": "USD"}
    line = {"item_id": "i", "quantity": quantity, "unit_price_minor": price}
    rule = {"rule_id": "r", "kind": "percent", "bps": bps, "active": True}
    accrued = commission_amount(rule, quantity, price)
    emitted = commissions.accrual(attribute(order, line, scan, rule, accrued), 1, "line:k")
    accrual = emitted[0]
    assert isinstance(accrual, dict)
    assert accrual["status"] == "pending"
    if accrual["commission_minor"] == 0:
        assert len(emitted) == 1  # no line key for a zero accrual
        return
    settings = RuleSettings(holding_period_ms=100 + approve_after)
    route = emitted[1]
    assert isinstance(route, Route) and isinstance(route.message, Attributed)
    held = Line(route.message.record)
    reversed_total = approved = refunded = 0
    for n, qty in enumerate(plan):
        produced, _ = held.advance(100 + n, settings, n)
        approved += sum(int(o["commission_minor"]) for o in produced if isinstance(o, dict))
        for out in held.on_refund({"refund_id": f"f{n}", "order_id": "o", "ts": 100 + n}, qty, n):
            if not isinstance(out, dict):
                continue
            assert out["commission_minor"] < 0
            due = order["ts"] + settings.holding_period_ms
            assert out["status"] == ("approved" if 100 + n > due else "pending")
            reversed_total -= out["commission_minor"]
        refunded = quantity if qty is None else min(quantity, refunded + qty)
        assert reversed_total <= accrual["commission_minor"]
        # An approval pays what is left then; clawbacks come after it.
        assert approved <= accrual["commission_minor"]
    if refunded == quantity:
        assert reversed_total == accrual["commission_minor"]


def test_a_buyers_best_scan_is_one_fact_however_many_come():
    """One buyer scanning one item all day holds one fact in memory, forgotten past R."""
    facts = MemoryFacts()
    for n in range(10_000):
        facts.forget_before(n * 10 - 1000)
        scan = {"scan_id": f"c{n}", "ts": n * 10, "share_id": "x", "item_id": "i"}
        facts.note_scan("touch:i|b", {**scan, "sharer_id": "s", "scanner_id": "b"}, f"L{n}")
        best = facts.best_scan("touch:i|b", f"L{n + 1}", n * 10 - 1000)
        assert best is not None and best["scan_id"] == f"c{n}"
        assert len(facts.recent) == 1
    facts.forget_before(10**6)
    assert facts.best_scan("touch:i|b", "L", 10**6) is None and len(facts.recent) == 0


def test_session_snapshot_is_a_copy():
    session = Session(
        {
            "session_id": "s",
            "ts": T0,
            "user_id": "u",
            "service_id": "v",
            "report_interval_ms": 1000,
        },
        Tariff("t", "USD", 1000, 1),
    )
    session.on_segment(
        {
            "session_id": "s",
            "seq": 0,
            "ts": T0 + 1000,
            "start_ms": T0,
            "end_ms": T0 + 1000,
            "end": False,
        },
        "p",
        RuleSettings(),
    )
    before = session.snapshot()
    session.on_segment(
        {
            "session_id": "s",
            "seq": 1,
            "ts": T0 + 2000,
            "start_ms": T0 + 1000,
            "end_ms": T0 + 2000,
            "end": False,
        },
        "p",
        RuleSettings(),
    )
    assert before["covered"] == [(T0, T0 + 1000)] and before["seqs"] == [(0, 1)]
    assert session.snapshot()["covered"] == [(T0, T0 + 2000)]
