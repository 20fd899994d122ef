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
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from billing.keys import Keys
from flows import fact_sweeper
from flows.fact_sweeper import FactSweeper, LegacyFactScan
from flows.facts_redis import RedisFacts
from harness.live import with_stream_ids
from state.engine import Engine
from state.messages import LogEvent
from state.sharding import COMMISSIONS
from state.testing import SMALL_RULES, random_log
from tests.support.logs import order

R = SMALL_RULES.retention_ms


MINUTE = 60_000


def _fact(conn, keys: Keys, ident: str, *tss: int) -> str:
    """A fact as an earlier version wrote it: no bucket."""
    key = keys.fact("order", ident)
    conn.set(key, orjson.dumps([[ts, f"{n + 1}-0", None] for n, ts in enumerate(tss)]))
    return key


def _written(conn, keys: Keys, facts: dict[str, list]) -> None:
    """Facts as the flows write them (flows.facts_redis: live, no TTL), each into the
    bucket of its newest use's minute."""
    store = RedisFacts(conn, keys, None, COMMISSIONS)
    for key, entries in facts.items():
        store._facts[key] = entries
        store._dirty.add(key)
    store.flush()
    store.close()


def _uses(*tss: int) -> list:
    return [[ts, f"{n + 1}-0", None] for n, ts in enumerate(tss)]


def _newest(uses: list) -> int:
    return max((u[0] for u in uses), default=0)


def _clear_tagged(conn, keys: Keys) -> None:
    """Names under a hash tag do not start with the prefix the fixture clears."""
    for key in conn.scan_iter(match=f"{{{keys.prefix}*"):
        conn.delete(key)


@pytest.mark.parametrize("cluster_names", [False, True])
def test_the_sweeper_deletes_the_facts_whose_minute_is_behind_the_horizon(
    redis_client, keys: Keys, cluster_names: bool
) -> None:
    """Newest use in a minute wholly before horizon - keep: gone; at or after the
    cutoff: kept, whatever the older uses; before the cutoff but in its minute: kept
    until that minute is behind it (a fact answers nothing past R, and the margin is
    far more than a minute). A fact used again since its bucket's minute is kept by
    its new bucket, and goes with that one. Nothing goes before a horizon is
    published; other keys and other deployments' facts are never touched, and swept
    buckets leave their index. (`cluster_names`: the keys as on a Redis Cluster, each
    fact under its shard's hash tag, with its shard's buckets and index.)"""
    keys = Keys(keys.prefix, cluster=cluster_names)
    other = Keys(keys.prefix + "x:", cluster=cluster_names)
    keep = 1_000
    cutoff = 10 * MINUTE + 30_000
    sweeper = FactSweeper(redis_client, keys, keep)
    sweeper.legacy.note_upgrade()  # as the supervisor does before the flows run
    old, edge, mid, new = (keys.fact("order", n) for n in ("old", "edge", "mid", "new"))
    best, empty = keys.fact("best_scan", "i|b"), keys.fact("scan", "empty")
    used_again = keys.fact("share", "again")
    theirs = other.fact("order", "old")
    _written(redis_client, keys, {old: _uses(100, 10 * MINUTE - 1), edge: _uses(cutoff)})
    _written(redis_client, keys, {used_again: _uses(100), empty: [], mid: _uses(cutoff - 1)})
    _written(redis_client, keys, {new: _uses(100, cutoff + 500)})
    _written(redis_client, keys, {best: [[2 * MINUTE, "c", "s", "sh", "1-0"]]})
    _written(redis_client, keys, {used_again: _uses(100, 20 * MINUTE)})
    _written(redis_client, other, {theirs: _uses(100)})
    view = keys.order_view("o")
    redis_client.set(view, "x")
    try:
        assert sweeper.sweep_all() == 0  # no horizon yet
        redis_client.set(keys.facts_horizon, cutoff + keep)
        assert sweeper.sweep_all() == 3
        assert redis_client.exists(old, best, empty) == 0
        assert redis_client.exists(edge, mid, new, used_again, view, theirs) == 6
        indexes = [keys.fact_index(tag) for tag in keys.fact_tags()]
        left = [b for i in indexes for b in redis_client.zrange(i, 0, -1, withscores=True)]
        # edge, mid and new (in one bucket, or one per shard on a cluster); used again
        assert {score for _, score in left} == {11 * MINUTE - 1, 21 * MINUTE - 1}
        redis_client.set(keys.facts_horizon, 11 * MINUTE + keep)
        assert sweeper.sweep_all() == 3
        redis_client.set(keys.facts_horizon, 21 * MINUTE + keep)
        assert sweeper.sweep_all() == 1
        assert redis_client.exists(edge, mid, new, used_again) == 0
        assert not any(redis_client.zcard(i) for i in indexes)
        assert redis_client.exists(theirs, view) == 2
    finally:
        _clear_tagged(redis_client, keys)


def test_the_sweeper_examines_what_is_behind_the_cutoff_not_what_is_held(
    redis_client, keys: Keys, monkeypatch
) -> None:
    """No SCAN once no fact of an earlier version can be there: a fact outside any
    bucket is never looked at, and a step examines at most `STEP_KEYS` facts unless
    its budget lets it go on."""
    monkeypatch.setattr(fact_sweeper, "STEP_KEYS", 7)
    sweeper = FactSweeper(redis_client, keys, 0)
    sweeper.legacy.note_upgrade()
    assert int(redis_client.get(keys.facts_legacy_until)) == -1  # a new deployment
    facts = {keys.fact("order", f"o{n}"): _uses(n * MINUTE) for n in range(50)}
    _written(redis_client, keys, facts)
    outside = _fact(redis_client, keys, "outside", 100)
    redis_client.set(keys.facts_horizon, 30 * MINUTE)
    steps: list[int] = []
    while sum(steps) < 30 and len(steps) < 100:
        steps.append(sweeper.step())
    assert sum(steps) == 30 and max(steps) <= 7
    assert redis_client.exists(outside) == 1
    _written(redis_client, keys, {keys.fact("order", f"p{n}"): _uses(n) for n in range(40)})
    assert sweeper.step(budget_s=5.0) == 40
    assert len(list(redis_client.scan_iter(match=keys.fact_pattern()))) == 21


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# Found by hypothesis: a fact left in an earlier bucket (here the first minute's, as an
# empty fact) is found there first; it goes only by its newest use's minute.
@example(writes=[(0, []), (0, [14 * MINUTE])], cutoffs=[14 * MINUTE + 1])
@given(
    writes=st.lists(
        st.tuples(st.integers(0, 9), st.lists(st.integers(0, 20 * MINUTE), max_size=3)),
        min_size=1,
        max_size=30,
    ),
    cutoffs=st.lists(st.integers(0, 21 * MINUTE), min_size=1, max_size=4),
)
def test_sweeping_keeps_exactly_the_facts_used_since_the_cutoff(
    redis_client, keys: Keys, writes, cutoffs
) -> None:
    """Facts written and rewritten (any newest use, earlier or later than before),
    swept at cutoffs between the writes: a fact is there exactly when it was written
    and its last value's newest use is in no minute behind a cutoff swept since; a
    sweep past everything leaves no fact, bucket or index behind."""
    keys = Keys(f"{keys.prefix}p{len(writes)}:")
    sweeper = FactSweeper(redis_client, keys, 0)
    sweeper.legacy.note_upgrade()
    expected: dict[str, list] = {}
    try:
        for n, (ident, tss) in enumerate(writes):
            key = keys.fact("order", f"o{ident}")
            _written(redis_client, keys, {key: _uses(*tss)})
            expected[key] = _uses(*tss)
            if n % 7 == 6 or n == len(writes) - 1:
                cutoff = cutoffs[n % len(cutoffs)]
                redis_client.set(keys.facts_horizon, cutoff)
                sweeper.sweep_all()
                # What is gone: each fact whose newest use's minute is behind the cutoff.
                behind = cutoff // MINUTE * MINUTE
                expected = {k: v for k, v in expected.items() if _newest(v) >= behind}
                held = set(redis_client.scan_iter(match=keys.fact_pattern()))
                assert held == set(expected)
        redis_client.set(keys.facts_horizon, 21 * MINUTE)
        sweeper.sweep_all()
        assert set(redis_client.scan_iter(match=f"{keys.prefix}*")) == {
            keys.facts_horizon,
            keys.facts_legacy_until,
        }
    finally:
        for key in redis_client.scan_iter(match=f"{keys.prefix}*"):
            redis_client.delete(key)


def test_facts_of_an_earlier_version_are_found_by_scan_until_none_can_be_left(
    redis_client, keys: Keys
) -> None:
    """An upgrade: facts without buckets, the log read up to 5 minutes. The SCAN
    sweeps them by the same rule until a whole pass begun with the cutoff past the
    log's time then is done; then it stops for good (a fact outside any bucket
    written after that is never looked at), and a restart does not begin it again."""
    for n in range(10):
        _fact(redis_client, keys, f"o{n}", n * MINUTE)
    redis_client.xadd(keys.events, {"e": "{}"}, id=f"{4 * MINUTE}-0")
    redis_client.set(keys.flows_position, f"{5 * MINUTE}-3")
    sweeper = FactSweeper(redis_client, keys, 0)
    sweeper.legacy.note_upgrade()
    assert int(redis_client.get(keys.facts_legacy_until)) == 5 * MINUTE
    redis_client.set(keys.facts_horizon, 3 * MINUTE)
    assert sweeper.sweep_all() == 3
    assert int(redis_client.get(keys.facts_legacy_until)) == 5 * MINUTE  # still may be some
    redis_client.set(keys.facts_horizon, 5 * MINUTE + 1)
    assert sweeper.sweep_all() == 3
    assert int(redis_client.get(keys.facts_legacy_until)) == -1  # none can be left
    late = _fact(redis_client, keys, "late", 0)
    again = FactSweeper(redis_client, keys, 0)
    again.legacy.note_upgrade()
    assert again.sweep_all() == 0 and redis_client.exists(late) == 1


def test_a_legacy_pass_goes_over_every_fact_a_step_at_a_time(redis_client, keys: Keys, monkeypatch):
    monkeypatch.setattr(fact_sweeper, "STEP_KEYS", 7)
    for n in range(50):
        _fact(redis_client, keys, f"o{n}", n * 100)
    redis_client.set(keys.facts_horizon, 3_000)
    sweeper = LegacyFactScan(redis_client, keys, 0)
    steps: list[int] = []
    while sum(steps) < 30 and len(steps) < 100:
        steps.append(sweeper.step())
    assert sum(steps) == 30 and max(steps) <= 7
    assert len(list(redis_client.scan_iter(match=keys.fact_pattern()))) == 20


def test_a_legacy_step_goes_on_while_its_chunks_are_mostly_facts_to_delete(
    redis_client, keys: Keys, monkeypatch
):
    """A busy deployment makes more facts a second than one chunk a tick examines; its
    chunks then come back full of expired facts, and a step goes on within its
    budget. Where little is to delete, a step is one chunk."""
    monkeypatch.setattr(fact_sweeper, "STEP_KEYS", 10)
    for n in range(60):
        _fact(redis_client, keys, f"old{n}", 100)
    redis_client.set(keys.flows_position, "999999-0")  # the pass never ends the SCAN
    redis_client.set(keys.facts_horizon, 10_000)
    assert LegacyFactScan(redis_client, keys, 0).step(budget_s=5.0) == 60
    for n in range(60):
        _fact(redis_client, keys, f"live{n}", 50_000)
    for n in range(6):
        _fact(redis_client, keys, f"old{n}", 100)
    sweeper = LegacyFactScan(redis_client, keys, 0)
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
