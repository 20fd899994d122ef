"""Tables kept beside bytewax's snapshot (flows.snapshot_tables), against real Redis:
a ref loads exactly the table it was saved with, through new bases and crashes; the
blobs stay bounded; a session shard's snapshot no longer grows with its open
sessions, nor the commission sequencer's with its rules, and a resumed sequencer
has the same clocks, timers, rules and tariffs."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows import snapshot_tables
from flows.facts_redis import RedisFacts
from flows.logic import SequencerLogic
from flows.snapshot_tables import KEPT, SnapshotTables, TableRef
from state.messages import InputBatch, LogEvent, Watermark
from state.sharding import COMMISSIONS, SHARD_KEYS
from state.testing import SMALL_RULES
from tests.support.logs import rule, seg, start, tariff
from tests.support.streams import no_parse

# One step: set (value) or drop (None) key k, then maybe a snapshot.
step = st.tuples(st.integers(0, 30), st.none() | st.integers(0, 9), st.booleans())


def _listed(redis_client, keys, space: str) -> set[str]:
    return set(redis_client.smembers(f"{keys.snapshot_table(space, 't')}:blobs"))


def _stored(redis_client, keys, space: str) -> set[str]:
    prefix = f"{keys.snapshot_table(space, 't')}:"
    return {k[len(prefix) :] for k in redis_client.scan_iter(f"{prefix}*")} - {"blobs"}


@pytest.fixture
def small_chains(monkeypatch):
    """Bases of a few entries and short chains, so that a short test makes many."""
    monkeypatch.setattr(snapshot_tables, "CHUNK", 4)
    monkeypatch.setattr(snapshot_tables, "MIN_BASE", 3)
    monkeypatch.setattr(snapshot_tables, "MAX_DELTAS", 3)


_space = iter(range(10**6))


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(step, min_size=1, max_size=60), crash=st.integers(1, KEPT))
def test_a_ref_loads_the_table_it_was_saved_with(steps, crash, small_chains, redis_client, keys):
    """Saved refs load their tables while they may still be resumed from (the last
    KEPT), also from a new process; after a crash, the new process resumes from an
    earlier ref, goes on, and every ref it saves loads, while the blobs the lost run
    wrote after that ref are deleted."""
    space = f"s{next(_space)}"
    table: dict[str, list[int]] = {}
    changed: set[str] = set()
    saved: list[tuple[TableRef, dict]] = []
    store = SnapshotTables(redis_client, keys, space)
    ref: TableRef | None = None

    def run(store, steps, saved, ref):
        for k, value, snap in steps:
            key = f"k{k}"
            if value is None:
                table.pop(key, None)
            else:
                table[key] = [value, k]
            changed.add(key)
            if snap:
                ref = store.save("t", table, sorted(changed), ref)
                changed.clear()
                saved.append((ref, {key: list(v) for key, v in table.items()}))
        return ref

    ref = run(store, steps, saved, ref)
    for old, expected in saved[-KEPT:]:
        assert store.load("t", old) == expected
        assert SnapshotTables(redis_client, keys, space).load("t", old) == expected
    if len(saved) < crash:
        return
    # A crash: the new process resumes from the ref saved `crash` snapshots back.
    resumed, expected = saved[-crash]
    table.clear()
    table.update(SnapshotTables(redis_client, keys, space).load("t", resumed))
    assert table == expected
    changed.clear()
    again = SnapshotTables(redis_client, keys, space)
    after: list[tuple[TableRef, dict]] = []
    ref = run(again, [*steps, (0, 1, True)], after, resumed)
    if len(after) < KEPT:  # a crash now would resume from it again
        assert again.load("t", resumed) == expected
    for old, expected_after in after[-KEPT:]:
        assert again.load("t", old) == expected_after
    # What is stored is what is listed, and only the chains still to be kept.
    stored = _stored(redis_client, keys, space)
    assert stored == _listed(redis_client, keys, space)
    named = {n for old, _ in after[-KEPT:] for n in old.base + old.deltas}
    assert named <= stored
    lost = (
        {n for old, _ in saved[-crash + 1 :] for n in old.base + old.deltas} if crash > 1 else set()
    )
    assert not (lost - set(resumed.base + resumed.deltas)) & stored


def test_blobs_stay_bounded_however_many_snapshots(small_chains, redis_client, keys):
    space = "bounded"
    store = SnapshotTables(redis_client, keys, space)
    table: dict[str, list[int]] = {}
    ref: TableRef | None = None
    for n in range(2_000):
        table[f"k{n % 50}"] = [n]
        if n % 7 == 0:
            table.pop(f"k{(n * 3) % 50}", None)
        ref = store.save("t", table, [f"k{n % 50}", f"k{(n * 3) % 50}"], ref)
    assert ref is not None and store.load("t", ref) == table
    stored = _stored(redis_client, keys, space)
    assert stored == _listed(redis_client, keys, space)
    # The chain (a base of at most 50 / 4 chunks and 3 deltas) and those kept for resumes.
    assert len(stored) <= (KEPT + 2) * (13 + 3), len(stored)


def test_a_save_with_nothing_changed_writes_nothing(redis_client, keys):
    store = SnapshotTables(redis_client, keys, "quiet")
    ref = store.save("t", {"a": [1]}, ["a"], None)
    assert store.save("t", {"a": [1]}, [], ref) is ref


def test_a_blob_redis_lost_stops_the_resume_clearly(redis_client, keys):
    store = SnapshotTables(redis_client, keys, "lost")
    ref = store.save("t", {"a": [1]}, ["a"], None)
    redis_client.delete(f"{keys.snapshot_table('lost', 't')}:{ref.base[0]}")
    with pytest.raises(RuntimeError, match="Redis no longer holds"):
        SnapshotTables(redis_client, keys, "lost").load("t", ref)


def _shard_logic(redis_client, keys, resume=None) -> SequencerLogic:
    return SequencerLogic(
        SMALL_RULES, lambda key: RedisFacts(redis_client, keys, 10**12, key), no_parse, resume
    )


def _open_sessions(logic: SequencerLogic, shard: str, count: int, first: int) -> None:
    """`count` sessions started 1 ms apart, all open: their idle timeout is minutes."""
    entries: list[Any] = [LogEvent("1-0", tariff(ts=1))] if first == 0 else []
    for n in range(first, first + count):
        entries.append(LogEvent(f"2-{n}", start(f"s{n}", ts=10 + n, interval=60_000)))
    logic.on_batch([InputBatch(shard, entries)])


def test_a_shards_snapshot_does_not_grow_with_its_open_sessions(redis_client, keys):
    shard = SHARD_KEYS[0]
    logic = _shard_logic(redis_client, keys)
    _open_sessions(logic, shard, 10, 0)
    small = len(logic.snapshot())
    _open_sessions(logic, shard, 5_000, 10)
    large = len(logic.snapshot())
    assert len(logic.sequencer.clocks) == 5_010
    assert large < small + 200, (small, large)  # the clocks' table ref only
    # Held in the snapshot, those clocks (short ids here) took 35 bytes each.
    inside = pickle.dumps((shard, logic.sequencer), protocol=pickle.HIGHEST_PROTOCOL)
    assert len(inside) > large + 5_000 * 30
    # A resume finds the same clocks, and the same next hint.
    resumed = _shard_logic(redis_client, keys, resume=logic.snapshot())
    assert resumed.sequencer.clocks == logic.sequencer.clocks
    assert min(resumed.sequencer.timers) == min(logic.sequencer.timers)
    assert resumed.sequencer.clock_changes == set()
    saved = pickle.loads(logic.snapshot())
    assert set(saved[2]) == {"clocks", "rules", "tariffs"} and saved[1].clocks == {}


def test_a_snapshot_that_held_its_clocks_resumes_and_stores_them_outside(redis_client, keys):
    """A snapshot taken before the clocks moved out (layout 3 held them) resumes, and
    its next snapshot stores them all beside it."""
    shard = SHARD_KEYS[1]
    old = SequencerLogic(SMALL_RULES, lambda key: _memory(), no_parse, None)
    _open_sessions(old, shard, 20, 0)
    before = pickle.dumps((shard, old.sequencer), protocol=pickle.HIGHEST_PROTOCOL)
    resumed = _shard_logic(redis_client, keys, resume=before)
    assert resumed.sequencer.clocks == old.sequencer.clocks
    again = _shard_logic(redis_client, keys, resume=resumed.snapshot())
    assert again.sequencer.clocks == old.sequencer.clocks


def _memory():
    from state.facts import MemoryFacts

    return MemoryFacts()


def test_a_resumed_shard_has_the_clocks_its_segments_and_closes_left(redis_client, keys):
    """Clocks made, moved by segments and dropped by idle closes, each between
    snapshots: a resume from each snapshot finds exactly the clocks held then."""
    shard = SHARD_KEYS[2]
    logic = _shard_logic(redis_client, keys)
    _open_sessions(logic, shard, 40, 0)  # idle deadlines near 180 s
    logic.snapshot()
    steps: list[list[Any]] = [
        [
            LogEvent(f"3-{n}", seg(1, 100_000 + n, 90_000, 95_000, session_id=f"s{n}"))
            for n in range(0, 40, 3)
        ],
        [Watermark(200_000)],  # those with no segment close
        [LogEvent("4-0", start("s99", ts=200_001, interval=60_000))],
        [Watermark(300_000)],  # the rest close, but the last start
    ]
    for entries in steps:
        logic.on_batch([InputBatch(shard, entries)])
        snap = logic.snapshot()
        resumed = _shard_logic(redis_client, keys, resume=snap)
        assert resumed.sequencer.clocks == logic.sequencer.clocks
        assert {sid for _due, sid in resumed.sequencer.timers} == set(logic.sequencer.clocks)
    assert set(logic.sequencer.clocks) == {"s99"}


def test_the_commission_sequencers_snapshot_does_not_grow_with_its_rules(redis_client, keys):
    """A rule per sharer (the shape that grows): the snapshot holds refs, an epoch with
    no rule event writes nothing, and a resume resolves as before, also the rules
    changed after the table's base was written."""
    logic = _shard_logic(redis_client, keys)
    rules = [
        LogEvent(f"1-{n}", rule(f"r{n}", 1, bps=100 + n, sharer_id=f"s{n}")) for n in range(3_000)
    ]
    logic.on_batch([InputBatch(COMMISSIONS, [*rules, LogEvent("2-0", tariff(ts=2))])])
    first = logic.snapshot()
    listed = _count_blobs(redis_client, keys, COMMISSIONS)
    assert logic.snapshot() == first and _count_blobs(redis_client, keys, COMMISSIONS) == listed
    logic.on_batch(
        [InputBatch(COMMISSIONS, [LogEvent("3-0", rule("r7", 3, bps=1, sharer_id="s7"))])]
    )
    logic.on_batch([InputBatch(COMMISSIONS, [LogEvent("3-1", rule("r8", 3, active=False))])])
    snap = logic.snapshot()
    assert len(snap) < 2_000, len(snap)
    inside = pickle.dumps((COMMISSIONS, logic.sequencer), protocol=pickle.HIGHEST_PROTOCOL)
    assert len(inside) > 3_000 * 40
    resumed = _shard_logic(redis_client, keys, resume=snap).sequencer
    held = logic.sequencer
    assert resumed.commission_rules == held.commission_rules
    assert resumed.tariffs == held.tariffs
    for sharer in ("s7", "s8", "s9", "nobody"):
        assert resumed.commission_rules.resolve(sharer, "i", "USD") == (
            held.commission_rules.resolve(sharer, "i", "USD")
        )
    assert resumed.commission_rules.resolve("s7", "i", "USD")["bps"] == 1  # type: ignore[index]


def test_a_snapshot_of_the_clocks_alone_resumes(redis_client, keys):
    """0d92f44 kept only the clocks outside: its snapshot holds one TableRef and the
    catalogs; the next snapshot stores those too."""
    shard = SHARD_KEYS[3]
    logic = _shard_logic(redis_client, keys)
    _open_sessions(logic, shard, 5, 0)
    store = SnapshotTables(redis_client, keys, shard)
    ref = store.save("clocks", logic.sequencer.clocks, [], None)
    old = pickle.dumps((shard, logic.sequencer.without_tables(), ref))
    held = pickle.loads(old)[1]
    held.tariffs, held.commission_rules = logic.sequencer.tariffs, logic.sequencer.commission_rules
    old = pickle.dumps((shard, held, ref))
    resumed = _shard_logic(redis_client, keys, resume=old)
    assert resumed.sequencer.clocks == logic.sequencer.clocks
    assert resumed.sequencer.tariffs == logic.sequencer.tariffs
    again = _shard_logic(redis_client, keys, resume=resumed.snapshot())
    assert again.sequencer.tariffs == logic.sequencer.tariffs


def _count_blobs(redis_client, keys, space: str) -> int:
    return sum(1 for _ in redis_client.scan_iter(f"{keys.base}:table:{space}:*"))
