"""Builders for SPEC events and the final-state summary SPEC "Determinism" defines."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from state.config import RuleSettings
from state.engine import run

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
_SHARED = Path(__file__).resolve().parents[3] / "shared" / "examples"
# SPEC's worked examples: from ../shared when it is there (it is the contract), else the
# copies kept beside our own golden logs (`spec-*`), so a lone clone still tests them.
SHARED = _SHARED if _SHARED.is_dir() else GOLDEN
SPEC_EXAMPLE_PREFIX = "" if _SHARED.is_dir() else "spec-"


def spec_example(name: str) -> Path:
    """Path of SPEC's worked example log `name` (commissions or metering)."""
    return SHARED / f"{SPEC_EXAMPLE_PREFIX}{name}.jsonl"


def rule(rule_id: str, ts: int = 0, **fields: Any) -> dict[str, Any]:
    fields.setdefault("kind", "percent")
    if fields["kind"] == "percent":
        fields.setdefault("bps", 1000)
    return {"type": "commission_rule", "rule_id": rule_id, "ts": ts, "active": True, **fields}


def scan(
    scan_id: str, ts: int, sharer: str, scanner: str | None, item: str = "i", share: str = "sh"
) -> dict[str, Any]:
    return {
        "type": "scan",
        "scan_id": scan_id,
        "ts": ts,
        "share_id": share,
        "item_id": item,
        "sharer_id": sharer,
        "scanner_id": scanner,
    }


def order(
    order_id: str,
    ts: int,
    buyer: str = "b",
    lines: list[tuple[str, int, int]] | None = None,
    currency: str = "USD",
    hint: str | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "order",
        "order_id": order_id,
        "ts": ts,
        "buyer_id": buyer,
        "currency": currency,
        "lines": [
            {"item_id": i, "quantity": q, "unit_price_minor": p}
            for i, q, p in (lines or [("i", 1, 1000)])
        ],
    }
    if hint is not None:
        event["scan_id"] = hint
    return event


def refund(
    refund_id: str, order_id: str, ts: int, lines: list[tuple[str, int]] | None = None
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "refund",
        "refund_id": refund_id,
        "order_id": order_id,
        "ts": ts,
    }
    if lines is not None:
        event["lines"] = [{"item_id": i, "quantity": q} for i, q in lines]
    return event


def payout(payout_id: str, ts: int, sharer: str = "s", currency: str = "USD") -> dict[str, Any]:
    return {
        "type": "payout",
        "payout_id": payout_id,
        "ts": ts,
        "sharer_id": sharer,
        "currency": currency,
    }


def tariff(tariff_id: str = "t", ts: int = 0, **fields: Any) -> dict[str, Any]:
    base = {"currency": "USD", "unit_ms": 1000, "price_minor": 10}
    return {"type": "tariff", "tariff_id": tariff_id, "ts": ts, **base, **fields}


def start(
    session_id: str = "s", ts: int = 1_000_000, tariff_id: str = "t", interval: int = 1000
) -> dict[str, Any]:
    return {
        "type": "session_start",
        "session_id": session_id,
        "ts": ts,
        "user_id": "u",
        "service_id": "v",
        "tariff_id": tariff_id,
        "report_interval_ms": interval,
    }


def seg(
    seq: int, ts: int, start_ms: int, end_ms: int, end: bool = False, session_id: str = "s"
) -> dict[str, Any]:
    return {
        "type": "segment",
        "session_id": session_id,
        "seq": seq,
        "ts": ts,
        "start_ms": start_ms,
        "end_ms": end_ms,
        "end": end,
    }


def positioned(events: Iterable[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(f"L{i}", e) for i, e in enumerate(events, 1)]


def final_state(outputs: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Commission and payout outputs (a set), last usage per session, rejects per reason."""
    commissions = []
    usage: dict[str, dict[str, Any]] = {}
    rejects: Counter[str] = Counter()
    seen: set[str] = set()
    for out in outputs:
        if out["output_id"] in seen:
            continue  # a reader drops repeats (at-least-once delivery)
        seen.add(out["output_id"])
        if out["type"] in ("commission", "payout"):
            commissions.append(json.dumps(out, sort_keys=True))
        elif out["type"] == "usage":
            # After Retention one session_id can name two sessions: told apart by start.
            key = f"{out['session_id']}@{out['started_ts']}"
            prev = usage.get(key)
            if prev is None or out["version"] > prev["version"]:
                usage[key] = out
        else:
            rejects[out["reason"]] += 1
    return {"commissions": sorted(commissions), "usage": usage, "rejects": dict(rejects)}


def usage_for(state: dict[str, Any], session_id: str) -> dict[str, Any] | None:
    """The last usage of the latest session under `session_id` in a final state."""
    mine = [u for u in state["usage"].values() if u["session_id"] == session_id]
    return max(mine, key=lambda u: u["started_ts"]) if mine else None


def engine_outputs(
    events: Iterable[dict[str, Any]], rules: RuleSettings | None = None
) -> list[dict[str, Any]]:
    return list(run(positioned(events), rules))


def accruals(
    events: Iterable[dict[str, Any]], rules: RuleSettings | None = None
) -> list[dict[str, Any]]:
    """The accrual records the plain loop emits for `events`."""
    return [
        o
        for o in engine_outputs(events, rules)
        if o["type"] == "commission" and o["kind"] == "accrual"
    ]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
