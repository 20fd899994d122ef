"""Retention at the edges: idempotency marks expire with R, the input stream is
trimmed behind the flows keeping at least R of log, and `billing export
--since/--until` archives history as replayable files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from billing.log_lines import parse_log_event
from billing.settings import Settings
from flows.redis_sink import _RedisWriter
from harness.live import (
    append_positioned,
    outputs,
    url_of,
    wait_for,
    wait_for_outputs,
    with_stream_ids,
)
from ingest_api.app import create_app
from state.config import RuleSettings
from state.engine import Engine
from state.testing import SMALL_RULES, random_log
from tests.conftest import WRITE_KEY
from tests.support.logs import final_state, order
from tests.support.outputs import accrual_output

ORDER = {
    "order_id": "o1",
    "buyer_id": "b1",
    "currency": "USD",
    "lines": [{"item_id": "i1", "quantity": 2, "unit_price_minor": 500}],
}
SHORT = {
    "retention_ms": 1500,
    "attribution_window_ms": 1000,
    "holding_period_ms": 1000,
    "late_grace_ms": 1000,
}


def test_unique_marks_expire_with_r_and_catalog_marks_do_not(
    api: TestClient, redis_client, keys, settings: Settings
):
    assert api.post("/v1/orders", json=ORDER).status_code == 202
    assert (
        api.put(
            "/v1/tariffs/t", json={"currency": "USD", "unit_ms": 1000, "price_minor": 2}
        ).status_code
        == 202
    )
    ttl = redis_client.pttl(keys.idem("order", "o1"))
    assert settings.retention_ms - 60_000 < ttl <= settings.retention_ms
    assert redis_client.pttl(keys.idem("tariff", "t")) == -1  # the current version, kept


def test_after_r_the_same_id_is_new_at_the_api_too(settings: Settings, redis_client, keys):
    short = settings.model_copy(update=SHORT)
    with TestClient(create_app(short)) as client:
        client.headers["Authorization"] = f"Bearer {WRITE_KEY}"
        assert client.post("/v1/orders", json=ORDER).status_code == 202
        other = {**ORDER, "buyer_id": "b2"}
        assert client.post("/v1/orders", json=other).status_code == 409  # within R
        time.sleep(1.6)
        assert client.post("/v1/orders", json=other).status_code == 202  # forgotten


def _env(redis_url: str, prefix: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "REDIS_URL": redis_url, "BILLING_KEY_PREFIX": prefix, **extra}


def test_export_since_until_archives_a_span(redis_url, prefix, redis_client, keys, tmp_path: Path):
    events = [order(f"o{n}", 1_700_000_000_000 + n * 1000) for n in range(10)]
    append_positioned(redis_client, keys, [(f"{e['ts']}-0", e) for e in events])
    out = tmp_path / "span.jsonl"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "programs.cli",
            "export",
            "-o",
            str(out),
            "--since",
            "1700000002000",
            "--until",
            "2023-11-14T22:13:27Z",
        ],
        env=_env(redis_url, prefix),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    got = [json.loads(line)["order_id"] for line in out.read_text().splitlines()]
    assert got == ["o2", "o3", "o4", "o5", "o6"]  # [since, until): 22:13:27Z is ...007000
    replay = subprocess.run(
        [sys.executable, "-m", "programs.cli", "replay", str(out)], capture_output=True, text=True
    )
    assert replay.returncode == 0 and "replayed 5 events" in replay.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "programs.cli", "export", "--since", "2023-11-14T22:13:27"],
        env=_env(redis_url, prefix),
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "no time zone" in bad.stderr


@pytest.mark.parametrize("trim", [True, False])
def test_the_input_is_trimmed_behind_the_flows_keeping_r(
    redis_client, keys, flows_factory, trim: bool, monkeypatch
):
    now = int(redis_client.time()[0]) * 1000
    old = [order(f"old{n}", now - 60_000 + n) for n in range(50)]
    # Ahead of the clock, so they stay within R for the whole test.
    recent = [order(f"new{n}", now + 30_000 + n) for n in range(50)]
    append_positioned(redis_client, keys, [(f"{e['ts']}-0", e) for e in old + recent])
    monkeypatch.setenv("BILLING_TRIM_INPUT", "true" if trim else "false")
    flows_factory(RuleSettings(**SHORT))
    wait_for(lambda: redis_client.get(keys.flows_position) == f"{recent[-1]['ts']}-0")
    if not trim:
        time.sleep(2.5)
        assert redis_client.xlen(keys.events) == 100
        return
    wait_for(lambda: redis_client.xlen(keys.events) == 50, timeout=20)
    first_id = redis_client.xrange(keys.events, count=1)[0][0]
    assert first_id == f"{recent[0]['ts']}-0"  # at least R of log is kept


def test_output_streams_keep_a_bounded_span(redis_client, keys):
    """No public stream grows with all history: each write trims entries older than
    the sink's ttl (R and a margin), a radix-tree node at a time."""
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
    writer = _RedisWriter(url_of(redis_client), keys, statement_ttl_ms=60_000)
    now = int(time.time() * 1000)

    day = now // 86_400_000
    old_ts = max(day * 86_400_000, now - 120_000)  # same day, older than the retention
    writer.write([accrual_output("old", old_ts, 1), accrual_output("new", now, 1)])
    kept = [
        json.loads(e)["order_id"] for e in redis_client.zrange(keys.statement("al", day), 0, -1)
    ]
    assert kept == (["new"] if old_ts < now - 60_000 else ["old", "new"])
    assert 0 < redis_client.pttl(keys.statement("al", day)) <= 60_000
    writer.close()


def test_billing_flows_sweeps_the_facts_behind_the_horizon(
    redis_client, keys, flows_factory, monkeypatch
):
    """Live, facts and applied marks carry no TTL and the supervisor's sweepers forget
    them by the log's time while the flows run: a log spanning several R (SMALL_RULES),
    a margin of a second. The sweepers delete, and the bill is the replay's."""
    positioned = with_stream_ids([parse_log_event(e) for e in random_log(11, 1500)])
    engine = Engine(SMALL_RULES)
    expected = [o for pos, ev in positioned for o in engine.feed(ev, pos)]
    monkeypatch.setenv("BILLING_FACTS_TTL_MARGIN_MS", "1000")
    flows_factory(SMALL_RULES, lag_ms=10**13)
    # In parts, so that the commission sequencer takes snapshots along the log (the
    # horizon stays where the process began until four have been taken).
    step = len(positioned) // 10 + 1
    for start in range(0, len(positioned), step):
        append_positioned(redis_client, keys, positioned[start : start + step])
        time.sleep(0.4)
    wait_for_outputs(redis_client, keys, {o["output_id"] for o in expected})
    got = outputs(redis_client, keys)
    assert final_state(got) == final_state(expected)
    wait_for(lambda: int(redis_client.hget(keys.stats("facts"), "swept") or 0) > 0, timeout=30)
    facts = list(redis_client.scan_iter(match=keys.fact_pattern()))
    assert facts and all(redis_client.pttl(k) == -1 for k in facts)
    # The applied marks likewise: no TTL, their buckets swept by the log's time.
    wait_for(
        lambda: int(redis_client.hget(keys.stats("facts"), "marks_swept") or 0) > 0, timeout=30
    )
    buckets = redis_client.zrange(keys.marks_index, 0, -1)
    assert buckets and all(redis_client.pttl(k) == -1 for k in buckets)
