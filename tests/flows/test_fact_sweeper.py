"""Facts are forgotten by the log's time (flows.fact_sweeper), never by Redis's clock:
live they carry no TTL, the commission sequencer publishes where a re-run may start,
and the sweeper deletes exactly the facts last used more than R and the margin
before that. A re-run after a crash with the sweeper running beside both runs
decides every event as the first run and the plain loop did."""

from __future__ import annotations

import pickle
import random

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.keys import Keys
from flows import fact_sweeper
from flows.fact_sweeper import FactSweeper
from flows.facts_redis import RedisFacts
from harness.live import with_stream_ids
from state.engine import Engine
from state.messages import LogEvent
from state.sharding import COMMISSIONS
from state.testing import SMALL_RULES, random_log
from tests.support.logs import order

R = SMALL_RULES.retention_ms


def _fact(conn, keys: Keys, ident: str, *tss: int) -> str:
    key = keys.fact("order", ident)
    conn.set(key, orjson.dumps([[ts, f"{n + 1}-0", None] for n, ts in enumerate(tss)]))
    return key


@pytest.mark.parametrize("cluster_names", [False, True])
def test_the_sweeper_deletes_exactly_the_facts_behind_the_horizon(
    redis_client, keys: Keys, cluster_names: bool
) -> None:
    """Newest use before horizon - keep: gone; at or after it: kept, whatever the
    older uses. Nothing goes before a horizon is published; other keys and other
    deployments' facts are never touched. (`cluster_names`: the keys as on a Redis
    Cluster, each fact under its shard's hash tag, swept one slot at a time.)"""
    keys = Keys(keys.prefix, cluster=cluster_names)
    other = Keys(keys.prefix + "x:", cluster=cluster_names)
    keep, horizon = 1_000, 10_000
    old = _fact(redis_client, keys, "old", 100, 8_999)
    edge = _fact(redis_client, keys, "edge", 9_000)
    new = _fact(redis_client, keys, "new", 100, 9_500)
    best = keys.fact("best_scan", "i|b")
    redis_client.set(best, orjson.dumps([[8_000, "c", "s", "sh", "1-0"]]))
    legacy = keys.fact("touch", "i|b")
    redis_client.set(legacy, orjson.dumps([20, "m", "s", "3-0"]))  # layout 1: kept
    theirs = _fact(redis_client, other, "old", 100)
    view = keys.order_view("o")
    redis_client.set(view, "x")
    sweeper = FactSweeper(redis_client, keys, keep)
    try:
        assert sweeper.sweep_all() == 0  # no horizon yet
        redis_client.set(keys.facts_horizon, horizon)
        assert sweeper.sweep_all() == 2
        assert redis_client.exists(old, best) == 0
        assert redis_client.exists(edge, new, legacy, theirs, view) == 5
    finally:  # names under a hash tag do not start with the prefix the fixture clears
        for key in redis_client.scan_iter(match=f"{{{keys.prefix}*"):
            redis_client.delete(key)


def test_a_pass_goes_over_every_fact_a_step_at_a_time(redis_client, keys: Keys, monkeypatch):
    monkeypatch.setattr(fact_sweeper, "STEP_KEYS", 7)
    for n in range(50):
        _fact(redis_client, keys, f"o{n}", n * 100)
    redis_client.set(keys.facts_horizon, 3_000)
    sweeper = FactSweeper(redis_client, keys, 0)
    steps: list[int] = []
    while sum(steps) < 30 and len(steps) < 100:
        steps.append(sweeper.step())
    assert sum(steps) == 30 and max(steps) <= 7
    assert len(list(redis_client.scan_iter(match=keys.fact_pattern()))) == 20


def test_a_step_goes_on_while_its_chunks_are_mostly_facts_to_delete(
    redis_client, keys: Keys, monkeypatch
):
    """A busy deployment makes more facts a second than one chunk a tick examines; its
    chunks then come back full of expired facts, and a step goes on within its
    budget. Where little is to delete, a step is one chunk."""
    monkeypatch.setattr(fact_sweeper, "STEP_KEYS", 10)
    for n in range(60):
        _fact(redis_client, keys, f"old{n}", 100)
    redis_client.set(keys.facts_horizon, 10_000)
    assert FactSweeper(redis_client, keys, 0).step(budget_s=5.0) == 60
    for n in range(60):
        _fact(redis_client, keys, f"live{n}", 50_000)
    for n in range(6):
        _fact(redis_client, keys, f"old{n}", 100)
    sweeper = FactSweeper(redis_client, keys, 0)
    first = sweeper.step(budget_s=5.0)
    assert first <= 6 and sweeper._scan is not None  # one chunk, the pass goes on
    assert first + sweeper.sweep_all() == 6


def test_live_facts_and_wake_ups_carry_no_ttl_and_the_horizon_is_published(
    redis_client, keys: Keys
) -> None:
    """No TTL (`ttl_ms=None`, as `billing flows` runs): a flows outage longer than any
    margin forgets nothing. The commission sequencer's store publishes the earliest
    place a re-run may start at each snapshot; a session shard's publishes nothing."""
    shard = RedisFacts(redis_client, keys, None, "sessions:0")
    assert shard.due_between(40_000, 50_000) == []
    shard.checkpoint()
    shard.settle()
    assert redis_client.get(keys.facts_horizon) is None
    facts = RedisFacts(redis_client, keys, None, COMMISSIONS)
    facts.prepare([LogEvent("1-0", order("o1", 50_000))])
    assert facts.due_between(40_000, 50_000) == []  # this process starts at 40,000
    assert facts.first_use("order", "o1", 50_000, "1-0", R)
    facts.wake_at(90_000, "line:o1")
    facts.flush()
    facts.settle()
    facts.checkpoint()
    facts.settle()
    assert redis_client.pttl(keys.fact("order", "o1")) == -1
    assert redis_client.pttl(keys.wakeups(1, COMMISSIONS)) == -1
    assert redis_client.pttl(keys.wakeups_index(COMMISSIONS)) == -1
    assert int(redis_client.get(keys.facts_horizon)) == 40_000
    for _ in range(4):  # the process's own start leaves the last four places
        facts.due_between(facts.wakes._time, facts.wakes._time + 1_000)
        facts.checkpoint()
    facts.settle()
    assert int(redis_client.get(keys.facts_horizon)) == 51_000
    facts.close()
    shard.close()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 10**6), margin=st.sampled_from([0, 5_000]), every=st.sampled_from([7, 40])
)
def test_a_rerun_with_the_sweeper_running_decides_as_the_first_run(
    redis_client, keys: Keys, seed: int, margin: int, every: int
) -> None:
    """The first run snapshots every `every` events and the sweeper sweeps after each
    snapshot (margin 0: as close behind the horizon as it may go); the crash comes
    anywhere, and the re-run starts at the last snapshot or the one before (bytewax
    resumes at most one behind the last taken), the sweeper still sweeping. Every
    commission and payout output given again has a `ts` no more than R before the
    horizon then published, so its applied mark is never swept before it."""
    rng = random.Random(seed)
    events = [LogEvent(p, e) for p, e in with_stream_ids(random_log(seed, 1200))]
    example = Keys(f"{keys.prefix}s{seed}m{margin}e{every}:")
    sweeper = FactSweeper(redis_client, example, R + margin)
    first = Engine(SMALL_RULES, RedisFacts(redis_client, example, None, COMMISSIONS))
    crash = rng.randrange(every * 3, len(events))
    snapshots: list[tuple[int, bytes]] = []
    outputs: list = []
    swept = 0
    for n, entry in enumerate(events[:crash]):
        if n and n % every == 0:
            first.facts.settle()
            snapshots.append((n, pickle.dumps((first.sequencer, first.keys))))
            first.facts.checkpoint()
            first.facts.settle()
            swept += sweeper.sweep_all()
        outputs.append(first.on_input(entry))
    first.facts.settle()
    swept += sweeper.sweep_all()
    start, snapshot = snapshots[-1] if rng.random() < 0.5 or len(snapshots) < 2 else snapshots[-2]
    rerun = Engine(SMALL_RULES, RedisFacts(redis_client, example, None, COMMISSIONS))
    rerun.sequencer, rerun.keys = pickle.loads(snapshot)
    again = []
    horizon = int(redis_client.get(example.facts_horizon) or 0)
    for n, entry in enumerate(events[start:], start):
        horizon = max(horizon, int(redis_client.get(example.facts_horizon) or 0))
        again.append(rerun.on_input(entry))
        if n < crash:
            # Given again: its applied mark must still be there (flows.fact_sweeper's
            # MarkSweeper keeps the marks of outputs with ts >= horizon - R - margin).
            for out in again[-1]:
                if out["type"] in ("commission", "payout"):
                    assert out["ts"] >= horizon - R, out
        if n % every == 0:
            rerun.facts.settle()
            rerun.facts.checkpoint()
            rerun.facts.settle()
            swept += sweeper.sweep_all()
    assert again[: crash - start] == outputs[start:crash]
    plain = Engine(SMALL_RULES)
    expected = [plain.on_input(entry) for entry in events]
    assert again == expected[start:]
    assert rerun.finish() == plain.finish()
    # The sweeper did forget, in one run or the other: the log spans several R.
    assert swept > 0
    for key in redis_client.scan_iter(match=f"{example.prefix}*"):
        redis_client.delete(key)
