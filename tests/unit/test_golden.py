"""Golden logs (shared examples and ours) through the engine and `billing replay`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from state.config import RuleSettings
from tests.support.golden import (
    CASE_IDS,
    CASES,
    assert_matches,
    expected_of,
    replay_flags,
    settings_of,
)
from tests.support.logs import engine_outputs, read_jsonl


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_engine_matches_golden(case: Path):
    expected = expected_of(case)
    rules = RuleSettings(**settings_of(expected))
    assert_matches(engine_outputs(read_jsonl(case.with_suffix(".jsonl")), rules), expected)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_billing_replay_cli_matches_golden(case: Path, tmp_path: Path):
    expected = expected_of(case)
    out = tmp_path / "out.jsonl"
    log = str(case.with_suffix(".jsonl"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "programs.cli",
            "replay",
            log,
            "-o",
            str(out),
            *replay_flags(expected),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    assert_matches(read_jsonl(out), expected)
