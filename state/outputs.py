"""SPEC output records, each with an `output_id` that only depends on the input.

Ids: accruals by (order, item), reversals by (refund, item), usage by (session,
version), rejects by the rejected event's log position. Processing the same log
again, after a crash or on another worker count, yields the same ids.
"""

from __future__ import annotations

from typing import Any

Event = dict[str, Any]
Output = dict[str, Any]


def reject(reason: str, event: Event, position: str) -> Output:
    return {
        "type": "reject",
        "output_id": f"reject:{position}",
        "reason": reason,
        "event": event,
    }


def commission(
    kind: str,
    line: dict[str, Any],
    amount: int,
    ts: int,
    refund_id: str | None = None,
) -> Output:
    """`line` is an attributed order line as kept by the item ledger."""
    if kind == "accrual":
        output_id = f"commission:accrual:{line['order_id']}:{line['item_id']}"
    else:
        output_id = f"commission:reversal:{refund_id}:{line['item_id']}"
    return {
        "type": "commission",
        "output_id": output_id,
        "kind": kind,
        "order_id": line["order_id"],
        "item_id": line["item_id"],
        "buyer_id": line["buyer_id"],
        "sharer_id": line["sharer_id"],
        "share_id": line["share_id"],
        "scan_id": line["scan_id"],
        "rule": line["rule"],
        "base_minor": line["base_minor"],
        "commission_minor": amount,
        "currency": line["currency"],
        "ts": ts,
        "refund_id": refund_id,
    }
