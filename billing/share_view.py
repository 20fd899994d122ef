"""The share funnel view: for each share, its scans, then orders, then commission.

Key layout (billing.keys): `view:share:<share_id>` is a hash of `item_id`,
`sharer_id`, `scans`, `orders` and `<currency>:accrued|reversed`; `view:shares:active`
a sorted set of share ids by their last scan's `ts`, capped at `ACTIVE_CAP` members
(one key must not hold what grows with traffic), which is what the dashboard lists.
A share's hash expires `ttl_ms` (R and a margin) after its last scan or commission.

Write plan, two writers with one layout:
- a scan is counted by the ingest API in the same script that appends it
  (ingest_api.appender), so it is counted once exactly when it is logged. Scans are
  not SPEC outputs, and a rate-limited scan is never logged, so never counted;
- an accrual adds 1 order and its commission, a reversal its (negative) commission:
  the sink applies these with the output, under the same `applied` mark as the
  sharer's balances (flows.redis_sink, billing.sharer_view), so a replayed output
  counts once.

Read decoding: `funnel` below, used by the read API.
"""

from __future__ import annotations

from typing import Any

from billing.keys import Keys

ACTIVE_CAP = 200
COUNTS = ("scans", "orders")


def commission_deltas(keys: Keys, out: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(key, hash field, increment) triples a commission output adds to its share."""
    if out["type"] != "commission" or out["kind"] == "approval" or not out.get("share_id"):
        return []
    view, cur, c = keys.share_view(out["share_id"]), out["currency"], out["commission_minor"]
    if out["kind"] == "accrual":
        return [(view, "orders", 1), (view, f"{cur}:accrued", c)]
    return [(view, f"{cur}:reversed", c)]


def scan_args(keys: Keys, event: dict[str, Any]) -> list[str]:
    """What the append script needs to count one logged scan (see its comment)."""
    return [
        keys.share_view(event["share_id"]),
        event["item_id"],
        event["sharer_id"],
        keys.active_shares,
        event["share_id"],
        str(ACTIVE_CAP),
    ]


def funnel(share_id: str, fields: dict[str, str]) -> dict[str, Any]:
    """One share's funnel: counts, and commission per currency (minor units)."""
    currencies: dict[str, dict[str, int]] = {}
    for field, value in fields.items():
        currency, sep, name = field.partition(":")
        if sep and name in ("accrued", "reversed"):
            slot = currencies.setdefault(currency, {"accrued": 0, "reversed": 0})
            slot[name] = int(value)
    return {
        "share_id": share_id,
        "item_id": fields.get("item_id"),
        "sharer_id": fields.get("sharer_id"),
        **{name: int(fields.get(name, 0)) for name in COUNTS},
        "currencies": {
            cur: {**v, "net": v["accrued"] + v["reversed"]} for cur, v in sorted(currencies.items())
        },
    }
