"""SPEC output records, each with an `output_id` that only depends on the input.

Ids: accruals and approvals by (order, its ts, item), reversals by (refund, its
ts, item), payouts by (payout, its ts), usage
by (session, its start's ts, version), rejects by the rejected entry's log
position. The `ts` parts keep ids apart when Retention lets an id come back.
Processing the same log again, after a crash or on another worker count, yields
the same ids.
"""

from __future__ import annotations

from typing import Any

from state.messages import Event

Output = dict[str, Any]


def reject(reason: str, event: Event, position: str, error: str | None = None) -> Output:
    out: Output = {
        "type": "reject",
        "output_id": f"reject:{position}",
        "reason": reason,
        "event": event,
    }
    if error is not None:
        out["error"] = error
    return out


def invalid_event(event: Event, position: str, error: BaseException | str) -> Output:
    """An entry the engine could not process: reported, never a reason to stop."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return reject("invalid_event", event, position, text[:500])


def commission(
    kind: str,
    line: dict[str, Any],
    amount: int,
    ts: int,
    status: str,
    refund_id: str | None = None,
) -> Output:
    """`line` is an attributed order line as kept by its ledger."""
    if kind == "reversal":
        output_id = f"commission:reversal:{refund_id}:{ts}:{line['item_id']}"
    else:  # accrual, approval: one each per line
        output_id = f"commission:{kind}:{line['order_id']}:{line['order_ts']}:{line['item_id']}"
    return {
        "type": "commission",
        "output_id": output_id,
        "kind": kind,
        "status": status,
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


def payout(event: Event, amount: int) -> Output:
    return {
        "type": "payout",
        "output_id": f"payout:{event['payout_id']}:{event['ts']}",
        "payout_id": event["payout_id"],
        "sharer_id": event["sharer_id"],
        "currency": event["currency"],
        "amount_minor": amount,
        "ts": event["ts"],
    }
