"""Which of an order's lines the sequencer sends on, and what it keeps of the order.

A line reaches its touch key only if the touch key can match a scan to it, and it
can get a line key only if, besides, its sharer's rule pays something
(`Touch.on_order_line`: an accrual of 0 has nothing to approve or reverse). The
sequencer works both out before it stores the order's fact, so the fact keeps only
the items that may have a line key: a refund is routed to those alone. In a shop
most order lines come from no share, and a refund routed to each of its order's
lines built a line key for nothing, dropped it, and left a recovery tombstone.

A refund of a whole order spends each of its lines (`Line.spent`), whose keys are
then dropped; their wake-ups (to approve, then to forget) would reach nothing, so
the sequencer withdraws the one still to come (`pending_wake`). In the bench log
those were a fifth of the ticks sent to line keys.

Every answer here is a superset of the truth (a line it rules out can never get a
line key), never a subset: the fact store never answers "no scan" wrongly
(state.facts, `best_scan`), and an unsure sharer counts every candidate rule. A
fact stored by an earlier version (every item) is a superset too, so it still does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from state.commissions import (
    commission_amount,
    hint_applies,
    may_accrue,
    next_line_wake,
    resolve_rule,
)
from state.config import RuleSettings
from state.facts import SCAN_FIELDS, Facts
from state.messages import Event, line_key, touch_key

Rules = list[dict[str, Any]]


@dataclass(slots=True)
class OrderPlan:
    """What the sequencer does with an order: the lines it sends on, and when those
    that pay are woken to be approved."""

    lines: list[PlannedLine]
    approve_at: int


@dataclass(slots=True)
class PlannedLine:
    """An order line the touch key can match a scan to."""

    line: Event
    rules: Rules  # the candidate rules for its item and the order's currency
    hint: Event | None  # the order's scan hint, if it applies to this line
    key: str  # its line key
    touch: str  # its touch key
    pays: bool  # may get a line key: it needs wake-ups, and its refunds


def plan_order(
    order: Event,
    position: str,
    log_time: int,
    candidate_rules: Callable[[str, str], Rules],
    settings: RuleSettings,
    facts: Facts,
) -> OrderPlan:
    """The order's lines that may reach a touch key's match, in order."""
    hinted = _hinted_scan(order, position, settings, facts)
    buyer, ts = order["buyer_id"], order["ts"]
    planned: list[PlannedLine] = []
    for line in order["lines"]:
        item = line["item_id"]
        hint = hinted if hint_applies(hinted, order, item, settings.attribution_window_ms) else None
        touch = touch_key(item, buyer)
        matched, sharer = scan_match(order, hint, touch, position, log_time, settings, facts)
        if not matched:
            continue  # the touch key would find no scan to match and emit nothing
        rules = candidate_rules(item, order["currency"])
        key = line_key(item, buyer, order["order_id"], ts)
        planned.append(
            PlannedLine(line, rules, hint, key, touch, pays(line, rules, sharer, order["currency"]))
        )
    return OrderPlan(planned, approve_at(order, log_time, settings))


def approve_at(order: Event, log_time: int, settings: RuleSettings) -> int:
    """When a line of this order that pays is woken to be approved: after the
    holding period, and not before the log's time (a store answers wake-ups by the
    span the time moves over, and an order's ts may lie far behind it)."""
    return max(int(order["ts"]) + settings.holding_period_ms, log_time)


def order_fact(order: Event, plan: OrderPlan) -> tuple[str, int, list[str], int]:
    """What the fact store keeps of an order for its refunds: its buyer, its time,
    the items that may have a line key, and when their lines are woken to be
    approved (`pending_wake`). A fact from before has the first three alone."""
    items = list(dict.fromkeys(p.line["item_id"] for p in plan.lines if p.pays))
    return order["buyer_id"], order["ts"], items, plan.approve_at


def pending_wake(
    order_ts: int, approve_at: int, log_time: int, settings: RuleSettings
) -> int | None:
    """The one wake-up still to come, at `log_time`, for a line of this order that
    pays: its approval until the time has passed it (a store answers a wake-up at d
    once the log's time moves past d), then the one `Sequencer._wake` asked when the
    approval fired (`next_line_wake`: its forgetting past R, or None). With other
    settings since, the answer may name a wake-up never asked: withdrawing it does
    nothing, and the one asked reaches nothing."""
    if log_time <= approve_at:
        return approve_at
    return next_line_wake(order_ts, log_time, settings)


def _hinted_scan(order: Event, position: str, settings: RuleSettings, facts: Facts) -> Event | None:
    if order.get("scan_id") is None:
        return None
    found = facts.lookup("scan", order["scan_id"], order["ts"], position, settings.retention_ms)
    if found is None:
        return None
    hinted = dict(zip(SCAN_FIELDS, found, strict=True))
    hinted["scan_id"] = order["scan_id"]
    return hinted


def scan_match(
    order: Event,
    hint: Event | None,
    touch: str,
    position: str,
    log_time: int,
    settings: RuleSettings,
    facts: Facts,
) -> tuple[bool, str | None]:
    """Whether the touch key can match a scan to this order line (the hint, or
    the buyer's best scan of the item inside the window: `Touch.on_order_line`),
    and its sharer if that is sure. The store never answers "no scan" wrongly
    (state.facts, `best_scan`), so a line it rules out needs no message at all."""
    if hint is not None:
        return True, hint["sharer_id"]
    noted = facts.best_scan(touch, position)
    if noted is None or noted.ts < order["ts"] - settings.attribution_window_ms:
        return False, None
    # The touch key holds this scan unless it forgot it, which only a time
    # past its ts + R can have made it do; then be unsure of the sharer.
    recent = noted.ts >= log_time - settings.retention_ms
    return True, noted.sharer_id if recent else None


def pays(line: Event, rules: Rules, sharer: str | None, currency: str) -> bool:
    """Whether a matched line can get a line key: its sharer's rule pays something.
    Otherwise it needs no wake-ups: in the bench log a third of the lines that
    match accrue 0; each asked two wake-ups that reached nothing
    (bench.bench_wakeups, README "Wake-ups only for lines that get a line key")."""
    if sharer is None:  # any of the candidate rules may be the one
        return may_accrue(rules, line)
    rule = resolve_rule(rules, sharer, line["item_id"], currency)
    return commission_amount(rule, line["quantity"], line["unit_price_minor"]) > 0


def refund_plan(
    refund: Event, fact: tuple[Any, ...], log_time: int, settings: RuleSettings
) -> tuple[dict[str, int | None], int | None]:
    """From the refunded order's fact: the quantity refunded of each item that may
    have a line key (None: all of it), and, for a refund of the whole order (which
    spends each line), the time of its lines' wake-up still to come, to withdraw.
    A fact from before `approve_at` was kept (three fields) withdraws nothing."""
    order_ts, items = fact[1], fact[2]
    lines = refund.get("lines")
    if lines is None:
        due = pending_wake(order_ts, fact[3], log_time, settings) if len(fact) > 3 else None
        return dict.fromkeys(items), due
    quantities: dict[str, int | None] = {}
    for line in lines:
        item = line["item_id"]
        if item in items:
            quantities[item] = (quantities.get(item) or 0) + line["quantity"]
    return quantities, None
