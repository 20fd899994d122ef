"""Live, through crashes: a SIGKILL at several points, a member of a 2-process
cluster killed, and a smaller cluster resuming the same recovery store all bill what
a replay of the log bills, with nothing lost and nothing twice."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import pytest

from billing.log_lines import parse_log_event
from harness.live import (
    append_positioned,
    flows_env,
    kill,
    members,
    outputs,
    start_flows,
    wait_for,
    wait_for_outputs,
    with_stream_ids,
)
from state.engine import Engine
from state.testing import SMALL_RULES, random_log
from tests.support.logs import final_state
from tests.support.outputs import assert_balances_as_spec


def test_sigkill_at_several_points_loses_nothing_and_bills_nothing_twice(
    redis_client, keys, flows_factory
):
    positioned = with_stream_ids([parse_log_event(e) for e in random_log(2024, 4200)])
    chunks = [positioned[i : i + 700] for i in range(0, len(positioned), 700)]
    engine = Engine(SMALL_RULES)
    expected_by_chunk = [
        {o["output_id"] for pos, ev in chunk for o in engine.feed(ev, pos)} for chunk in chunks
    ]
    expected_ids = set().union(*expected_by_chunk)
    assert _exercises_the_lifecycle(_replay_all(positioned))
    # Ticks must not close sessions early here: a lag of ~forever keeps the watermark
    # behind this old log, so only the log's own time closes sessions, as in a replay.
    proc = flows_factory(lag_ms=10**13)
    mid_flight = 0
    for n, chunk in enumerate(chunks):
        before = int(redis_client.xlen(keys.rejects))
        append_positioned(redis_client, keys, chunk)
        if n % 2 == 0:
            # Kill as soon as this chunk shows its first output: mid-flight, usually.
            def grew(before: int = before) -> bool:
                return int(redis_client.xlen(keys.rejects)) > before

            wait_for(grew, timeout=60, every=0.005)
            kill(proc)
            seen = {o["output_id"] for o in outputs(redis_client, keys)}
            mid_flight += not expected_by_chunk[n] <= seen
            proc = flows_factory(lag_ms=10**13)
    wait_for_outputs(redis_client, keys, expected_ids)
    got = outputs(redis_client, keys)
    assert mid_flight >= 2, "the kills should land while a chunk is being processed"
    assert {o["output_id"] for o in got} == expected_ids
    # Repeats (at-least-once) carry identical content.
    by_id: dict[str, str] = {}
    for out in got:
        text = json.dumps(out, sort_keys=True)
        assert by_id.setdefault(out["output_id"], text) == text
    assert final_state(got) == final_state(_replay_all(positioned))
    # Views agree with the final state.
    latest: dict[str, dict[str, Any]] = {}
    for usage in final_state(got)["usage"].values():
        if usage["started_ts"] >= latest.get(usage["session_id"], usage)["started_ts"]:
            latest[usage["session_id"]] = usage
    for sid, usage in latest.items():
        view = redis_client.hmget(keys.session_view(sid), "started_ts", "version")
        assert view == [str(usage["started_ts"]), str(usage["version"])]
    # The sharers' balances took each output once, however often it was given.
    assert_balances_as_spec(redis_client, keys, got)


def _exercises_the_lifecycle(outs) -> bool:
    """The log has approvals, clawbacks or pending reversals, and payouts to compare."""
    kinds = {o.get("kind") or o["type"] for o in outs}
    return {"accrual", "approval", "reversal", "payout"} <= kinds


def _replay_all(positioned):
    engine = Engine(SMALL_RULES)
    return [o for pos, ev in positioned for o in engine.feed(ev, pos)]


@pytest.mark.parametrize("args", [("--workers", "2"), ("--processes", "2")])
def test_cluster_shapes_bill_the_same(redis_client, keys, redis_url, prefix, tmp_path, args):
    positioned = with_stream_ids([parse_log_event(e) for e in random_log(99, 1200)])
    expected = _replay_all(positioned)
    assert _exercises_the_lifecycle(expected)
    proc = start_flows(flows_env(redis_url, prefix, tmp_path / "rec", SMALL_RULES, 10**13), *args)
    try:
        append_positioned(redis_client, keys, positioned[:600])
        if args[0] == "--processes":
            # One member dies: the supervisor restarts the whole cluster, which resumes.
            wait_for(lambda: len(members(proc.pid)) == 2, timeout=30)
            wait_for(lambda: redis_client.xlen(keys.rejects) > 0, timeout=60)
            os.kill(members(proc.pid)[0], signal.SIGKILL)
        append_positioned(redis_client, keys, positioned[600:])
        wanted = {o["output_id"] for o in expected}
        wait_for_outputs(redis_client, keys, wanted)
        got = outputs(redis_client, keys)
        assert {o["output_id"] for o in got} == wanted
        assert final_state(got) == final_state(expected)
        assert_balances_as_spec(redis_client, keys, got)
    finally:
        kill(proc, signal.SIGTERM)


def test_a_smaller_cluster_resumes_the_same_recovery(
    redis_client, keys, redis_url, prefix, tmp_path
):
    """The sink has a partition per process (flows.redis_output): resuming with fewer
    processes must not meet the snapshot of a partition no process lists."""
    positioned = with_stream_ids([parse_log_event(e) for e in random_log(5, 900)])
    expected = _replay_all(positioned)
    env = flows_env(redis_url, prefix, tmp_path / "rec", SMALL_RULES, 10**13)
    wanted = {o["output_id"] for o in expected}
    proc = start_flows(env, "--processes", "2")
    try:
        append_positioned(redis_client, keys, positioned[:450])
        wait_for(lambda: redis_client.xlen(keys.rejects) > 0, timeout=60)
        time.sleep(1.5)  # an epoch or so, so that both partitions have snapshots
    finally:
        kill(proc, signal.SIGTERM)
    parts = _sink_parts(tmp_path / "rec")
    assert parts == {"p0000", "p0001"}
    proc = start_flows(env)
    try:
        append_positioned(redis_client, keys, positioned[450:])
        wait_for_outputs(redis_client, keys, wanted)
    finally:
        kill(proc, signal.SIGTERM)
    assert final_state(outputs(redis_client, keys)) == final_state(expected)
    assert _sink_parts(tmp_path / "rec") == {"p0000"}


def _sink_parts(recovery_dir) -> set[str]:
    from flows.recovery_gc import connect
    from flows.redis_output import STEP_ID

    found: set[str] = set()
    for part in recovery_dir.glob("part-*.sqlite3"):
        with connect(part, timeout=10.0) as conn:
            rows = conn.execute("SELECT state_key FROM snaps WHERE step_id = ?", [STEP_ID])
            found |= {row[0] for row in rows}
    return found


def test_a_recovery_store_cut_short_while_created_is_finished(
    redis_client, keys, flows_factory, tmp_path
):
    """A kill while the first start created the store (bytewax writes its files one by
    one) left some partition files; every later start was then refused by bytewax
    ("Missing recovery partitions"), for ever. The kill soak found it."""
    from bytewax.recovery import init_db_dir

    recovery_dir = tmp_path / "recovery"  # the flows_factory's
    recovery_dir.mkdir()
    init_db_dir(recovery_dir, 4)
    for index in (2, 3):
        (recovery_dir / f"part-{index}.sqlite3").unlink()
    positioned = with_stream_ids([parse_log_event(e) for e in random_log(31, 600)])
    expected = _replay_all(positioned)
    flows_factory(lag_ms=10**13)
    append_positioned(redis_client, keys, positioned)
    wait_for_outputs(redis_client, keys, {o["output_id"] for o in expected}, timeout=60)
    assert final_state(outputs(redis_client, keys)) == final_state(expected)
    assert sorted(p.name for p in recovery_dir.glob("part-*.sqlite3")) == [
        f"part-{i}.sqlite3" for i in range(4)
    ]


def test_a_recovery_store_that_ran_and_lost_a_file_is_refused(redis_url, prefix, tmp_path):
    """Mending it would resume without the state that file held: a clear refusal."""
    import sqlite3

    from flows.recovery_store import create_partitions

    recovery_dir = tmp_path / "rec"
    create_partitions(recovery_dir, 4)
    conn = sqlite3.connect(recovery_dir / "part-0.sqlite3")
    conn.execute("INSERT INTO exs (ex_num, worker_count, resume_epoch) VALUES (0, 1, 1)")
    conn.commit()
    conn.close()
    (recovery_dir / "part-3.sqlite3").unlink()
    env = flows_env(redis_url, prefix, recovery_dir, SMALL_RULES, 10**13)
    proc = start_flows(env, stderr_to=tmp_path / "stderr")
    assert proc.wait(60) == 2
    assert "part-3.sqlite3'] are missing or damaged" in (tmp_path / "stderr").read_text()
    assert not (recovery_dir / "part-3.sqlite3").exists()
