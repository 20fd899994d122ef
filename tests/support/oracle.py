"""A second, deliberately naive reading of SPEC, written sentence by sentence.

No windows, indexes, timers or compaction: every question is answered by looking
back over the whole log. Slow (quadratic) and only for tests; it shares no code
with `state/` beyond `round_half_up`'s arithmetic, written again here.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from state.config import RuleSettings


def rhu(num: int, den: int) -> int:
    q, r = divmod(num, den)
    return q + (1 if 2 * r >= den else 0)


def oracle(log: list[dict[str, Any]], rules: RuleSettings) -> dict[str, Any]:
    commissions: list[dict[str, Any]] = []
    rejects: Counter[str] = Counter()
    usage: dict[str, dict[str, Any]] = {}
    seen_ids: dict[tuple[str, str], int] = {}  # first use's ts
    accepted_scans: list[dict[str, Any]] = []
    retention = rules.retention_ms
    orders: dict[str, dict[str, Any]] = {}
    attributed: dict[tuple[str, int, str], dict[str, Any]] = {}
    tariffs: dict[str, dict[str, Any]] = {}
    sessions: dict[str, dict[str, Any]] = {}
    idle_factor = rules.idle_timeout_factor
    payable: Counter[tuple[str, str]] = Counter()  # (sharer, currency)
    payouts: list[dict[str, Any]] = []

    def fee(s: dict[str, Any]) -> int:
        t = s["tariff"]
        billed = s["billed"]
        units = -(-max(0, billed - t.get("free_ms", 0)) // t["unit_ms"])
        f = units * t["price_minor"]
        return max(f, t.get("min_charge_minor", 0)) if billed > 0 else f

    def emit_usage(sid: str, ts: int) -> None:
        s = sessions[sid]
        s["version"] += 1
        usage[f"{sid}@{s['start']}"] = {
            "status": "closed" if s["closed"] else "open",
            "closed_reason": s["closed"],
            "billed_ms": s["billed"],
            "fee_minor": fee(s),
            "segments": s["count"],
            "version": s["version"],
            "ts": ts,
        }

    def move_time(now: int) -> None:
        # "Holding period and approval": past order.ts + holding, what is left is approved.
        for (order_id, _ts, item), a in attributed.items():
            if a["status"] == "pending" and now > a["due"]:
                a["status"] = "approved"
                if a["A"] - a["rev"] > 0:
                    commissions.append(
                        {
                            "kind": "approval",
                            "order_id": order_id,
                            "item_id": item,
                            "refund_id": None,
                            "commission_minor": a["A"] - a["rev"],
                            "status": "approved",
                            "ts": a["due"],
                        }
                    )
                    payable[(a["sharer"], a["cur"])] += a["A"] - a["rev"]
        for sid, s in sessions.items():
            t_idle = s["last"] + idle_factor * s["interval"]
            if s["closed"] is None and now > t_idle:
                s["closed"], s["closed_ts"] = "idle", t_idle
                emit_usage(sid, t_idle)

    for index, ev in enumerate(log):
        earlier = log[:index]
        move_time(ev["ts"])
        kind = ev["type"]
        key_field = {
            "share": "share_id",
            "scan": "scan_id",
            "order": "order_id",
            "refund": "refund_id",
            "payout": "payout_id",
        }.get(kind)
        if key_field:
            first = seen_ids.get((kind, ev[key_field]))
            if first is not None and first >= ev["ts"] - retention:
                rejects["duplicate"] += 1
                continue
            seen_ids[(kind, ev[key_field])] = ev["ts"]
        # Sessions forgotten by this event (closed_ts < ts - R) no longer exist.
        for sid in [
            sid
            for sid, s in sessions.items()
            if s["closed_ts"] is not None and s["closed_ts"] < ev["ts"] - retention
        ]:
            del sessions[sid]
        if kind == "scan":
            accepted_scans.append(ev)
        elif kind == "tariff":
            tariffs[ev["tariff_id"]] = ev
        elif kind == "order":
            orders[ev["order_id"]] = ev
            rule_versions: dict[str, dict[str, Any]] = {}
            for e in earlier:
                if e["type"] == "commission_rule":
                    rule_versions[e["rule_id"]] = e
            for line in ev["lines"]:
                cands = [
                    s
                    for s in accepted_scans
                    if s["item_id"] == line["item_id"]
                    and ev["ts"] - rules.attribution_window_ms <= s["ts"] <= ev["ts"]
                    and s["sharer_id"] != ev["buyer_id"]
                ]
                match = None
                hint = [
                    s
                    for s in cands
                    if s["scan_id"] == ev.get("scan_id")
                    and s["scanner_id"] in (None, ev["buyer_id"])
                ]
                if hint:
                    match = hint[0]
                else:
                    mine = [s for s in cands if s["scanner_id"] == ev["buyer_id"]]
                    if mine:
                        match = max(mine, key=lambda s: (s["ts"], s["scan_id"]))
                if match is None:
                    continue
                ok = [
                    r
                    for r in rule_versions.values()
                    if r.get("active", True)
                    and r.get("sharer_id") in (None, match["sharer_id"])
                    and r.get("item_id") in (None, line["item_id"])
                    and (r["kind"] != "flat" or r.get("currency") == ev["currency"])
                ]

                def spec(r: dict[str, Any]) -> int:
                    return {(True, True): 3, (False, True): 2, (True, False): 1, (False, False): 0}[
                        (r.get("sharer_id") is not None, r.get("item_id") is not None)
                    ]

                ok.sort(key=lambda r: (-spec(r), r["rule_id"]))
                chosen = ok[0] if ok else None
                base = line["quantity"] * line["unit_price_minor"]
                amount = 0
                if chosen is not None:
                    if chosen["kind"] == "percent":
                        amount = rhu(base * chosen["bps"], 10000)
                    else:
                        amount = chosen["amount_minor"] * line["quantity"]
                    if chosen.get("cap_minor") is not None:
                        amount = min(amount, chosen["cap_minor"])
                attributed[(ev["order_id"], ev["ts"], line["item_id"])] = {
                    "q": line["quantity"],
                    "A": amount,
                    "r": 0,
                    "rev": 0,
                    "status": "pending",
                    "due": ev["ts"] + rules.holding_period_ms,
                    "sharer": match["sharer_id"],
                    "cur": ev["currency"],
                }
                commissions.append(
                    {
                        "kind": "accrual",
                        "order_id": ev["order_id"],
                        "item_id": line["item_id"],
                        "sharer_id": match["sharer_id"],
                        "scan_id": match["scan_id"],
                        "rule_id": chosen and chosen["rule_id"],
                        "commission_minor": amount,
                        "refund_id": None,
                        "status": "pending",
                        "ts": ev["ts"],
                    }
                )
        elif kind == "refund":
            order = orders.get(ev["order_id"])
            if order is None or order["ts"] < ev["ts"] - retention:
                rejects["unknown_order"] += 1
                continue
            wanted: Counter[str] = Counter()
            whole = "lines" not in ev
            for rl in ev.get("lines", []):
                wanted[rl["item_id"]] += rl["quantity"]
            for line in order["lines"]:
                a = attributed.get((order["order_id"], order["ts"], line["item_id"]))
                if a is None or (not whole and line["item_id"] not in wanted):
                    continue
                a["r"] = a["q"] if whole else min(a["q"], a["r"] + wanted[line["item_id"]])
                total = rhu(a["A"] * a["r"], a["q"])
                if total > a["rev"]:
                    commissions.append(
                        {
                            "kind": "reversal",
                            "order_id": order["order_id"],
                            "item_id": line["item_id"],
                            "refund_id": ev["refund_id"],
                            "commission_minor": a["rev"] - total,
                            "status": a["status"],
                            "ts": ev["ts"],
                        }
                    )
                    if a["status"] == "approved":  # a clawback
                        payable[(a["sharer"], a["cur"])] -= total - a["rev"]
                    a["rev"] = total
        elif kind == "payout":
            owed = payable[(ev["sharer_id"], ev["currency"])]
            if owed <= 0:
                rejects["nothing_to_pay"] += 1
            else:
                payouts.append(
                    {
                        "payout_id": ev["payout_id"],
                        "sharer_id": ev["sharer_id"],
                        "currency": ev["currency"],
                        "amount_minor": owed,
                        "ts": ev["ts"],
                    }
                )
                payable[(ev["sharer_id"], ev["currency"])] = 0
        elif kind == "session_start":
            if ev["tariff_id"] not in tariffs:
                rejects["unknown_tariff"] += 1
            elif ev["session_id"] in sessions:
                rejects["duplicate"] += 1
            else:
                sessions[ev["session_id"]] = {
                    "start": ev["ts"],
                    "tariff": tariffs[ev["tariff_id"]],
                    "seqs": set(),
                    "points": set(),
                    "billed": 0,
                    "count": 0,
                    "last": ev["ts"],
                    "interval": ev["report_interval_ms"],
                    "closed": None,
                    "closed_ts": None,
                    "end": None,
                    "version": 0,
                }
        elif kind == "segment":
            s = sessions.get(ev["session_id"])
            a, b = ev["start_ms"], ev["end_ms"]
            reason = None
            if s is None:
                reason = "unknown_session"
            elif ev["seq"] in s["seqs"]:
                reason = "duplicate"
            elif b <= a or b - a > rules.max_segment_ms:
                reason = "invalid_interval"
            elif b > ev["ts"] + rules.clock_skew_ms:
                reason = "future"
            elif s["closed"] and ev["ts"] > s["closed_ts"] + rules.late_grace_ms:
                reason = "late"
            elif b <= s["start"]:
                reason = "before_start"
            else:
                a = max(a, s["start"])
                if s["end"] is not None:
                    b = min(b, s["end"])
                    if b <= a:
                        reason = "after_end"
            if reason:
                rejects[reason] += 1
                continue
            assert s is not None
            s["seqs"].add(ev["seq"])
            # Points are ms; the sets stay small because segments are short in tests.
            s["points"].update(range(a, b))
            s["billed"] = len(s["points"])
            s["count"] += 1
            s["last"] = ev["ts"]
            emit_usage(ev["session_id"], ev["ts"])
            if ev["end"] and s["closed"] is None:
                s["closed"], s["closed_ts"], s["end"] = "end", ev["ts"], ev["end_ms"]
                emit_usage(ev["session_id"], ev["ts"])
    return {
        "commissions": commissions,
        "usage": usage,
        "rejects": dict(rejects),
        "payouts": payouts,
    }
