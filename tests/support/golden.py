"""The golden logs (SPEC's worked examples and ours) and how outputs are compared with them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.logs import GOLDEN, final_state, spec_example

CASES = [
    spec_example(name).with_suffix("")
    for name in ("commissions", "metering", "retention", "lifecycle")
]
CASES += [GOLDEN / "attribution", GOLDEN / "metering", GOLDEN / "payouts"]
CASE_IDS = [f"{c.parent.name}/{c.name}" for c in CASES]


def expected_of(case: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(case.with_suffix(".expected.json").read_text())
    return result


def settings_of(expected: dict[str, Any]) -> dict[str, int]:
    """The settings an expected file names (the newer files carry them)."""
    return expected.get("settings", {})


def replay_flags(expected: dict[str, Any]) -> list[str]:
    """`billing replay` flags for the settings an expected file names."""
    return [f"--{k.replace('_', '-')}={v}" for k, v in settings_of(expected).items()]


def as_expected_format(outputs: list[dict[str, Any]], expected: dict[str, Any]) -> dict[str, Any]:
    state = final_state(outputs)
    fields = set(expected["commissions"][0]) if expected["commissions"] else set()
    commissions = []
    for out in outputs:
        if out["type"] == "commission":
            flat = {**out, "rule_id": out["rule"] and out["rule"]["rule_id"]}
            commissions.append({k: flat[k] for k in fields})
    wanted = expected["final_usage"]
    usage: object
    if isinstance(wanted, dict):  # the older files: one session per id
        usage = {
            u["session_id"]: {k: u[k] for k in wanted.get(u["session_id"], {})}
            for u in state["usage"].values()
        }
    else:  # the newer ones: a list, sessions told apart by `started_ts`
        fields_u = set().union(*(set(w) for w in wanted)) if wanted else set()
        usage = sorted(
            ({k: u[k] for k in fields_u} for u in state["usage"].values()),
            key=lambda u: (u["session_id"], u["started_ts"]),
        )
    got = {"commissions": commissions, "final_usage": usage, "rejects": state["rejects"]}
    if "payouts" in expected:
        got["payouts"] = sorted(
            (
                {k: v for k, v in o.items() if k not in ("type", "output_id")}
                for o in outputs
                if o["type"] == "payout"
            ),
            key=lambda p: (p["ts"], p["payout_id"]),
        )
    return got


def _key(c: dict[str, Any]) -> tuple[str, str, str, str]:
    return (c["kind"], c["order_id"], c["item_id"], c["refund_id"] or "")


def assert_matches(outputs: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    """Outputs give the expected file's commissions, final usage, rejects and payouts."""
    got = as_expected_format(outputs, expected)
    assert sorted(got["commissions"], key=_key) == sorted(expected["commissions"], key=_key)
    assert got["final_usage"] == expected["final_usage"]
    assert got["rejects"] == expected["rejects"]
    assert got.get("payouts") == expected.get("payouts")
