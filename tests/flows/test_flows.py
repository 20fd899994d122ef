"""The bytewax dataflow against the plain loop: same outputs, any worker count,
and after recovery from an abort. Every test that runs the flow in-process takes
`entry_point` (tests/flows/conftest.py), so it runs at 1 and at 2 workers.

The abort-and-resume tests run at 1 worker only, as bytewax's own do
(pytests/test_recovery.py uses `run_main`): a `TestingSource.ABORT` stops only the
worker that reads the source, and at 2 workers the other one waited for ever. Recovery
at 2 workers and 2 processes is tested with real SIGKILLs in tests/live/test_live_crashes.py."""

from __future__ import annotations

import base64
import io
import json
import pickle
from datetime import timedelta
from pathlib import Path

import pytest
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from flows.dataflow import build_flow
from flows.facts_redis import RedisFacts
from flows.file_io import JsonLinesSink
from flows.logic import NOT_KEPT, LedgerLogic, SequencerLogic, SharerLogic
from flows.replay import replay
from harness.live import with_stream_ids
from state.engine import Engine
from state.facts import MemoryFacts
from state.messages import InputBatch, LogEvent, Watermark
from state.sequencer import Sequencer
from state.sharding import COMMISSIONS
from state.testing import SMALL_RULES, random_log
from tests.flows.conftest import EntryPoint
from tests.support.logs import engine_outputs, final_state, positioned
from tests.support.streams import no_parse
from tests.unit.test_state_pickles import LINE as LAYOUT_2_LINE


def memory_facts(key: str) -> MemoryFacts:
    return MemoryFacts()


def flow_outputs(
    run: EntryPoint, items, rules=SMALL_RULES, recovery=None, facts=memory_facts, snapshots=True
):
    out: list = []
    keyed = [
        item if isinstance(item, (TestingSource.ABORT, TestingSource.EOF)) else ("log", item)
        for item in items
    ]
    flow = build_flow(
        TestingSource(keyed, batch_size=7), TestingSink(out), rules, facts, recovery=snapshots
    )
    run(flow, epoch_interval=timedelta(0), recovery_config=recovery)
    return [output for _key, batch in out for output in batch]


def source_items(events):
    return [LogEvent(pos, ev) for pos, ev in positioned(events)]


def canonical(outputs):
    return sorted(json.dumps(o, sort_keys=True) for o in outputs)


@pytest.mark.parametrize("seed", range(6))
def test_flow_emits_exactly_what_the_plain_loop_emits(entry_point, seed):
    events = random_log(seed, 500)
    assert canonical(flow_outputs(entry_point, source_items(events))) == canonical(
        engine_outputs(events, SMALL_RULES)
    )


@pytest.mark.parametrize("seed", range(2))
def test_a_flow_without_recovery_keeps_no_snapshots_and_emits_the_same(entry_point, seed):
    """A replay skips pickling the snapshots bytewax asks for; a sharer key still
    seals each epoch at its snapshot (flows.logic.SharerLogic), here one epoch per batch."""
    events = random_log(seed, 500)
    got = flow_outputs(entry_point, source_items(events), snapshots=False)
    assert canonical(got) == canonical(engine_outputs(events, SMALL_RULES))
    for logic in (
        SequencerLogic(SMALL_RULES, memory_facts, no_parse, None, recovery=False),
        LedgerLogic(SMALL_RULES, None, recovery=False),
        SharerLogic(SMALL_RULES, None, recovery=False),
    ):
        assert logic.snapshot() == NOT_KEPT


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_replay_gives_the_same_outputs_for_any_worker_count(tmp_path: Path, workers: int):
    events = random_log(77, 1500)
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps(e) + "\n" for e in events))
    buf = io.StringIO()
    replay(str(log), buf, SMALL_RULES, workers=workers)
    got = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert {"approval", "payout"} <= {o.get("kind") or o["type"] for o in got}
    assert canonical(got) == canonical(engine_outputs(events, SMALL_RULES))


def test_ticks_close_idle_sessions_between_events(entry_point):
    events = random_log(5, 200)
    half = len(events) // 2
    tick = events[half - 1]["ts"] + 50_000
    events = events[:half] + [{**e, "ts": max(e["ts"], tick)} for e in events[half:]]
    items = [*source_items(events[:half]), Watermark(tick)]
    items += [LogEvent(f"L{n}", ev) for n, ev in enumerate(events[half:], half + 1)]
    items.append(Watermark(events[-1]["ts"] + 10**9))
    engine = Engine(SMALL_RULES)
    expected = [o for pos, ev in positioned(events[:half]) for o in engine.feed(ev, pos)]
    expected += engine.advance(tick)
    expected += [
        o for n, ev in enumerate(events[half:], half + 1) for o in engine.feed(ev, f"L{n}")
    ]
    expected += engine.advance(events[-1]["ts"] + 10**9)
    got = flow_outputs(entry_point, items)
    assert canonical(got) == canonical(expected)
    state = final_state(got)
    assert state["usage"] and all(u["status"] == "closed" for u in state["usage"].values())


@pytest.mark.parametrize("abort_at", [1, 150, 333, 599])
def test_recovery_after_abort_loses_nothing_and_bills_nothing_twice(
    tmp_path: Path, abort_at, redis_client, keys
):
    """With recovery the sequencer's facts must be recoverable too: the Redis store,
    as live, whose records carry log positions (stream ids) for the re-run."""
    events = random_log(11, 600)
    items = [LogEvent(pos, ev) for pos, ev in with_stream_ids(events)]
    init_db_dir(tmp_path, 1)
    recovery = RecoveryConfig(tmp_path)
    with_abort = [*items[:abort_at], TestingSource.ABORT(), *items[abort_at:]]

    def facts(key: str) -> RedisFacts:
        return RedisFacts(redis_client, keys, 10**12, key)

    first = flow_outputs(run_main, with_abort, recovery=recovery, facts=facts)
    # The session shards' open clocks went beside their snapshots (flows.snapshot_tables).
    assert abort_at < 150 or any(redis_client.scan_iter(f"{keys.base}:table:sessions:*"))
    second = flow_outputs(run_main, with_abort, recovery=recovery, facts=facts)
    combined = first + second
    # The second run resumed from the snapshot rather than starting over.
    repeated = {o["output_id"] for o in first} & {o["output_id"] for o in second}
    assert len(repeated) <= 20, len(repeated)
    engine = Engine(SMALL_RULES)
    expected = [o for item in items for o in engine.on_input(item)] + engine.finish()
    assert {"approval", "payout"} <= {o.get("kind") or o["type"] for o in expected}
    assert len(second) < len(expected) or abort_at <= 1
    # At-least-once: repeats carry the same output_id and content; nothing is missing.
    by_id = {o["output_id"]: o for o in combined}
    assert len(by_id) == len({json.dumps(o, sort_keys=True) for o in combined})
    assert canonical(by_id.values()) == canonical(expected)
    assert final_state(combined) == final_state(expected)


def test_swept_tombstones_change_no_result_after_a_resume(tmp_path: Path, redis_client, keys):
    """bytewax keeps a tombstone for every discarded key for ever (flows.recovery_gc);
    sweeping the committed ones leaves a resume with exactly the same outputs."""
    import subprocess
    import sys

    from flows.recovery_gc import connect

    events = random_log(5, 1200)  # spans several R, so keys are forgotten
    items = [LogEvent(pos, ev) for pos, ev in with_stream_ids(events)]
    init_db_dir(tmp_path, 1)
    recovery = RecoveryConfig(tmp_path)
    cut = 900
    with_abort = [*items[:cut], TestingSource.ABORT(), *items[cut:]]

    def facts(key: str) -> RedisFacts:
        return RedisFacts(redis_client, keys, 10**12, key)

    first = flow_outputs(run_main, with_abort, recovery=recovery, facts=facts)
    part = next(tmp_path.glob("part-*.sqlite3"))

    def tombstones() -> int:
        with connect(part, timeout=10.0) as conn:
            return conn.execute("SELECT COUNT(*) FROM snaps WHERE ser_change IS NULL").fetchone()[0]

    before = tombstones()
    assert before > 50
    # In another process, as the supervisor does it (flows.live._sweep says why).
    swept = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys; from flows.recovery_gc import sweep; print(sweep({str(tmp_path)!r}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert int(swept) > 0 and tombstones() < before
    second = flow_outputs(run_main, with_abort, recovery=recovery, facts=facts)
    engine = Engine(SMALL_RULES)
    expected = [o for item in items for o in engine.on_input(item)] + engine.finish()
    by_id = {o["output_id"]: o for o in first + second}
    assert canonical(by_id.values()) == canonical(expected)


def test_a_recovery_state_from_before_the_session_shards_is_refused():
    """Then one key (`log`) held the whole sequencer: its rule catalog and open
    sessions' clocks cannot move to the new keys, so resuming it must stop, clearly."""
    old = Sequencer()
    old.clocks["s1"] = [1_000, 1_000, 4_000]
    with pytest.raises(RuntimeError, match="predates the session shards"):
        SequencerLogic(SMALL_RULES, memory_facts, no_parse, pickle.dumps(old))
    # A snapshot of this layout carries its key, and resumes.
    logic = SequencerLogic(SMALL_RULES, memory_facts, no_parse, None)
    logic.on_batch([InputBatch(COMMISSIONS, [Watermark(5_000)])])
    again = SequencerLogic(SMALL_RULES, memory_facts, no_parse, logic.snapshot())
    assert again.key == COMMISSIONS and again.sequencer.log_time == 5_000


def test_a_recovery_state_of_a_renamed_shard_is_refused():
    """The shards were `sessions:0` to `sessions:7` before they were named for where
    they run (state.sharding): a snapshot of `sessions:1` holds clocks that no entry
    would reach, so resuming it must stop, clearly."""
    logic = SequencerLogic(SMALL_RULES, memory_facts, no_parse, None)
    logic.on_batch([InputBatch("sessions:1", [Watermark(5_000)])])
    with pytest.raises(RuntimeError, match="'sessions:1', which this version does not have"):
        SequencerLogic(SMALL_RULES, memory_facts, no_parse, logic.snapshot())


def test_a_recovery_state_from_before_matching_in_the_sequencer_is_refused():
    """Layout 1 matched order lines at touch keys, from scans the fact store may not
    hold (a store that began noting them late, or not at all): resuming it would
    leave those scans unmatched, so it must stop, clearly, at the sequencer and at a
    touch key's state alike."""
    logic = SequencerLogic(SMALL_RULES, memory_facts, no_parse, None)
    logic.on_batch([InputBatch(COMMISSIONS, [Watermark(5_000)])])
    old = logic.sequencer
    del old.__dict__["layout"]  # a snapshot from before the layout was kept
    with pytest.raises(RuntimeError, match="predates matching order lines"):
        SequencerLogic(SMALL_RULES, memory_facts, no_parse, pickle.dumps((COMMISSIONS, old)))

    with pytest.raises(RuntimeError, match="predates matching order lines"):
        LedgerLogic(SMALL_RULES, base64.b64decode(LAYOUT_1_TOUCH))


def test_a_recovery_state_with_a_key_per_order_line_is_refused():
    """Layout 2 gave each order line its own key (`line:<item>|…`); this version sends
    an order's lines to one key, so a resumed line's key would never be woken again
    and its approval would be lost: resuming must stop, clearly, at the sequencer and
    at a line's state alike."""
    logic = SequencerLogic(SMALL_RULES, memory_facts, no_parse, None)
    logic.on_batch([InputBatch(COMMISSIONS, [Watermark(5_000)])])
    old = logic.sequencer
    old.layout = 2
    refused = "predates keeping an order's lines under one line key"
    with pytest.raises(RuntimeError, match=refused):
        SequencerLogic(SMALL_RULES, memory_facts, no_parse, pickle.dumps((COMMISSIONS, old)))

    with pytest.raises(RuntimeError, match=refused):
        LedgerLogic(SMALL_RULES, base64.b64decode(LAYOUT_2_LINE))


# A touch key's state as layout 1 pickled it (tests/unit/test_state_pickles.py has
# the other keys' earlier forms).
LAYOUT_1_TOUCH = "gAWVogAAAAAAAACMEXN0YXRlLmNvbW1pc3Npb25zlIwFVG91Y2iUk5QpgZROfZSMBGJlc3SUfZQojAR0eXBllIwEc2NhbpSMB3NjYW5faWSUjAQwLmMxlIwCdHOUigYAaOXPiwGMCHNoYXJlX2lklIwCc2iUjAdpdGVtX2lklIwCaTGUjAlzaGFyZXJfaWSUjAJ1MpSMCnNjYW5uZXJfaWSUjAJ1MZR1c4aUYi4="


def test_the_replay_sink_writes_an_unencodable_output_as_a_reject_and_the_rest_as_they_are():
    """The batch is encoded in one pass; one output orjson refuses (an integer past
    64 bits) makes the batch go output by output, that one as a reject."""
    out = io.StringIO()
    part = JsonLinesSink(out).build("output", 0, 1)
    good = {"type": "payout", "output_id": "payout:p:1", "amount_minor": 5}
    bad = {"type": "payout", "output_id": "payout:q:2", "amount_minor": 2**64}
    part.write_batch([("k", [good]), ("k", []), ("k", [bad, good])])
    part.write_batch([("k", [good])])
    part.write_batch([])
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0] == lines[2] == lines[3] == good
    assert lines[1]["output_id"] == "reject:output:payout:q:2"
    assert lines[1]["reason"] == "invalid_event" and len(lines) == 4
    assert out.getvalue().endswith("\n")
