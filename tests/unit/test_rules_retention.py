"""SPEC "Retention", one case (at least) per sentence, plus the settings check and
properties on random logs (the Redis fact store's side: test_facts_redis_retention)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from state.config import RuleSettings
from state.engine import Engine
from state.facts import MemoryFacts
from state.testing import SMALL_RULES, random_log
from tests.support.logs import engine_outputs, order, refund, rule, scan, seg, start, tariff

R = 100_000
RULES = RuleSettings(
    attribution_window_ms=50_000, holding_period_ms=50_000, late_grace_ms=10_000, retention_ms=R
)
T = 1_000_000


def rejects(events, rules=RULES) -> Counter[str]:
    return Counter(o["reason"] for o in engine_outputs(events, rules) if o["type"] == "reject")


SHARE = {"type": "share", "item_id": "i", "sharer_id": "al", "activity_url": "https://x.example/"}


@pytest.mark.parametrize(
    ("kind", "make"),
    [
        ("share", lambda ts: {**SHARE, "share_id": "x", "ts": ts}),
        ("scan", lambda ts: scan("c", ts, "al", "b")),
        ("order", lambda ts: order("o", ts)),
        ("refund", lambda ts: refund("f", "nope", ts)),
    ],
)
@pytest.mark.parametrize(("gap", "duplicate"), [(0, True), (R, True), (R + 1, False)])
def test_an_id_counts_as_seen_while_its_first_use_is_at_most_r_earlier(kind, make, gap, duplicate):
    """`first.ts >= event.ts - R`: seen (a duplicate); past that, forgotten (new)."""
    got = rejects([make(T), make(T + gap)])
    assert got["duplicate"] == (1 if duplicate else 0), got


@pytest.mark.parametrize(("gap", "duplicate"), [(R, True), (R + 1, False)])
def test_a_first_use_behind_the_log_time_is_measured_by_its_own_ts(gap, duplicate):
    """The first use came late (its ts behind the log's time): R counts from its
    ts, not from when it arrived, and not from the events held before it."""
    first = T - 60_000
    events = [scan("x", T, "al", None, item="j"), order("o", first), order("o", first + gap)]
    assert rejects(events)["duplicate"] == (1 if duplicate else 0)


def test_a_duplicate_within_r_does_not_renew_the_first_use():
    """The first use wins: a repeat inside R is rejected and does not move the bound."""
    events = [order("o", T), order("o", T + R), order("o", T + R + 1)]
    outs = engine_outputs(events, RULES)
    assert [o["reason"] for o in outs if o["type"] == "reject"] == ["duplicate"]


@pytest.mark.parametrize(("gap", "reason"), [(R, None), (R + 1, "unknown_order")])
def test_orders_are_forgotten_past_r(gap, reason):
    """A refund of a forgotten order is `unknown_order` and reverses nothing."""
    events = [rule("r"), scan("c", T, "al", "b"), order("o", T + 1), refund("f", "o", T + 1 + gap)]
    outs = engine_outputs(events, RULES)
    reversals = [o for o in outs if o["type"] == "commission" and o["kind"] == "reversal"]
    got = [o["reason"] for o in outs if o["type"] == "reject"]
    assert got == ([reason] if reason else [])
    assert len(reversals) == (0 if reason else 1)


def test_a_reused_order_id_is_a_new_order_with_its_own_output_ids():
    events = [
        rule("r"),
        scan("c", T, "al", "b"),
        order("o", T + 1),
        scan("c2", T + R, "al", "b"),
        order("o", T + R + 2),
        refund("f", "o", T + R + 3),
    ]
    outs = [o for o in engine_outputs(events, RULES) if o["type"] == "commission"]
    assert [(o["kind"], o["scan_id"]) for o in outs] == [
        ("accrual", "c"),
        ("approval", "c"),
        ("accrual", "c2"),
        ("reversal", "c2"),
    ]
    assert len({o["output_id"] for o in outs}) == 4


CLOSED = T + 2000  # the session below closes by its end flag at this ts


def session_then(*later):
    return [tariff(), start(ts=T), seg(0, CLOSED, T, T + 1000, end=True), *later]


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (seg(0, CLOSED + R, T, T + 10), "duplicate"),  # still known: its seq was taken
        (seg(1, CLOSED + R, T, T + 10), "late"),
        (seg(1, CLOSED + R + 1, T, T + 10), "unknown_session"),  # forgotten
        (start(ts=CLOSED + R), "duplicate"),
    ],
)
def test_sessions_are_forgotten_once_closed_more_than_r_ago(event, reason):
    assert rejects(session_then(event)) == Counter({reason: 1})


def test_a_start_past_r_starts_a_new_session_under_the_same_id():
    later = CLOSED + R + 1
    outs = engine_outputs(
        session_then(start(ts=later), seg(0, later + 500, later, later + 500)), RULES
    )
    usage = [o for o in outs if o["type"] == "usage"]
    assert {o["started_ts"] for o in usage} == {T, later}
    assert len({o["output_id"] for o in usage}) == len(usage)
    latest = [o for o in usage if o["started_ts"] == later]
    assert latest[-1]["billed_ms"] == 500 and latest[-1]["version"] == 1


def test_open_sessions_are_never_forgotten():
    """Segments every 1 s for 3 R: the session stays one session, billed throughout."""
    events = [tariff(), start(ts=T)]
    for n in range(3 * R // 1000):
        events.append(seg(n, T + (n + 1) * 1000, T + n * 1000, T + (n + 1) * 1000))
    usage = [o for o in engine_outputs(events, RULES) if o["type"] == "usage"]
    assert {o["started_ts"] for o in usage} == {T}
    assert usage[-1]["billed_ms"] == 3 * R and usage[-1]["status"] == "open"


@pytest.mark.parametrize("name", ["attribution_window_ms", "holding_period_ms", "late_grace_ms"])
def test_retention_shorter_than_a_window_is_refused(name):
    with pytest.raises(ValueError, match=f"retention_ms .* must be at least {name}"):
        replace(RULES, **{name: R + 1})


@pytest.mark.parametrize("command", ["replay", "flows"])
def test_the_cli_refuses_them_before_reading_anything(command, tmp_path):
    args = [str(tmp_path / "missing.jsonl")] if command == "replay" else []
    result = subprocess.run(
        [sys.executable, "-m", "programs.cli", command, *args, "--retention-ms", "1000"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "retention_ms (1000) must be at least attribution_window_ms" in result.stderr


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([60_000, 90_000, 200_000]))
def test_output_ids_never_name_two_outputs(seed, retention):
    rules = replace(SMALL_RULES, retention_ms=retention)
    outs = engine_outputs(random_log(seed, 300), rules)
    by_id: dict[str, object] = {}
    for out in outs:
        assert by_id.setdefault(out["output_id"], out) == out


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_facts_held_follow_the_last_r_of_the_log(seed):
    """The fact store holds no id first used more than R before the log's time."""
    log = random_log(seed, 300)
    facts = MemoryFacts()
    engine = Engine(SMALL_RULES, facts)
    for n, event in enumerate(log):
        engine.feed(event, f"L{n}")
        oldest = event["ts"] - SMALL_RULES.retention_ms
        assert all(ts >= oldest for ts, _v in facts.recent.by_key.values())
