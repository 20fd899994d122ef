"""Golden logs (shared examples and ours) through the engine and `billing replay`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from state.config import RuleSettings
from tests.logs import GOLDEN, engine_outputs, final_state, read_jsonl, spec_example

CASES = [spec_example(name).with_suffix("")
         for name in ("commissions", "metering", "retention", "lifecycle")]
CASES += [GOLDEN / "attribution", GOLDEN / "metering", GOLDEN / "payouts"]


def settings_of(expected) -> dict[str, int]:
    """The settings an expected file names (the newer files carry them)."""
    return expected.get("settings", {})


def as_expected_format(outputs, expected):
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
        usage = {u["session_id"]: {k: u[k] for k in wanted.get(u["session_id"], {})}
                 for u in state["usage"].values()}
    else:  # the newer ones: a list, sessions told apart by `started_ts`
        fields_u = set().union(*(set(w) for w in wanted)) if wanted else set()
        usage = sorted(({k: u[k] for k in fields_u} for u in state["usage"].values()),
                       key=lambda u: (u["session_id"], u["started_ts"]))
    got = {"commissions": commissions, "final_usage": usage, "rejects": state["rejects"]}
    if "payouts" in expected:
        got["payouts"] = sorted(({k: v for k, v in o.items() if k not in ("type", "output_id")}
                                 for o in outputs if o["type"] == "payout"),
                                key=lambda p: (p["ts"], p["payout_id"]))
    return got


def _key(c):
    return (c["kind"], c["order_id"], c["item_id"], c["refund_id"] or "")


@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}/{c.name}" for c in CASES])
def test_engine_matches_golden(case: Path):
    expected = json.loads(case.with_suffix(".expected.json").read_text())
    got = as_expected_format(engine_outputs(read_jsonl(case.with_suffix(".jsonl")),
                                            RuleSettings(**settings_of(expected))), expected)
    assert sorted(got["commissions"], key=_key) == sorted(expected["commissions"], key=_key)
    assert got["final_usage"] == expected["final_usage"]
    assert got["rejects"] == expected["rejects"]
    assert got.get("payouts") == expected.get("payouts")


@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}/{c.name}" for c in CASES])
def test_billing_replay_cli_matches_golden(case: Path, tmp_path: Path):
    expected = json.loads(case.with_suffix(".expected.json").read_text())
    out = tmp_path / "out.jsonl"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in settings_of(expected).items()]
    subprocess.run(
        [sys.executable, "-m", "billing.cli", "replay", str(case.with_suffix(".jsonl")),
         "--output", str(out), *flags],
        check=True, capture_output=True, text=True,
    )
    got = as_expected_format(read_jsonl(out), expected)
    assert sorted(got["commissions"], key=_key) == sorted(expected["commissions"], key=_key)
    assert got["final_usage"] == expected["final_usage"]
    assert got["rejects"] == expected["rejects"]
    assert got.get("payouts") == expected.get("payouts")
