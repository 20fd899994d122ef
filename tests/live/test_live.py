"""Live: HTTP ingest -> Redis stream -> `billing flows` -> output streams and views."""

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
    outputs,
    start_flows,
    url_of,
    wait_for,
    wait_for_outputs,
    with_stream_ids,
)
from state.engine import Engine
from state.testing import SMALL_RULES, random_log
from tests.support.logs import final_state


def test_http_to_outputs_and_views_end_to_end(api, redis_client, keys, flows_factory):
    from state.config import RuleSettings

    flows_factory(RuleSettings(idle_timeout_factor=1), lag_ms=200)
    assert (
        api.put("/v1/commission-rules/r", json={"kind": "percent", "bps": 500}).status_code == 202
    )
    share = api.post(
        "/v1/shares",
        json={"item_id": "i", "sharer_id": "alice", "activity_url": "https://shop.example/p"},
    ).json()
    scan = api.get(f"/s/{share['token']}", headers={"X-User-Id": "bob"})
    scan_id = scan.headers["location"].split("scan_id=")[1]
    api.post(
        "/v1/orders",
        json={
            "order_id": "o1",
            "buyer_id": "bob",
            "currency": "USD",
            "scan_id": scan_id,
            "lines": [{"item_id": "i", "quantity": 2, "unit_price_minor": 1050}],
        },
    )
    api.post(
        "/v1/refunds",
        json={"refund_id": "f1", "order_id": "o1", "lines": [{"item_id": "i", "quantity": 1}]},
    )
    api.put("/v1/tariffs/t", json={"currency": "USD", "unit_ms": 100, "price_minor": 1})
    started = api.post(
        "/v1/sessions",
        json={"user_id": "u", "service_id": "v", "tariff_id": "t", "session_id": "sess1"},
    ).json()
    t0 = started["server_time_ms"]
    api.post(
        "/v1/sessions/sess1/segments",
        json={"seq": 0, "start_ms": t0, "end_ms": t0 + 250, "end": False},
    )
    last = api.post(
        "/v1/sessions/sess1/segments",
        json={"seq": 1, "start_ms": t0 + 100, "end_ms": t0 + 300, "end": False},
    )
    api.post(
        "/v1/orders",
        json={
            "order_id": "o1",
            "buyer_id": "x",
            "currency": "USD",
            "lines": [{"item_id": "i", "quantity": 1, "unit_price_minor": 1}],
        },
    )  # 409, never logged

    def usage_closed():
        view = redis_client.hgetall(keys.session_view("sess1"))
        return bool(view) and json.loads(view["data"])["status"] == "closed"

    # Interval 10 s x factor 1: the watermark closes the session as idle.
    wait_for(usage_closed, timeout=40)
    usage = json.loads(redis_client.hget(keys.session_view("sess1"), "data"))
    assert (usage["billed_ms"], usage["fee_minor"], usage["closed_reason"]) == (300, 3, "idle")
    assert usage["ts"] == last.json()["ts"] + 10_000  # closed_ts: last receive + idle timeout
    assert usage["segments"] == 2

    order_view = redis_client.hgetall(keys.order_view("o1"))
    amounts = sorted(json.loads(v)["commission_minor"] for v in order_view.values())
    assert amounts == [-53, 105]  # 5 % of 2100; half of it, 52.5 rounds up to 53
    totals = redis_client.hgetall(keys.sharer_view("alice"))
    assert totals == {
        "USD:accrued": "105",
        "USD:accruals": "1",
        "USD:pending": "52",
        "USD:reversed": "-53",
        "USD:reversals": "1",
    }
    assert redis_client.xlen(keys.rejects) == 0


NOW = int(time.time() * 1000)  # statements keep 400 days back from Redis's clock


def test_views_never_go_backwards(redis_client, keys):
    from flows.redis_sink import _RedisWriter

    writer = _RedisWriter(
        redis_client.connection_pool.connection_kwargs and url_of(redis_client), keys
    )

    def use(started: int, version: int) -> dict:
        return {
            "type": "usage",
            "output_id": f"usage:s:{started}:{version}",
            "session_id": "s",
            "started_ts": started,
            "version": version,
        }

    newer, older = use(10, 2), use(10, 1)
    commission = {
        "type": "commission",
        "output_id": "commission:accrual:o:i",
        "kind": "accrual",
        "status": "pending",
        "order_id": "o",
        "sharer_id": "al",
        "currency": "USD",
        "commission_minor": 7,
        "ts": NOW,
    }
    writer.write([newer, older, commission])
    writer.write([older, commission])  # a replay after a crash
    assert redis_client.hget(keys.session_view("s"), "version") == "2"
    assert redis_client.hgetall(keys.sharer_view("al")) == {
        "USD:accrued": "7",
        "USD:accruals": "1",
        "USD:pending": "7",
    }
    assert redis_client.zcard(keys.statement("al", NOW // 86_400_000)) == 1
    # After Retention the id names a new session: its version 1 is newer than the old 2.
    writer.write([use(99, 1), newer])
    assert redis_client.hmget(keys.session_view("s"), "started_ts", "version") == ["99", "1"]
    writer.close()


def test_sink_checks_before_it_writes(redis_client, keys):
    """A sharer total that would pass int64 is refused before anything is written:
    that output becomes an `invalid_event` reject, the rest of the batch lands whole,
    and nothing is marked applied without being counted."""
    from flows.redis_sink import _RedisWriter

    writer = _RedisWriter(url_of(redis_client), keys)

    def accrual(order: str, amount: int) -> dict:
        return {
            "type": "commission",
            "output_id": f"commission:accrual:{order}:1:i",
            "kind": "accrual",
            "status": "pending",
            "order_id": order,
            "sharer_id": "al",
            "currency": "USD",
            "commission_minor": amount,
            "ts": 5,
        }

    big = 9_100_000_000_000_000_000  # fits; with `b` the total would pass the check's bound
    writer.write([accrual("a", big), accrual("b", 2 * 10**17), accrual("c", 5)])
    writer.write([accrual("b", 2 * 10**17)])  # a replay after a crash
    view = redis_client.hgetall(keys.sharer_view("al"))
    assert view == {"USD:accrued": str(big + 5), "USD:pending": str(big + 5), "USD:accruals": "2"}
    assert [redis_client.exists(keys.applied(f"commission:accrual:{o}:1:i")) for o in "abc"] == [
        1,
        0,
        1,
    ]
    rejects = [json.loads(f["data"]) for _, f in redis_client.xrange(keys.rejects)]
    assert [(r["reason"], r["output_id"]) for r in rejects] == [
        ("invalid_event", "reject:output:commission:accrual:b:1:i")
    ] * 2
    writer.close()


@pytest.mark.parametrize("args", [(), ("--processes", "2")], ids=["1-process", "2-processes"])
def test_bad_stream_entry_is_rejected_not_fatal(redis_client, keys, flows_factory, args):
    """In one process entries are parsed at the source; with two, at their sequencer
    key (a session shard for a segment), after the source read their type."""
    bad = [
        "{not json",
        "[1, 2]",
        json.dumps({"type": "tariff", "tariff_id": "t"}),  # every shard's, one reject
        json.dumps({"type": "segment", "session_id": "s1", "seq": -1}),  # at its shard
        json.dumps({"type": "segment", "session_id": 7}),
        json.dumps({"type": "nope"}),
    ]
    for data in bad:
        redis_client.xadd(keys.events, {"data": data})
    start = {"type": "session_start", "session_id": "s2", "user_id": "u", "service_id": "v"}
    redis_client.xadd(
        keys.events, {"data": json.dumps({**start, "tariff_id": "x", "report_interval_ms": 1000})}
    )
    flows_factory(args=args)
    wait_for(lambda: redis_client.xlen(keys.rejects) == len(bad) + 1, timeout=60)
    time.sleep(1)  # nothing more comes: one reject per entry
    got = [json.loads(f["data"]) for _, f in redis_client.xrange(keys.rejects)]
    assert sorted(o["reason"] for o in got) == ["invalid_event"] * len(bad) + ["unknown_tariff"]
    assert len({o["output_id"] for o in got}) == len(got)


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


def _exercises_the_lifecycle(outs) -> bool:
    """The log has approvals, clawbacks or pending reversals, and payouts to compare."""
    kinds = {o.get("kind") or o["type"] for o in outs}
    return {"accrual", "approval", "reversal", "payout"} <= kinds


def _replay_all(positioned):
    engine = Engine(SMALL_RULES)
    return [o for pos, ev in positioned for o in engine.feed(ev, pos)]


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


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
            wait_for(lambda: len(_children(proc.pid)) == 2, timeout=30)
            wait_for(lambda: redis_client.xlen(keys.rejects) > 0, timeout=60)
            os.kill(_children(proc.pid)[0], signal.SIGKILL)
        append_positioned(redis_client, keys, positioned[600:])
        wanted = {o["output_id"] for o in expected}
        wait_for_outputs(redis_client, keys, wanted)
        got = outputs(redis_client, keys)
        assert {o["output_id"] for o in got} == wanted
        assert final_state(got) == final_state(expected)
    finally:
        kill(proc, signal.SIGTERM)


def test_output_streams_keep_a_bounded_span(redis_client, keys):
    """No public stream grows with all history: each write trims entries older than
    the sink's ttl (R and a margin), a radix-tree node at a time."""
    import time

    from flows.redis_sink import _RedisWriter

    writer = _RedisWriter(url_of(redis_client), keys, ttl_ms=500)
    old = [
        {"type": "reject", "output_id": f"reject:{n}", "reason": "duplicate", "event": {}}
        for n in range(300)
    ]
    writer.write(old)
    assert redis_client.xlen(keys.rejects) == 300
    time.sleep(0.7)
    writer.write(
        [{"type": "reject", "output_id": "reject:new", "reason": "duplicate", "event": {}}]
    )
    assert redis_client.xlen(keys.rejects) < 150  # whole nodes of old entries went
    newest = json.loads(redis_client.xrevrange(keys.rejects, count=1)[0][1]["data"])
    assert newest["output_id"] == "reject:new"
    writer.close()


def test_statements_keep_only_their_retention(redis_client, keys):
    """Entries older than the statement retention leave their day's key, even while
    that day is still being written."""
    import time

    from flows.redis_sink import _RedisWriter

    writer = _RedisWriter(url_of(redis_client), keys, statement_ttl_ms=60_000)
    now = int(time.time() * 1000)

    def accrual(order: str, ts: int) -> dict:
        return {
            "type": "commission",
            "output_id": f"commission:accrual:{order}:{ts}:i",
            "kind": "accrual",
            "status": "pending",
            "order_id": order,
            "sharer_id": "al",
            "currency": "USD",
            "commission_minor": 1,
            "ts": ts,
        }

    day = now // 86_400_000
    old_ts = max(day * 86_400_000, now - 120_000)  # same day, older than the retention
    writer.write([accrual("old", old_ts), accrual("new", now)])
    kept = [
        json.loads(e)["order_id"] for e in redis_client.zrange(keys.statement("al", day), 0, -1)
    ]
    assert kept == (["new"] if old_ts < now - 60_000 else ["old", "new"])
    assert 0 < redis_client.pttl(keys.statement("al", day)) <= 60_000
    writer.close()


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
