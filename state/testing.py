"""Random SPEC logs: every event type, with duplicates, retransmits, skew and gaps."""

from __future__ import annotations

import random
from typing import Any

from state.config import RuleSettings

# Small windows so that expiry, idle closing, grace and retention (ids,
# orders and sessions forgotten, then reused) all happen often.
SMALL_RULES = RuleSettings(
    attribution_window_ms=60_000,
    max_segment_ms=5_000,
    clock_skew_ms=500,
    idle_timeout_factor=3,
    late_grace_ms=20_000,
    holding_period_ms=30_000,
    retention_ms=90_000,
)


def random_log(seed: int, n: int, t0: int = 1_700_000_000_000) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    ts = t0
    items = [f"i{k}" for k in range(4)]
    users = [f"u{k}" for k in range(5)]
    currencies = ["USD", "EUR"]
    events: list[dict[str, Any]] = []
    scans: list[str] = []
    orders: list[dict[str, Any]] = []
    sessions: dict[str, dict[str, Any]] = {}
    counter = 0

    def new_id(prefix: str) -> str:
        nonlocal counter
        counter += 1
        return f"{prefix}{counter}"

    for t in range(3):
        events.append(
            {
                "type": "tariff",
                "tariff_id": f"t{t}",
                "ts": ts,
                "currency": "USD",
                "unit_ms": 1000,
                "price_minor": 3,
                "free_ms": 0,
                "min_charge_minor": 0,
            }
        )
    for _ in range(n):
        ts += rng.choice([0, 0, 1, 7, 50, 100, 200, 300, 1000, 2500])
        if rng.random() < 0.02:
            ts += rng.choice([8000, 30_000])
        roll = rng.random()
        if roll < 0.04:
            kind = rng.choice(["percent", "flat"])
            event: dict[str, Any] = {
                "type": "commission_rule",
                "rule_id": f"r{rng.randrange(6)}",
                "ts": ts,
                "kind": kind,
                "active": rng.random() > 0.15,
            }
            if kind == "percent":
                event["bps"] = rng.choice([0, 1, 333, 500, 1250, 10_000])
            else:
                event["amount_minor"] = rng.randrange(0, 200)
                event["currency"] = rng.choice(currencies)
            if rng.random() < 0.4:
                event["sharer_id"] = rng.choice(users)
            if rng.random() < 0.4:
                event["item_id"] = rng.choice(items)
            if rng.random() < 0.3:
                event["cap_minor"] = rng.randrange(0, 300)
        elif roll < 0.07:
            event = {
                "type": "tariff",
                "tariff_id": f"t{rng.randrange(3)}",
                "ts": ts,
                "currency": rng.choice(currencies),
                "unit_ms": rng.choice([1, 250, 1000]),
                "price_minor": rng.randrange(0, 20),
                "free_ms": rng.choice([0, 0, 700]),
                "min_charge_minor": rng.choice([0, 0, 15]),
            }
        elif roll < 0.30:
            scan_id = rng.choice(scans) if scans and rng.random() < 0.05 else new_id("c")
            scans.append(scan_id)
            event = {
                "type": "scan",
                "scan_id": scan_id,
                "ts": ts,
                "share_id": "sh",
                "item_id": rng.choice(items),
                "sharer_id": rng.choice(users),
                "scanner_id": None if rng.random() < 0.2 else rng.choice(users),
            }
        elif roll < 0.42:
            dup = orders and rng.random() < 0.05
            order_id = rng.choice(orders)["order_id"] if dup else new_id("o")
            chosen = rng.sample(items, rng.randint(1, 3))
            event = {
                "type": "order",
                "order_id": order_id,
                "ts": ts,
                "buyer_id": rng.choice(users),
                "currency": rng.choice(currencies),
                "lines": [
                    {
                        "item_id": i,
                        "quantity": rng.randint(1, 5),
                        "unit_price_minor": rng.choice([0, 1, 999, 1001, 12345]),
                    }
                    for i in chosen
                ],
            }
            if scans and rng.random() < 0.3:
                event["scan_id"] = rng.choice(scans)
            orders.append(event)
        elif roll < 0.50:
            target = rng.choice(orders)["order_id"] if orders and rng.random() < 0.9 else "nope"
            event = {
                "type": "refund",
                "refund_id": new_id("f") if rng.random() > 0.05 else "f1",
                "order_id": target,
                "ts": ts,
            }
            if rng.random() < 0.6:
                event["lines"] = [{"item_id": rng.choice(items), "quantity": rng.randint(1, 3)}]
        elif roll < 0.53:
            event = {
                "type": "payout",
                "ts": ts,
                "sharer_id": rng.choice(users),
                "currency": rng.choice(currencies),
                "payout_id": new_id("p") if rng.random() > 0.05 else "p1",
            }
        elif roll < 0.59:
            session_id = (
                rng.choice(list(sessions)) if sessions and rng.random() < 0.05 else new_id("s")
            )
            event = {
                "type": "session_start",
                "session_id": session_id,
                "ts": ts,
                "user_id": rng.choice(users),
                "service_id": "svc",
                "tariff_id": f"t{rng.randrange(4) if rng.random() < 0.1 else 0}",
                "report_interval_ms": rng.choice([500, 1000, 2000]),
            }
            sessions.setdefault(session_id, {"cursor": ts, "seq": 0})
        else:
            if not sessions:
                continue
            recent = list(sessions)[-6:]
            roll = rng.random()
            # Now and then a segment for any session, forgotten ones included.
            session_id = (
                rng.choice(recent)
                if roll > 0.04
                else rng.choice(list(sessions))
                if roll > 0.02
                else "ghost"
            )
            state = sessions.get(session_id, {"cursor": ts, "seq": 0})
            length = rng.choice([1, 300, 500, 1000, 2000, 4999, 5001])
            start = max(state["cursor"], ts - 2000) + rng.choice([-1500, -200, 0, 0, 100])
            end = start + length
            if rng.random() < 0.05:
                end = start - 1
            seq = state["seq"] if rng.random() > 0.1 else max(0, state["seq"] - 1)
            state["seq"] = seq + 1
            state["cursor"] = min(end, ts + rng.choice([0, 400, 700]))
            event = {
                "type": "segment",
                "session_id": session_id,
                "seq": seq,
                "ts": ts,
                "start_ms": start,
                "end_ms": end,
                "end": rng.random() < 0.08,
            }
        events.append(event)
        if rng.random() < 0.02:
            events.append(dict(event))  # an exact duplicate line
    return events


# What the crash tests stretch a log by to make it quiet: a second becomes ten hours,
# so SMALL_RULES' R is 37.5 days and an epoch of a catch-up covers days of log time.
QUIET_FACTOR = 36_000

# A log's time fields: moments (stretched from the log's start) and lengths.
_MOMENTS = ("ts", "start_ms", "end_ms")
_LENGTHS = ("unit_ms", "report_interval_ms", "free_ms")


def stretched(
    log: list[dict[str, Any]], rules: RuleSettings, factor: int
) -> tuple[list[dict[str, Any]], RuleSettings]:
    """The same log and settings with every time `factor` times as long: the same
    bill, on a quiet log. A catch-up then moves days of log time (more than R, for
    a large factor) in one epoch, which a re-run after a crash must read again."""
    t0 = log[0]["ts"] if log else 0
    out = []
    for event in log:
        event = dict(event)
        for name in _MOMENTS:
            if name in event:
                event[name] = t0 + (event[name] - t0) * factor
        for name in _LENGTHS:
            if name in event:
                event[name] *= factor
        out.append(event)
    longer = {name: getattr(rules, name) * factor for name in vars(rules) if name.endswith("_ms")}
    return out, RuleSettings(**{**vars(rules), **longer})
