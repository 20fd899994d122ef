"""SPEC "Holding period and approval", "Balances" and "Payouts", a case (or more)
per sentence, through the engine's plain loop; plus properties on random logs."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from state.commissions import line_wake_after
from state.config import RuleSettings
from state.engine import Engine
from state.testing import SMALL_RULES, random_log
from tests.support.logs import engine_outputs, order, payout, refund, rule, scan
from tests.support.outputs import spec_balances

H = 1000  # holding period
RULES = RuleSettings(holding_period_ms=H)
T = 10_000
# 10 % of 4 x 1000: 400 for sharer s, bought by b at T.
BASE = [rule("ten", 0), scan("c", T - 1, "s", "b"), order("o", T, lines=[("i", 4, 1000)])]


@pytest.mark.parametrize(
    ("log_time", "expected"),
    [
        (0, T + H),  # before approval: the approval
        (T + H, T + H),  # at it: still the approval (a line wakes at its deadline)
        (T + H + 1, T + 5 * H),  # past it: forgetting, past R
        (T + 5 * H, T + 5 * H),
        (T + 5 * H + 1, None),  # both passed
    ],
)
def test_a_line_wakes_to_approve_then_to_forget(log_time, expected):
    small = {"attribution_window_ms": H, "late_grace_ms": 0, "retention_ms": 5 * H}
    settings = RuleSettings(holding_period_ms=H, **small)
    assert line_wake_after(f"line:i|b|o|{T}", log_time, settings) == expected
    # The deadlines come from the settings of the day, not from a stored value.
    later = RuleSettings(holding_period_ms=2 * H, **small)
    assert line_wake_after(f"line:i|b|o|{T}", T + H + 1, later) == T + 2 * H


def run(*later, rules=RULES):
    return engine_outputs([*BASE, *later], rules)


def commissions(outs):
    return [
        (o["kind"], o["status"], o["commission_minor"], o["ts"])
        for o in outs
        if o["type"] == "commission"
    ]


def payouts(outs):
    return [(o["payout_id"], o["amount_minor"]) for o in outs if o["type"] == "payout"]


def rejects(outs):
    return Counter(o["reason"] for o in outs if o["type"] == "reject")


def noop(ts):
    """An event that only moves the log's time."""
    return scan(f"n{ts}", ts, "x", None, item="other")


@pytest.mark.parametrize(
    ("later", "expected"),
    [
        # "pending from its order until the log's time is past order.ts + holding"
        ([], [("accrual", "pending", 400, T)]),
        ([noop(T + H)], [("accrual", "pending", 400, T)]),
        # "...then it is approved, and emits ... ts = order.ts + holding_period_ms"
        ([noop(T + H + 1)], [("accrual", "pending", 400, T), ("approval", "approved", 400, T + H)]),
        # "commission_minor = its accrual minus all that was reversed before"
        (
            [refund("f", "o", T + 5, [("i", 1)]), noop(T + H + 1)],
            [
                ("accrual", "pending", 400, T),
                ("reversal", "pending", -100, T + 5),
                ("approval", "approved", 300, T + H),
            ],
        ),
        # "A line with nothing left (fully reversed) emits no approval"
        (
            [refund("f", "o", T + 5), noop(T + H + 1)],
            [("accrual", "pending", 400, T), ("reversal", "pending", -400, T + 5)],
        ),
        # "Refunds after approval still reverse ... a clawback" with status approved
        (
            [noop(T + H + 1), refund("f", "o", T + H + 2, [("i", 2)])],
            [
                ("accrual", "pending", 400, T),
                ("approval", "approved", 400, T + H),
                ("reversal", "approved", -200, T + H + 2),
            ],
        ),
        # A refund at exactly order.ts + holding: the line is still pending.
        (
            [refund("f", "o", T + H, [("i", 2)]), noop(T + H + 1)],
            [
                ("accrual", "pending", 400, T),
                ("reversal", "pending", -200, T + H),
                ("approval", "approved", 200, T + H),
            ],
        ),
        # The refund that moves the time past the due date sees the line approved.
        (
            [refund("f", "o", T + H + 1, [("i", 2)])],
            [
                ("accrual", "pending", 400, T),
                ("approval", "approved", 400, T + H),
                ("reversal", "approved", -200, T + H + 1),
            ],
        ),
    ],
)
def test_holding_period_and_approval(later, expected):
    assert commissions(run(*later)) == expected


def test_a_zero_accrual_emits_no_approval():
    outs = engine_outputs(
        [rule("zero", 0, bps=0), scan("c", T - 1, "s", "b"), order("o", T), noop(T + H + 1)], RULES
    )
    assert commissions(outs) == [("accrual", "pending", 0, T)]


def test_an_unattributed_line_has_no_lifecycle():
    outs = engine_outputs(
        [rule("ten", 0), order("o", T), refund("f", "o", T + 1), noop(T + H + 1)], RULES
    )
    assert commissions(outs) == []


@pytest.mark.parametrize(
    ("later", "paid", "reasons"),
    [
        # "if it is greater than 0, a payout output with amount_minor equal to it"
        ([payout("p", T + H + 1)], [("p", 400)], {}),
        # "otherwise a reject nothing_to_pay, and nothing changes"
        ([payout("p", T + 1)], [], {"nothing_to_pay": 1}),
        ([payout("p", T + H)], [], {"nothing_to_pay": 1}),  # not yet past the holding
        # "(and payable drops to 0)"
        ([payout("p", T + H + 1), payout("q", T + H + 2)], [("p", 400)], {"nothing_to_pay": 1}),
        # "per currency": a EUR payout finds nothing
        ([payout("p", T + H + 1, currency="EUR")], [], {"nothing_to_pay": 1}),
        # "per sharer": another sharer finds nothing
        ([payout("p", T + H + 1, sharer="z")], [], {"nothing_to_pay": 1}),
        # a clawback after payout: payable goes negative, nothing to pay
        (
            [
                payout("p", T + H + 1),
                refund("f", "o", T + H + 2, [("i", 1)]),
                payout("q", T + H + 3),
            ],
            [("p", 400)],
            {"nothing_to_pay": 1},
        ),
        # "...later approvals net it out"
        (
            [
                payout("p", T + H + 1),
                refund("f", "o", T + H + 2, [("i", 1)]),
                order("o2", T + H + 3, lines=[("i", 2, 1000)]),
                payout("q", T + 2 * H + 4),
            ],
            [("p", 400), ("q", 100)],
            {},
        ),
        # "A duplicate payout id is a duplicate"
        ([payout("p", T + H + 1), payout("p", T + H + 2)], [("p", 400)], {"duplicate": 1}),
        # a pending reversal lowers pending, not payable
        ([refund("f", "o", T + 1, [("i", 1)]), payout("p", T + H + 1)], [("p", 300)], {}),
    ],
)
def test_payouts(later, paid, reasons):
    outs = run(*later)
    assert payouts(outs) == paid
    assert rejects(outs) == Counter(reasons)


def test_outputs_carry_status_and_stable_ids():
    outs = run(noop(T + H + 1), refund("f", "o", T + H + 2, [("i", 1)]), payout("p", T + H + 3))
    assert {o["output_id"] for o in outs if o["type"] in ("commission", "payout")} == {
        f"commission:accrual:o:{T}:i",
        f"commission:approval:o:{T}:i",
        f"commission:reversal:f:{T + H + 2}:i",
        f"payout:p:{T + H + 3}",
    }
    assert (
        run(noop(T + H + 1), refund("f", "o", T + H + 2, [("i", 1)]), payout("p", T + H + 3))
        == outs
    )


def balances(outs):
    """SPEC "Balances", straight from its three definitions (tests.support.outputs),
    by (sharer, currency)."""
    return {
        (sharer, cur): Counter(b)
        for sharer, per in spec_balances(outs).items()
        for cur, b in per.items()
    }


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_balances_hold_on_random_logs(seed):
    outs = engine_outputs(random_log(seed, 300), SMALL_RULES)
    for (_sharer, _cur), b in balances(outs).items():
        assert b["pending"] >= 0  # what is pending was accrued and not yet reversed
        assert b["paid"] >= 0
    for o in outs:
        if o["type"] == "payout":
            assert o["amount_minor"] > 0
        if o["type"] == "commission" and o["kind"] == "approval":
            assert o["commission_minor"] > 0 and o["status"] == "approved"


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000))
def test_balances_add_up_at_every_prefix_of_the_log(seed):
    """Issue 8's properties, per sharer and currency, after every log entry:
    pending + payable + paid = accruals - reversals (reversals are negative amounts,
    so: their sum), and the engine's own payable balance equals the outputs'.

    The issue also asks that payouts never exceed approvals minus approved reversals
    at any prefix. SPEC lets a clawback come after a payout ("payable ... may go
    negative"), and then that sum is below what was paid, so as written it fails
    (hypothesis found it). What SPEC implies holds: right after each payout, payable
    is 0, so the payouts so far equal approvals minus approved reversals so far."""
    from billing.log_lines import parse_log_event
    from harness.live import with_stream_ids
    from state.balances import SharerLedger

    engine = Engine(SMALL_RULES)
    outs: list[dict] = []
    for position, event in with_stream_ids([parse_log_event(e) for e in random_log(seed, 250)]):
        new = engine.feed(event, position)
        outs += new
        paid_now = {(o["sharer_id"], o["currency"]) for o in new if o["type"] == "payout"}
        sums: dict[tuple[str, str], Counter[str]] = {}
        for o in outs:
            if o["type"] == "payout":
                sums.setdefault((o["sharer_id"], o["currency"]), Counter())["payouts"] += o[
                    "amount_minor"
                ]
            elif o["type"] == "commission":
                s = sums.setdefault((o["sharer_id"], o["currency"]), Counter())
                s[o["kind"]] += o["commission_minor"]
                if o["kind"] == "reversal" and o["status"] == "approved":
                    s["approved_reversals"] += o["commission_minor"]
        for key, b in balances(outs).items():
            s = sums[key]
            assert b["pending"] + b["payable"] + b["paid"] == s["accrual"] + s["reversal"]
            if key in paid_now:
                assert s["payouts"] == s["approval"] + s["approved_reversals"]
            ledger = engine.keys.get(f"sharer:{key[0]}")
            held = ledger.payable.get(key[1], 0) if isinstance(ledger, SharerLedger) else 0
            assert held == b["payable"]
