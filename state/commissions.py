"""Share commissions (SPEC "Share commissions: the rules"), per item.

An `ItemLedger` holds, for one item, the scans still inside the attribution
window and the attributed order lines that a refund could still reverse. Global
facts (duplicate ids, known orders, rule versions) are the `Sequencer`'s.
Settings are passed in, never kept: a snapshot holds state only.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from state.config import RuleSettings
from state.messages import Event
from state.money import round_half_up
from state.outputs import Output, commission
from state.retention import Recent

Rule = dict[str, Any]


def rule_applies(rule: Rule, currency: str) -> bool:
    """The sharer-independent part of the filter, done once per order line."""
    if not rule.get("active", True):
        return False
    return rule["kind"] != "flat" or rule.get("currency") == currency


def candidate_rules(rules: dict[str, Rule], item_id: str, currency: str) -> list[Rule]:
    return [
        r
        for r in rules.values()
        if rule_applies(r, currency) and r.get("item_id") in (None, item_id)
    ]


def specificity(rule: Rule) -> int:
    has_sharer = rule.get("sharer_id") is not None
    has_item = rule.get("item_id") is not None
    return 3 if has_sharer and has_item else 2 if has_item else 1 if has_sharer else 0


def resolve_rule(rules: list[Rule], sharer_id: str, item_id: str, currency: str) -> Rule | None:
    """Most specific applicable rule; ties go to the smallest rule_id."""
    best: Rule | None = None
    for rule in rules:
        if not rule_applies(rule, currency):
            continue
        if rule.get("sharer_id") not in (None, sharer_id):
            continue
        if rule.get("item_id") not in (None, item_id):
            continue
        if best is None or (-specificity(rule), rule["rule_id"]) < (
            -specificity(best),
            best["rule_id"],
        ):
            best = rule
    return best


def commission_amount(rule: Rule | None, quantity: int, unit_price_minor: int) -> int:
    if rule is None:
        return 0
    if rule["kind"] == "percent":
        amount = round_half_up(quantity * unit_price_minor * rule["bps"], 10_000)
    else:
        amount = rule["amount_minor"] * quantity
    cap = rule.get("cap_minor")
    return amount if cap is None else min(amount, cap)


def rule_record(rule: Rule | None) -> dict[str, Any] | None:
    if rule is None:
        return None
    return {
        "rule_id": rule["rule_id"],
        "kind": rule["kind"],
        "bps": rule.get("bps"),
        "amount_minor": rule.get("amount_minor"),
        "cap_minor": rule.get("cap_minor"),
    }


def reversal_total(accrued: int, refunded: int, quantity: int) -> int:
    return round_half_up(accrued * min(refunded, quantity), quantity)


class ScanLog:
    """One item's scans inside the attribution window, in log order.

    Matching is O(1) however many scans an item holds: the hint is a dict lookup,
    and last touch only needs each scanner's best scan, the greatest (ts, scan_id)
    among its scans of another sharer's share. Scans arrive in log order, so when
    a scanner's best scan leaves the window, all its other scans have left too.
    Forgetting pops from the front of a deque: O(1) amortised.
    """

    __slots__ = ("best_by_scanner", "by_id", "in_order")

    def __init__(self) -> None:
        self.in_order: deque[Event] = deque()
        self.by_id: dict[str, Event] = {}
        self.best_by_scanner: dict[str, Event] = {}

    def __len__(self) -> int:
        return len(self.in_order)

    def add(self, scan: Event) -> None:
        self.in_order.append(scan)
        self.by_id[scan["scan_id"]] = scan
        scanner = scan.get("scanner_id")
        if scanner is None or scanner == scan["sharer_id"]:
            return  # never a last touch: no buyer is null, and self-referral never earns
        best = self.best_by_scanner.get(scanner)
        if best is None or (scan["ts"], scan["scan_id"]) > (best["ts"], best["scan_id"]):
            self.best_by_scanner[scanner] = scan

    def forget_before(self, oldest_ts: int) -> None:
        """Drop scans with ts < oldest_ts: no later order can use them (ts only grows)."""
        in_order = self.in_order
        while in_order and in_order[0]["ts"] < oldest_ts:
            scan = in_order.popleft()
            if self.by_id.get(scan["scan_id"]) is scan:
                del self.by_id[scan["scan_id"]]
            scanner = scan.get("scanner_id")
            if scanner is not None and self.best_by_scanner.get(scanner) is scan:
                del self.best_by_scanner[scanner]

    def match(self, order: Event) -> Event | None:
        """SPEC "Matching", over scans already cut to the window: hint, else last touch."""
        buyer = order["buyer_id"]
        hint = order.get("scan_id")
        if hint is not None:
            scan = self.by_id.get(hint)
            if (
                scan is not None
                and scan["sharer_id"] != buyer
                and scan.get("scanner_id") in (None, buyer)
            ):
                return scan
        return self.best_by_scanner.get(buyer)


class ItemLedger:
    """All commission state for one item_id: scans in the window, and attributed
    lines with something left to reverse, until their order is forgotten (R)."""

    __slots__ = ("lines", "scans")

    def __init__(self) -> None:
        self.scans = ScanLog()
        # order_id -> attributed line with accrued amount and refunded quantity so far
        self.lines: Recent[dict[str, Any]] = Recent()

    def is_empty(self) -> bool:
        return not self.scans and not self.lines

    def forget(self, log_time: int, settings: RuleSettings) -> None:
        self.scans.forget_before(log_time - settings.attribution_window_ms)
        self.lines.forget_before(log_time - settings.retention_ms)

    def on_scan(self, scan: Event) -> list[Output]:
        self.scans.add(scan)
        return []

    def on_order_line(self, order: Event, line: Event, rules: list[Rule]) -> list[Output]:
        scan = self.scans.match(order)
        if scan is None:
            return []
        rule = resolve_rule(rules, scan["sharer_id"], line["item_id"], order["currency"])
        accrued = commission_amount(rule, line["quantity"], line["unit_price_minor"])
        record = {
            "order_id": order["order_id"],
            "order_ts": order["ts"],
            "item_id": line["item_id"],
            "buyer_id": order["buyer_id"],
            "sharer_id": scan["sharer_id"],
            "share_id": scan["share_id"],
            "scan_id": scan["scan_id"],
            "rule": rule_record(rule),
            "base_minor": line["quantity"] * line["unit_price_minor"],
            "currency": order["currency"],
            "quantity": line["quantity"],
            "accrued": accrued,
            "refunded": 0,
            "reversed": 0,
        }
        if accrued > 0:
            # Nothing can ever be reversed from a zero accrual, so it need not be kept.
            self.lines.add(order["order_id"], order["ts"], record)
        return [commission("accrual", record, accrued, order["ts"])]

    def on_refund(self, refund: Event, quantity: int | None) -> list[Output]:
        """Refund `quantity` of this item of the order (None: all of it)."""
        record = self.lines.get(refund["order_id"])
        if record is None:
            return []
        q = record["quantity"]
        record["refunded"] = q if quantity is None else min(q, record["refunded"] + quantity)
        total = reversal_total(record["accrued"], record["refunded"], q)
        delta = total - record["reversed"]
        if record["refunded"] >= q:
            self.lines.discard(refund["order_id"])
        if delta <= 0:
            return []
        record["reversed"] = total
        return [commission("reversal", record, -delta, refund["ts"], refund["refund_id"])]
