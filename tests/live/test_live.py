"""Live: HTTP ingest -> Redis stream -> `billing flows` -> output streams and views."""

from __future__ import annotations

import json
import time

import pytest

from harness.live import url_of, wait_for
from tests.support.outputs import accrual_output


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

    big = 9_100_000_000_000_000_000  # fits; with `b` the total would pass the check's bound
    writer.write(
        [accrual_output("a", 1, big), accrual_output("b", 1, 2 * 10**17), accrual_output("c", 1, 5)]
    )
    writer.write([accrual_output("b", 1, 2 * 10**17)])  # a replay after a crash
    view = redis_client.hgetall(keys.sharer_view("al"))
    assert view == {"USD:accrued": str(big + 5), "USD:pending": str(big + 5), "USD:accruals": "2"}
    marks = keys.marks(0)  # the bucket of the minute their ts (1) falls in
    assert [redis_client.hexists(marks, f"commission:accrual:{o}:1:i") for o in "abc"] == [
        True,
        False,
        True,
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
