"""The Redis fact store's wake-ups answer as the in-memory store's do, against real
Redis: the same keys, in the same order, for every span the log's time moves over,
and again from a new store (a restarted process) that reads them back, however far
ahead the store loads (an hour to a day, steered by how many wake-ups a load brings)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.keys import Keys
from flows.facts_redis import RedisFacts
from flows.wake_buckets import LOAD_AHEAD_BUCKETS, MAX_LOAD_AHEAD_BUCKETS, WAKE_BUCKET_MS
from state.facts import MemoryFacts

_spaces = itertools.count()
HOUR = LOAD_AHEAD_BUCKETS * WAKE_BUCKET_MS
DAY = MAX_LOAD_AHEAD_BUCKETS * WAKE_BUCKET_MS

# A step: ask wake-ups this far ahead of the log's time, withdraw some asked before
# (by their index among all asked: this step's, earlier ones', ones passed), then
# move the time on this far, maybe from a new store. Near: within a bucket or two;
# far ahead: past what a store loads ahead (an hour at first, a day at most).
steps = st.lists(
    st.tuples(
        st.lists(
            st.integers(0, 2 * WAKE_BUCKET_MS) | st.integers(0, 3 * HOUR) | st.integers(0, 2 * DAY),
            max_size=6,
        ),
        st.lists(st.integers(0, 200), max_size=3),
        st.integers(1, HOUR // 2) | st.integers(HOUR, 3 * HOUR) | st.integers(DAY, 2 * DAY),
        st.sampled_from(["flush, then move", "move, then flush", "flush, restart, move"]),
    ),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=steps, per_load=st.sampled_from([1, 3, 10_000]), key_pool=st.sampled_from([1, 3, 0]))
def test_redis_wakeups_equal_the_memory_stores(
    redis_client, keys: Keys, steps, per_load: int, key_pool: int
) -> None:
    """`per_load` small: loads bring more than it, and the store's reach shrinks
    back to an hour; large: it grows to a day. `key_pool`: how many keys the
    wake-ups share (0: one key each), so that a key is asked again, at the same
    moment or another, in the same bucket or another, before or after its last
    wake-up came due or was withdrawn."""
    space = f"w{next(_spaces)}"

    def store() -> RedisFacts:  # each restart's store on the same client
        return RedisFacts(redis_client, keys, 10**12, space, wakeups_per_load=per_load)

    redis_facts = store()
    memory = MemoryFacts()
    now, asked = 1_000_000, list[tuple[int, str]]()
    for aheads, withdraw, move, order in steps:
        for ahead in aheads:
            asked.append((now + ahead, f"k{len(asked) % key_pool if key_pool else len(asked)}"))
            redis_facts.wake_at(*asked[-1])
            memory.wake_at(*asked[-1])
        for n in withdraw:
            if asked:
                redis_facts.unwake(*asked[n % len(asked)])
                memory.unwake(*asked[n % len(asked)])
        # Moving first is a batch whose time moves past what is loaded before its
        # wake-ups and withdrawals are written.
        if order != "move, then flush":
            redis_facts.flush()
        if order == "flush, restart, move":
            redis_facts.close()
            redis_facts = store()
        assert redis_facts.due_between(now, now + move) == memory.due_between(now, now + move)
        if order == "move, then flush":
            redis_facts.flush()
        now += move
    redis_facts.close()


def test_small_moves_over_the_edge_of_what_is_loaded_miss_nothing(redis_client, keys: Keys) -> None:
    """The log's time moving by a third of a bucket at a time, with nothing due for a
    while, past the end of what the store has loaded: the moves with nothing due take
    a short cut (`_quiet_until`), which must stop where the loaded buckets end."""
    facts = RedisFacts(redis_client, keys, 10**12, f"w{next(_spaces)}", wakeups_per_load=1)
    memory = MemoryFacts()
    start = now = 100 * WAKE_BUCKET_MS
    assert facts.due_between(now - 1, now) == []  # loads the first hour or two
    for n, ahead in enumerate(range(WAKE_BUCKET_MS, 4 * HOUR, 2 * WAKE_BUCKET_MS + 13)):
        facts.wake_at(now + ahead, f"k{n}")
        memory.wake_at(now + ahead, f"k{n}")
    facts.flush()
    got: list[str] = []
    while now < start + 4 * HOUR:
        step = WAKE_BUCKET_MS // 3
        due = facts.due_between(now, now + step)
        assert due == memory.due_between(now, now + step)
        got += due
        now += step
    assert len(got) == n + 1
    facts.close()


def test_a_wake_up_withdrawn_before_its_bucket_is_loaded_stays_withdrawn(
    redis_client, keys: Keys
) -> None:
    """Withdrawn in a batch whose own move of the time then loads its bucket (before
    the batch's writes): asked in an earlier batch, or in the same one."""
    space = f"w{next(_spaces)}"
    facts = RedisFacts(redis_client, keys, 10**12, space, wakeups_per_load=1)
    now = 100 * WAKE_BUCKET_MS
    assert facts.due_between(now - 1, now) == []  # loads the first hour or two
    far = now + 3 * HOUR
    facts.wake_at(far, "earlier batch")
    facts.wake_at(far + 1, "kept")
    facts.flush()
    facts.unwake(far, "earlier batch")
    facts.wake_at(far + 2, "same batch")
    facts.unwake(far + 2, "same batch")
    assert facts.due_between(now, far + 10) == ["kept"]
    facts.flush()
    facts.close()
    again = RedisFacts(redis_client, keys, 10**12, space, wakeups_per_load=1)
    assert again.due_between(now, far + 10) == ["kept"]  # a re-run reads what was written
    again.close()


@pytest.mark.parametrize("asked", ["from the tick that came due", "in the same batch"])
def test_a_keys_two_wake_ups_in_one_minute_are_both_kept(
    redis_client, keys: Keys, asked: str
) -> None:
    """A line key is woken to approve and asked again, from that tick, to be forgotten
    past R. With R within a minute of the holding period, both fall in one bucket;
    stored under the key alone, the second replaced the first in Redis, so a re-run
    from before the approval (a crash after the batch's writes, before its epoch's
    snapshot) found no approval due and approved the line only when it forgot it:
    a payout by the line's sharer between the two, which the first run paid with
    the approval in its balance, was then `nothing_to_pay` (tried with the plain
    loop and the approval's wake-up dropped)."""
    space = f"w{next(_spaces)}"
    facts = RedisFacts(redis_client, keys, 10**12, space)
    start = 100 * WAKE_BUCKET_MS
    assert facts.due_between(start - 1, start) == []
    facts.wake_at(start + 10, "line:b|o|1")
    if asked == "from the tick that came due":
        facts.flush()
        assert facts.due_between(start, start + 20) == ["line:b|o|1"]
    facts.wake_at(start + 30, "line:b|o|1")  # the same minute
    facts.flush()
    facts.close()
    rerun = RedisFacts(redis_client, keys, 10**12, space)
    assert rerun.due_between(start, start + 20) == ["line:b|o|1"]
    assert rerun.due_between(start + 20, start + 40) == ["line:b|o|1"]
    rerun.close()


def test_a_wake_up_asked_twice_is_withdrawn_by_one_withdrawal(redis_client, keys: Keys) -> None:
    """Redis keeps a member once, so the loaded bucket must too: else the copy in
    memory still wakes the key that a re-run, reading Redis, does not."""
    space = f"w{next(_spaces)}"
    facts = RedisFacts(redis_client, keys, 10**12, space)
    start = 100 * WAKE_BUCKET_MS
    assert facts.due_between(start - 1, start) == []  # its bucket is loaded now
    memory = MemoryFacts()
    for store in (facts, memory):
        store.wake_at(start + 10, "k")
        store.wake_at(start + 10, "k")
        store.unwake(start + 10, "k")
    facts.flush()
    assert facts.due_between(start, start + 20) == memory.due_between(start, start + 20) == []
    facts.close()


def test_a_bucket_written_before_members_named_the_moment_is_read(redis_client, keys: Keys) -> None:
    """Until 2026-12-06 a member was the key alone; a store started on such buckets
    (an upgrade) reads them, and one wake-up written both ways wakes its key once."""
    space = f"w{next(_spaces)}"
    start = 100 * WAKE_BUCKET_MS
    bucket = start // WAKE_BUCKET_MS
    redis_client.zadd(
        keys.wakeups(bucket, space), {"line:b|o|1": start + 10, "session:s": start + 5}
    )
    redis_client.zadd(keys.wakeups(bucket, space), {f"{start + 5}:session:s": start + 5})
    redis_client.zadd(keys.wakeups_index(space), {str(bucket): bucket})
    facts = RedisFacts(redis_client, keys, 10**12, space)
    assert facts.due_between(start, start + 20) == ["session:s", "line:b|o|1"]
    facts.close()


@pytest.mark.parametrize("epoch_days", [0.5, 5, 40])
def test_a_rerun_from_the_last_snapshot_reads_every_wake_up_of_its_span(
    redis_client, keys: Keys, epoch_days: float
) -> None:
    """A catch-up moves through days of log time in one epoch (the bench's sparse
    log: three and a half days a second). The index of buckets was trimmed a day
    behind the loads, so a re-run after a crash, which starts at the last snapshot,
    found no bucket for a wake-up more than a day before the crash: the line was
    never approved, the session never forgotten (found 2026-12-07; before the fix
    the 5- and 40-day cases woke nothing)."""
    space = f"w{next(_spaces)}"
    epoch = int(epoch_days * DAY)
    start = 1_000 * DAY
    run = RedisFacts(redis_client, keys, 10**12, space)
    assert run.due_between(start - 1, start) == []
    run.checkpoint()  # the snapshot the re-run starts from
    run.wake_at(start + epoch // 2, "line:o1")
    run.flush()
    now, woken = start, []
    while now < start + epoch:  # one epoch, no snapshot, hours of log time a batch
        woken += run.due_between(now, now + HOUR)
        now += HOUR
        run.flush()
    assert woken == ["line:o1"]
    run.settle()  # and the process dies: no snapshot of this epoch
    rerun = RedisFacts(redis_client, keys, 10**12, space)
    now, again = start, []
    while now < start + epoch:
        again += rerun.due_between(now, now + HOUR)
        now += HOUR
    assert again == ["line:o1"]
    run.close()
    rerun.close()


def test_the_index_is_trimmed_behind_the_snapshots(redis_client, keys: Keys) -> None:
    """What a re-run may read is kept, and no more: past the last snapshots and a day,
    the index of buckets drops what the log's time has passed, and the buckets go."""
    space = f"w{next(_spaces)}"
    facts = RedisFacts(redis_client, keys, None, space)
    start = now = 1_000 * DAY
    for day in range(60):
        facts.wake_at(now + HOUR, f"k{day}")
        facts.flush()
        assert facts.due_between(now, now + DAY) == [f"k{day}"]
        now += DAY
        facts.settle()
        facts.checkpoint()
    facts.flush()
    facts.settle()
    buckets = [int(b) for b in redis_client.zrange(keys.wakeups_index(space), 0, -1)]
    assert min(buckets) * WAKE_BUCKET_MS >= now - 8 * DAY
    assert min(buckets) * WAKE_BUCKET_MS > start
    # The buckets themselves go with their index entries (live they have no TTL).
    stored = [
        k
        for k in redis_client.scan_iter(match=f"{keys.wakeups_index(space)[:-5]}*")
        if not k.endswith(":index")
    ]
    assert sorted(stored) == sorted(keys.wakeups(b, space) for b in buckets)
    facts.close()


def test_buckets_passed_by_a_process_that_dies_before_its_writes_are_still_deleted(
    redis_client, keys: Keys
) -> None:
    """A load finds the buckets the log's time has passed, and the next writes delete
    them and then their index entries. A process killed in between leaves both, and
    the next process's first load deletes them: no bucket is left that nothing names
    (live they carry no TTL)."""
    space = f"w{next(_spaces)}"
    start = now = 1_000 * DAY
    first = RedisFacts(redis_client, keys, None, space)
    first.due_between(now - 1, now)
    for day in range(20):
        first.wake_at(now + HOUR, f"k{day}")
        first.flush()
        first.due_between(now, now + DAY)
        now += DAY
        if day > 5 and first.wakes._passed:
            break  # this load found buckets to delete, and the process dies now
        first.settle()
        first.checkpoint()
    assert first.wakes._passed
    first.settle()
    first.close()
    second = RedisFacts(redis_client, keys, None, space)
    second.due_between(now, now + DAY)  # a re-run starts at the last snapshot
    second.flush()
    second.settle()
    index = keys.wakeups_index(space)
    named = {keys.wakeups(int(b), space) for b in redis_client.zrange(index, 0, -1)}
    stored = {k for k in redis_client.scan_iter(match=f"{index[:-5]}*") if not k.endswith(":index")}
    assert stored == named
    assert min(int(b) for b in redis_client.zrange(index, 0, -1)) * WAKE_BUCKET_MS > start
    second.close()
