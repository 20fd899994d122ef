"""SPEC "Retention" in the Redis fact store: it decides as the memory store does
when the log's time jitters back, a wake-up due behind the log's time still comes,
best scans past R are forgotten, and a re-run after a crash decides as the first
run did."""

from __future__ import annotations

import json
import pickle
import random

import pytest

from flows.facts_redis import RedisFacts
from harness.live import with_stream_ids
from state.engine import Engine
from state.messages import LogEvent
from state.testing import SMALL_RULES, random_log
from tests.support.logs import order, rule, scan
from tests.unit.test_rules_retention import RULES, R, T  # the rule tables' small settings


def _time_jitters_back(log: list[dict], seed: int) -> list[LogEvent]:
    """Some events' ts moved back by up to 5 s (ingest processes' clocks differ; a
    recorded log need not be in ts order), at log positions still in order."""
    rng = random.Random(seed)
    moved = [{**e, "ts": e["ts"] - rng.randrange(5000)} if rng.random() < 0.2 else e for e in log]
    return [LogEvent(f"{n + 1}-0", e) for n, e in enumerate(moved)]


@pytest.mark.parametrize("seed", range(6))
def test_redis_facts_decide_a_log_whose_time_jitters_back_as_memory_does(seed, redis_client, keys):
    """Redis keeps facts by its own clock, memory by the log's: with events whose ts
    lie behind the log's time the two must still decide alike."""
    events = _time_jitters_back(random_log(seed, 1500), seed)
    live = Engine(SMALL_RULES, RedisFacts(redis_client, keys, 10**12, "log:commissions"))
    plain = Engine(SMALL_RULES)
    got = [o for entry in events for o in live.on_input(entry)] + live.finish()
    assert got == [o for entry in events for o in plain.on_input(entry)] + plain.finish()


def test_a_wake_up_due_before_the_log_time_still_comes(redis_client, keys):
    """An order far behind the log's time asks a wake-up for a moment already
    past (to approve its line): a store answers by the span the time moves over, so
    it must come at the next move, as it does in memory."""
    behind = T - RULES.holding_period_ms - 10  # within R of the log's time
    log = [
        rule("ten", 0, sharer_id="s"),
        scan("x", T + 1, "t", None, item="j"),  # the log's time runs ahead
        scan("c", behind - 10, "s", "b"),
        order("o", behind, buyer="b", lines=[("i", 4, 1000)]),
        scan("y", T + 3 * R, "t", None, item="j"),  # past every wake-up
    ]
    events = [LogEvent(f"{n + 1}-0", e) for n, e in enumerate(log)]
    live = Engine(RULES, RedisFacts(redis_client, keys, 10**12, "log:commissions"))
    got = [o for entry in events for o in live.on_input(entry)] + live.finish()
    plain = Engine(RULES)
    assert got == [o for entry in events for o in plain.on_input(entry)] + plain.finish()
    assert [o["kind"] for o in got if o["type"] == "commission"] == ["accrual", "approval"]


def test_a_best_scan_past_r_is_forgotten_in_redis_as_in_memory(redis_client, keys):
    """Scan d is forgotten once the log's time passes d.ts + R, although Redis still
    holds it (by its own clock): an order behind the log's time, whose window
    still covers d, matches nothing, in both stores."""
    events = [
        LogEvent(f"{n + 1}-0", e)
        for n, e in enumerate(
            [
                rule("ten", 0, sharer_id="t"),
                scan("d", T, "t", "b"),
                scan("x", T + R + 1, "t", None, item="j"),  # d is forgotten
                order("o", T + 10, lines=[("i", 4, 1000)]),  # behind the log's time
                scan("y", T + 3 * R, "t", None, item="j"),
            ]
        )
    ]
    live = Engine(RULES, RedisFacts(redis_client, keys, 10**12, "log:commissions"))
    got = [o for entry in events for o in live.on_input(entry)] + live.finish()
    assert [o for o in got if o["type"] == "commission"] == []
    plain = Engine(RULES)
    assert got == [o for entry in events for o in plain.on_input(entry)] + plain.finish()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("back", [0.1, 0.5, 0.95, 1.5, 3])
def test_redis_facts_decide_a_rerun_as_the_first_run(seed, back, redis_client, keys):
    """A crash after the store was written: the re-run from the last snapshot finds
    facts written by events after it (some of them reused ids past R) and must
    still decide every event as the first run did. The snapshot is `back` x R
    before the crash (in life it is one epoch back)."""
    events = [LogEvent(p, e) for p, e in with_stream_ids(random_log(seed, 1200))]
    crash_ts = events[-1].event["ts"]
    k = next(
        n
        for n, e in enumerate(events)
        if e.event["ts"] >= crash_ts - back * SMALL_RULES.retention_ms
    )
    first = Engine(SMALL_RULES, RedisFacts(redis_client, keys, 10**12, "log:commissions"))
    for entry in events[:k]:
        first.on_input(entry)
    snapshot = pickle.dumps((first.sequencer, first.keys))
    first.facts.checkpoint()  # as the flow's snapshot tells it
    after_first = [o for entry in events[k:] for o in first.on_input(entry)] + first.finish()
    rerun = Engine(SMALL_RULES, RedisFacts(redis_client, keys, 10**12, "log:commissions"))
    rerun.sequencer, rerun.keys = pickle.loads(snapshot)
    after_rerun = [o for entry in events[k:] for o in rerun.on_input(entry)] + rerun.finish()
    assert after_rerun == after_first
    # And both equal the plain loop with the store in memory.
    plain = Engine(SMALL_RULES)
    for entry in events[:k]:
        plain.on_input(entry)
    assert [
        o for entry in events[k:] for o in plain.on_input(entry)
    ] + plain.finish() == after_first


def _scan_at(scan_id: str, ts: int, sharer: str) -> dict:
    return scan(scan_id, ts, sharer, "b")


def _best(facts, touch: str, position: str, since: int = 0) -> tuple | None:
    found = facts.best_scan(touch, position, since)
    return None if found is None else (found["ts"], found["scan_id"], found["sharer_id"])


def test_redis_facts_keep_each_buyers_best_scan(redis_client, keys):
    """A running max per buyer and item (greatest ts, then scan_id), written with
    the batch and expiring like any fact; read back by a later batch (prepared) or
    a new process (asked at once)."""
    facts = RedisFacts(redis_client, keys, 10**12, "log:commissions")
    assert _best(facts, "touch:i|x", "1-0") is None
    facts.note_scan("touch:i|a", _scan_at("a", 5, "s"), "2-0")
    facts.note_scan("touch:i|b", _scan_at("m", 20, "s"), "3-0")
    facts.note_scan("touch:i|b", _scan_at("z", 10, "t"), "4-0")  # never moves back in ts
    facts.note_scan("touch:i|b", _scan_at("k", 20, "t"), "5-0")  # nor in scan_id at a tie
    assert _best(facts, "touch:i|b", "9-0") == (20, "m", "s")
    assert (facts.best_scan("touch:i|b", "9-0", 0) or {}).get("share_id") == "sh"
    assert _best(facts, "touch:i|b", "9-0", since=21) is None  # forgotten past R
    assert _best(facts, "touch:i|x", "9-0") is None
    facts.flush()
    facts.settle()
    assert redis_client.pttl(keys.fact("best_scan", "i|b")) > 0
    again = RedisFacts(redis_client, keys, 10**12, "log:commissions")
    assert _best(again, "touch:i|b", "9-0") == (20, "m", "s")
    later = RedisFacts(redis_client, keys, 10**12, "log:commissions")
    later.prepare([LogEvent("9-0", order("o", 9, buyer="b", lines=[("i", 1, 1)]))])
    redis_client.delete(keys.fact("best_scan", "i|b"))  # prepared: asked before the batch
    assert _best(later, "touch:i|b", "9-0") == (20, "m", "s")


def test_a_rerun_does_not_take_a_best_scan_noted_after_it(redis_client, keys):
    """After a crash, the re-run of an order at 7-0 finds the best scan a later event
    (8-0) wrote, and the one before it: it must answer the one before."""
    facts = RedisFacts(redis_client, keys, 10**12, "log:commissions")
    facts.prepare([LogEvent("6-0", scan("a", 10, "s", "b"))])
    facts.note_scan("touch:i|b", _scan_at("a", 10, "s"), "6-0")
    facts.checkpoint()  # a snapshot after 6-0: a re-run may start at 7-0
    facts.prepare([LogEvent("8-0", scan("m", 20, "t", "b"))])
    facts.note_scan("touch:i|b", _scan_at("m", 20, "t"), "8-0")
    facts.flush()
    facts.settle()
    rerun = RedisFacts(redis_client, keys, 10**12, "log:commissions")
    assert _best(rerun, "touch:i|b", "7-0") == (10, "a", "s")
    assert _best(rerun, "touch:i|b", "8-0") == (10, "a", "s")
    assert _best(rerun, "touch:i|b", "8-1") == (20, "m", "t")


def test_the_version_befores_touch_facts_are_not_read(redis_client, keys):
    """Layout 1 kept a running max under the kind `touch`, from some time on: never
    read now (a fresh start rebuilds every best scan from the log, README
    "Upgrading")."""
    redis_client.set(keys.fact("touch", "i|b"), json.dumps([20, "m", "s", "3-0"]))
    facts = RedisFacts(redis_client, keys, 10**12, "log:commissions")
    assert _best(facts, "touch:i|b", "9-0") is None


def test_a_rerun_reaching_back_more_than_r_finds_the_use_it_asks_about(redis_client, keys):
    """A catch-up of a quiet log can cover more than R in one epoch, so a re-run may
    start more than R before the crash. Id o1 is used at 1-0 (ts 100), again at
    2-0 (a duplicate: within R), past R at 3-0 and past R again at 4-0; a snapshot
    was taken after 1-0 only. The first run wrote [3-0, 4-0] and dropped 1-0, so
    the re-run found 2-0 new: an order billed twice (before the fix)."""
    r = 50

    def run(facts: RedisFacts, uses: list[tuple[int, str]]) -> list[bool]:
        return [facts.first_use("order", "o1", ts, pos, r) for ts, pos in uses]

    first = RedisFacts(redis_client, keys, 10**12, "log:commissions")
    first.prepare([LogEvent("1-0", order("o1", 100))])
    assert run(first, [(100, "1-0")]) == [True]
    first.flush()
    first.settle()
    first.checkpoint()  # the snapshot a re-run starts from: after 1-0
    first.prepare([LogEvent("2-0", order("o1", 120)), LogEvent("4-0", order("o1", 220))])
    rest = [(120, "2-0"), (160, "3-0"), (220, "4-0")]
    assert run(first, rest) == [False, True, True]
    first.flush()
    first.settle()  # and the process dies before its next snapshot
    rerun = RedisFacts(redis_client, keys, 10**12, "log:commissions")
    rerun.prepare([LogEvent("2-0", order("o1", 120))])
    assert run(rerun, rest) == [False, True, True]
