"""The Redis store's best scans (flows.best_scans) against a naive running max,
through crashes: a re-run resumes at the last snapshot bytewax committed, at most
one behind the last one taken, and must answer every question as the first run
did, although the store already holds what the lost run noted after it."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows import best_scans
from flows.facts_redis import RedisFacts, stream_position
from state.messages import LogEvent
from tests.support.logs import scan

TOUCHES = ("touch:i|b", "touch:j|b")

# One step: a scan of touch k at a ts (or a question only), then maybe a snapshot.
step = st.tuples(st.integers(0, 1), st.integers(0, 5), st.booleans(), st.booleans())


def _naive(scans: list[tuple[int, str, int, str]], touch: str, n: int) -> tuple | None:
    """The best (ts, scan_id) of `touch` among the scans at positions before n."""
    found = [(ts, sid) for pos, k, ts, sid in scans if k == touch and pos < n]
    return max(found) if found else None


def _run(facts: RedisFacts, steps, start: int, stop: int, answers: dict, checkpoints: list) -> None:
    for n in range(start, stop):
        k, dt, is_scan, snap = steps[n]
        position = f"{n + 1}-0"
        event = scan(f"s{n:03d}", 1000 + n + dt, f"u{n % 3}", "b", item=TOUCHES[k][6])
        facts.prepare([LogEvent(position, event)])
        for touch in TOUCHES:
            found = facts.best_scan(touch, position, 0)
            answers[(n, touch)] = None if found is None else (found["ts"], found["scan_id"])
        if is_scan:
            facts.note_scan(TOUCHES[k], event, position)
        facts.flush()
        facts.settle()
        if snap:
            facts.checkpoint()
            checkpoints.append(n + 1)  # a re-run from here starts at step n + 1


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(step, min_size=4, max_size=40), data=st.data())
def test_a_rerun_answers_every_best_scan_as_the_first_run(steps, data, redis_client, keys):
    for key in redis_client.scan_iter(f"{keys.base}:fact:*"):
        redis_client.delete(key)
    scans = [
        (n + 1, TOUCHES[k], 1000 + n + dt, f"s{n:03d}")
        for n, (k, dt, is_scan, _snap) in enumerate(steps)
        if is_scan
    ]
    expected = {(n, t): _naive(scans, t, n + 1) for n in range(len(steps)) for t in TOUCHES}
    first: dict = {}
    checkpoints: list[int] = [0]  # no snapshot yet: a re-run starts at the beginning
    crash = data.draw(st.integers(1, len(steps)), label="crash after step")
    _run(
        RedisFacts(redis_client, keys, 10**12, "log:commissions"),
        steps,
        0,
        crash,
        first,
        checkpoints,
    )
    # The committed snapshot: the last taken, or the one before it.
    resume = checkpoints[
        -1 - data.draw(st.integers(0, min(1, len(checkpoints) - 1)), label="behind")
    ]
    rerun: dict = {}
    again: list[int] = [resume]
    second_crash = data.draw(st.integers(resume, len(steps)), label="second crash")
    _run(
        RedisFacts(redis_client, keys, 10**12, "log:commissions"),
        steps,
        resume,
        second_crash,
        rerun,
        again,
    )
    resume = again[-1 - data.draw(st.integers(0, min(1, len(again) - 1)), label="behind again")]
    _run(
        RedisFacts(redis_client, keys, 10**12, "log:commissions"),
        steps,
        resume,
        len(steps),
        rerun,
        [],
    )
    for (n, touch), answer in {**first, **rerun}.items():
        assert answer == expected[(n, touch)], (n, touch)
    for touch in TOUCHES:  # never more than the boundaries kept, and the newest
        raw = redis_client.get(keys.fact("best_scan", touch.removeprefix("touch:")))
        assert raw is None or raw.count("[") - 1 <= best_scans.BOUNDARIES_KEPT + 1


@pytest.mark.parametrize("scans", [1, 1000])
def test_a_hot_buyers_fact_stays_small(scans, redis_client, keys):
    """One buyer scanning one item all day: the fact holds a few entries, not the day."""
    facts = RedisFacts(redis_client, keys, 10**12, "log:commissions")
    for n in range(scans):
        position = f"{n + 1}-0"
        facts.prepare([LogEvent(position, scan(f"s{n}", 1000 + n, "u", "b"))])
        facts.note_scan("touch:i|b", scan(f"s{n}", 1000 + n, "u", "b"), position)
        if n % 10 == 9:
            facts.flush()
            facts.checkpoint()
    facts.flush()
    facts.settle()
    entries = facts._uses("best_scan", "i|b")[1]
    assert 1 <= len(entries) <= best_scans.BOUNDARIES_KEPT + 1
    assert stream_position(entries[-1][4]) == (scans, 0)
