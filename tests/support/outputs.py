"""Outputs as the sink writes them, for tests that call the sink directly."""

from __future__ import annotations

from typing import Any

from billing import sharer_view


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


def spec_balances(outputs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, int]]]:
    """SPEC "Balances" per sharer and currency (`pending`, `payable`, `paid`), from
    outputs each taken once (by `output_id`): written from SPEC's sentences, not from
    the sink's plan (billing.sharer_view), to check the live views against."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    seen: set[str] = set()
    for o in outputs:
        if o["type"] not in ("commission", "payout") or o["output_id"] in seen:
            continue
        seen.add(o["output_id"])
        b = out.setdefault(o["sharer_id"], {}).setdefault(
            o["currency"], {"pending": 0, "payable": 0, "paid": 0}
        )
        if o["type"] == "payout":
            b["payable"] -= o["amount_minor"]
            b["paid"] += o["amount_minor"]
        elif o["kind"] == "accrual":
            b["pending"] += o["commission_minor"]
        elif o["kind"] == "approval":
            b["pending"] -= o["commission_minor"]
            b["payable"] += o["commission_minor"]
        else:  # a reversal (negative), from the balance its status names
            b["pending" if o["status"] == "pending" else "payable"] += o["commission_minor"]
    return out


def assert_balances_as_spec(conn: Any, keys: Any, got: list[dict[str, Any]]) -> None:
    """Each sharer's live balances (billing.sharer_view) are SPEC's over `got`, each
    output taken once however often the flows gave it."""
    for sharer, per_currency in spec_balances(got).items():
        view = sharer_view.earnings(conn.hgetall(keys.sharer_view(sharer)))
        for currency, want in per_currency.items():
            have = view.get(currency, dict.fromkeys(want, 0))
            assert {k: have[k] for k in want} == want, (sharer, currency)
