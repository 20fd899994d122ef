"""Outputs as the sink writes them, for tests that call the sink directly."""

from __future__ import annotations

from typing import Any


def accrual_output(order_id: str, ts: int, amount: int, sharer_id: str = "al") -> dict[str, Any]:
    """A pending accrual of `amount` USD for `sharer_id`, on item i of `order_id`."""
    return {
        "type": "commission",
        "output_id": f"commission:accrual:{order_id}:{ts}:i",
        "kind": "accrual",
        "status": "pending",
        "order_id": order_id,
        "sharer_id": sharer_id,
        "currency": "USD",
        "commission_minor": amount,
        "ts": ts,
    }
