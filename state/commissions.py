"""Share commissions (SPEC "Share commissions: the rules").

The commission sequencer matches each order line to a scan (state.order_lines:
the hint, or the buyer's best scan of the item, which its fact store keeps),
resolves the sharer's rule and writes the billing record (`attribute`). A line
that accrues something goes on to its order's line key
(`line:<buyer>|<order>|<order_ts>`, state.messages.line_key), which holds the
order's such lines (`OrderLines`, one `Line` each): refunds, the holding period
(approval), clawbacks, until the order is forgotten (R). One key per order, not per
line: an order's lines share their wake-ups (approval and forgetting both follow
the order's ts) and its whole refunds, so each is one key woken, one snapshot and
one recovery row. Settings are passed in, never kept.
"""

from __future__ import annotations

from typing import Any

from state.config import RuleSettings
from state.messages import Attributed, Credit, Event, Route
from state.money import round_half_up
from state.outputs import Output, commission

Rule = dict[str, Any]


def rule_applies(rule: Rule, currency: str) -> bool:
    """The sharer- and item-independent part of the filter."""
    if not rule.get("active", True):
        return False
    return rule["kind"] != "flat" or rule.get("currency") == currency


def line_wake_after(line_key: str, log_time: int, settings: RuleSettings) -> int | None:
    """A line's next wake-up from `log_time` on: to approve it after the holding
    period, then to forget it past R; None when both have passed. Both come from its
    order's ts (the last field of its key) and today's settings, never a stored
    deadline, so a restart with new settings moves them."""
    return next_line_wake(int(line_key.rsplit("|", 1)[1]), log_time, settings)


def next_line_wake(order_ts: int, log_time: int, settings: RuleSettings) -> int | None:
    """`line_wake_after` for a line of the order at `order_ts`."""
    later = [
        d
        for d in (order_ts + settings.holding_period_ms, order_ts + settings.retention_ms)
        if d >= log_time
    ]
    return min(later) if later else None


def specificity(rule: Rule) -> int:
    has_sharer = rule.get("sharer_id") is not None
    has_item = rule.get("item_id") is not None
    return 3 if has_sharer and has_item else 2 if has_item else 1 if has_sharer else 0


def resolve_rule(rules: list[Rule], sharer_id: str, item_id: str, currency: str) -> Rule | None:
    """Most specific applicable rule; ties go to the smallest rule_id. A walk over
    every rule, as SPEC says it: the oracle for state.rule_index, which the engine
    resolves with."""
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


def hint_applies(scan: Event | None, order: Event, item_id: str, window_ms: int) -> bool:
    """SPEC "Matching" 1: the hinted scan is a candidate for this line, and was
    made by the buyer or by nobody known."""
    if scan is None:
        return False
    buyer = order["buyer_id"]
    return (
        scan["item_id"] == item_id
        and order["ts"] - window_ms <= scan["ts"] <= order["ts"]
        and scan["sharer_id"] != buyer
        and scan.get("scanner_id") in (None, buyer)
    )


def attribute(
    order: Event, line: Event, scan: Event, rule: Rule | None, accrued: int
) -> dict[str, Any]:
    """The billing record of an order line matched to `scan` (the hint, or the
    buyer's best scan of the item: state.order_lines), with its sharer's rule
    written in (SPEC "Rule resolution") and what it accrues."""
    return {
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
        "status": "pending",
    }


def accrual(record: dict[str, Any], step: int, line_key: str) -> list[Output | Route]:
    """What an attributed line emits: its accrual and, if it accrues anything, the
    line itself for its line key (nothing can be reversed or approved from 0)."""
    out: list[Output | Route] = [
        commission("accrual", record, record["accrued"], record["order_ts"], "pending")
    ]
    if record["accrued"] > 0:
        out.append(Route(line_key, Attributed(record, step)))
    return out


class Line:
    """One attributed line with a positive accrual, from its order until R."""

    __slots__ = ("record",)

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = dict(record)

    def advance(
        self, log_time: int, settings: RuleSettings, step: int
    ) -> tuple[list[Output | Route], bool]:
        """The log's time is `log_time`: approve once past the holding period.
        Returns the outputs and whether the line is forgotten (SPEC "Retention")."""
        record = self.record
        out: list[Output | Route] = []
        due = record["order_ts"] + settings.holding_period_ms
        if record["status"] == "pending" and log_time > due:
            record["status"] = "approved"
            left = record["accrued"] - record["reversed"]
            if left > 0:
                approval = commission("approval", record, left, due, "approved")
                out.append(approval)
                out.append(
                    Route(
                        f"sharer:{record['sharer_id']}",
                        Credit(record["currency"], left, step, 0, approval["output_id"]),
                    )
                )
        return out, record["order_ts"] < log_time - settings.retention_ms

    def on_refund(self, refund: Event, quantity: int | None, step: int) -> list[Output | Route]:
        """Refund `quantity` of this line (None: all of it)."""
        record = self.record
        q = record["quantity"]
        record["refunded"] = q if quantity is None else min(q, record["refunded"] + quantity)
        total = reversal_total(record["accrued"], record["refunded"], q)
        delta = total - record["reversed"]
        if delta <= 0:
            return []
        record["reversed"] = total
        status = record["status"]
        reversal = commission("reversal", record, -delta, refund["ts"], status, refund["refund_id"])
        if status == "pending":
            return [reversal]
        # A clawback: it lowers what the sharer can be paid.
        return [
            reversal,
            Route(
                f"sharer:{record['sharer_id']}",
                Credit(record["currency"], -delta, step, 1, reversal["output_id"]),
            ),
        ]

    def spent(self) -> bool:
        """Fully refunded: nothing more can be reversed or approved."""
        return bool(self.record["refunded"] >= self.record["quantity"])


# A line's record as `attribute` writes it, and its rule as `rule_record` does: the
# order of the flat form OrderLines pickles as.
# (tests/unit/test_state_pickles.py pins both against what those make.)
RECORD_FIELDS = (
    *("order_id", "order_ts", "item_id", "buyer_id", "sharer_id", "share_id", "scan_id"),
    *("rule", "base_minor", "currency", "quantity", "accrued", "refunded", "reversed", "status"),
)
RULE_FIELDS = ("rule_id", "kind", "bps", "amount_minor", "cap_minor")


class OrderLines:
    """An order's lines with a positive accrual, by item (SPEC: an order's items are
    distinct), from its order until R. A tick walks them all: each would have had
    its own key and tick before, so the work per line is the same, and an order has
    at most 1,000 lines (billing.events)."""

    __slots__ = ("lines",)

    def __init__(self) -> None:
        self.lines: dict[str, Line] = {}

    def __reduce__(self) -> tuple[Any, tuple[tuple[Any, ...]]]:
        # An order's key is pickled at every epoch it is woken in (its attribution,
        # approval, refunds and forgetting). Its records' values in one flat tuple,
        # their field names left out: 3.2 against 6.1 us and 191 against 504 bytes
        # for two lines. A record of another shape (none is made today) keeps its
        # names. Snapshots in the earlier form still load (the default __setstate__).
        flat: list[Any] = []
        for line in self.lines.values():
            record = line.record
            rule = record["rule"]
            if tuple(record) != RECORD_FIELDS or (rule is not None and tuple(rule) != RULE_FIELDS):
                return _order_lines_from_records, (
                    tuple(line.record for line in self.lines.values()),
                )
            values = list(record.values())
            if rule is not None:
                values[7] = tuple(rule.values())  # RECORD_FIELDS[7] is "rule"
            flat += values
        return _order_lines_from_flat, (tuple(flat),)

    def attributed(self, record: dict[str, Any]) -> None:
        self.lines[record["item_id"]] = Line(record)

    def advance(
        self, log_time: int, settings: RuleSettings, step: int
    ) -> tuple[list[Output | Route], bool]:
        """Every line as of `log_time`, in item order (what separate line keys, sorted
        by name, emitted before). Returns the outputs and whether none is left."""
        out: list[Output | Route] = []
        lines = self.lines
        for item in sorted(lines):
            emitted, forgotten = lines[item].advance(log_time, settings, step)
            out += emitted
            if forgotten:
                del lines[item]
        return out, not lines

    def on_refund(
        self, refund: Event, item_id: str, quantity: int | None, settings: RuleSettings, step: int
    ) -> tuple[list[Output | Route], bool]:
        """Refund `quantity` of the line of `item_id` (None: all of it), as of the
        refund's ts. Only that line moves (it may be approved by it), as when each line
        had its own key. Returns the outputs and whether no line is left."""
        line = self.lines.get(item_id)
        if line is None:  # not attributed, nothing accrued, spent, or forgotten
            return [], not self.lines
        out, forgotten = line.advance(refund["ts"], settings, step)
        if not forgotten:
            out += line.on_refund(refund, quantity, step)
        if forgotten or line.spent():
            del self.lines[item_id]
        return out, not self.lines


def _order_lines_from_records(records: tuple[dict[str, Any], ...]) -> OrderLines:
    order = OrderLines()
    for record in records:
        order.attributed(record)
    return order


def _order_lines_from_flat(flat: tuple[Any, ...]) -> OrderLines:
    """OrderLines from `OrderLines.__reduce__`'s flat tuple."""
    order, width = OrderLines(), len(RECORD_FIELDS)
    for start in range(0, len(flat), width):
        record = dict(zip(RECORD_FIELDS, flat[start : start + width], strict=True))
        if record["rule"] is not None:
            record["rule"] = dict(zip(RULE_FIELDS, record["rule"], strict=True))
        line = Line.__new__(Line)  # the record is new here: Line's copy is not needed
        line.record = record
        order.lines[record["item_id"]] = line
    return order
