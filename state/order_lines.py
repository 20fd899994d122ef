"""How the commission sequencer bills an order's lines, and what it keeps of the order.

Each line is matched (SPEC "Matching"): the order's hint if it names a candidate
scan for the line, else the buyer's best scan of the item, which the fact store
keeps per buyer and item (`Facts.best_scan`), if it lies inside the window. A
matched line gets its sharer's rule and its accrual here (`plan_order`), and only
a line that accrues something goes on to its order's line key (one per order:
state.commissions.OrderLines; `accrual`): an accrual of 0 has nothing to approve
or reverse. So the order's fact keeps only the items of those lines, and a refund
is routed to those alone.

A refund of a whole order spends each of its lines (`Line.spent`), whose key is
then dropped; their wake-ups (to approve, then to forget) would reach nothing, so
the sequencer withdraws the one still to come (`pending_wake`). In the bench log
those were a fifth of the ticks sent to line keys.

A fact stored by an earlier version (every item of the order) is a superset of the
lines with a line key, so its refunds still reach the right lines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from state.commissions import (
    Rule,
    attribute,
    commission_amount,
    hint_applies,
    next_line_wake,
)
from state.config import RuleSettings
from state.facts import SCAN_FIELDS, Facts
from state.messages import Event, touch_key


@dataclass(slots=True)
class OrderPlan:
    """What the sequencer does with an order: its matched lines, and when those
    that pay are woken to be approved."""

    lines: list[PlannedLine]
    approve_at: int


@dataclass(slots=True)
class PlannedLine:
    """An order line matched to a scan, with its billing record (or why it failed)."""

    line: Event
    record: dict[str, Any] | None  # state.commissions.attribute; None if it failed
    error: Exception | None = None  # the line's rule could not be applied

    @property
    def pays(self) -> bool:
        """Gets a line key: it needs wake-ups, and its refunds."""
        return self.record is not None and self.record["accrued"] > 0


def plan_order(
    order: Event,
    position: str,
    log_time: int,
    resolve_rule: Callable[[str, str, str], Rule | None],
    settings: RuleSettings,
    facts: Facts,
) -> OrderPlan:
    """The order's matched lines, in order, each attributed (SPEC "Matching", "Rule
    resolution", "Amount"). One line's failure is that line's alone."""
    hinted = _hinted_scan(order, position, settings, facts)
    buyer, ts, window = order["buyer_id"], order["ts"], settings.attribution_window_ms
    since = log_time - settings.retention_ms  # a scan's ts before it: forgotten
    planned: list[PlannedLine] = []
    for line in order["lines"]:
        item = line["item_id"]
        scan = hinted if hint_applies(hinted, order, item, window) else None
        if scan is None:
            scan = facts.best_scan(touch_key(item, buyer), position, since)
            if scan is None or scan["ts"] < ts - window:
                continue  # rule 3: not attributed, no output
        try:
            rule = resolve_rule(scan["sharer_id"], item, order["currency"])
            accrued = commission_amount(rule, line["quantity"], line["unit_price_minor"])
            planned.append(PlannedLine(line, attribute(order, line, scan, rule, accrued)))
        except Exception as exc:
            planned.append(PlannedLine(line, None, exc))
    return OrderPlan(planned, approve_at(order, log_time, settings))


def approve_at(order: Event, log_time: int, settings: RuleSettings) -> int:
    """When a line of this order that pays is woken to be approved: after the
    holding period, and not before the log's time (a store answers wake-ups by the
    span the time moves over, and an order's ts may lie far behind it)."""
    return max(int(order["ts"]) + settings.holding_period_ms, log_time)


def order_fact(order: Event, plan: OrderPlan) -> tuple[str, int, list[str], int]:
    """What the fact store keeps of an order for its refunds: its buyer, its time,
    the items whose lines have a line key, and when those are woken to be approved
    (`pending_wake`). A fact from before has the first three alone."""
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
