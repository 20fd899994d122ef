"""The whole system on a real Redis Cluster (three embedded nodes, slots spread
over them): every script's keys share one hash slot (billing.keys), so no call
is refused with CROSSSLOT, and what is billed is what a replay bills."""

from __future__ import annotations

import json
import os
import secrets
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from billing.keys import Keys
from billing.log_lines import parse_log_event
from billing.redis_runtime import client
from billing.settings import Settings
from flows.fact_sweeper import FactSweeper, MarkSweeper
from flows.facts_redis import RedisFacts
from flows.redis_sink import _RedisWriter
from harness.live import (
    append_positioned,
    dispatcher_env,
    flows_env,
    kill,
    outputs,
    start_dispatcher,
    start_flows,
    wait_for,
    wait_for_outputs,
    with_stream_ids,
)
from harness.redis_cluster import EmbeddedRedisCluster
from ingest_api.app import create_app
from state.config import RuleSettings
from state.engine import Engine
from state.sharding import COMMISSIONS
from state.testing import SMALL_RULES, random_log
from tests.conftest import READ_KEY, WRITE_KEY, api_settings
from tests.support.logs import final_state
from tests.support.outputs import accrual_output
from tests.support.webhooks import Receiver, verify_by_hand


@pytest.fixture(scope="module")
def cluster() -> Iterator[EmbeddedRedisCluster]:
    made = EmbeddedRedisCluster(nodes=3)
    yield made
    made.stop()  # the cluster is this module's own: its keys go with it


@pytest.fixture
def prefix() -> str:
    return f"test:{secrets.token_hex(6)}:"


@pytest.fixture
def keys(prefix: str) -> Keys:
    return Keys(prefix, cluster=True)


@pytest.fixture
def conn(cluster: EmbeddedRedisCluster) -> Iterator[redis.Redis]:
    made = client(cluster.url, cluster=True)
    yield made
    made.close()


def on_cluster(env: dict[str, str]) -> dict[str, str]:
    return {**env, "BILLING_REDIS_CLUSTER": "true"}


def node_key_counts(cluster: EmbeddedRedisCluster, pattern: str) -> list[int]:
    counts = []
    for node in cluster.nodes:
        with redis.Redis(port=node.port) as one:
            counts.append(sum(1 for _ in one.scan_iter(match=pattern, count=1000)))
    return counts


def test_settings_refuse_what_a_cluster_cannot_hold() -> None:
    for bad in ({"key_prefix": "{t}:"}, {"redis_url": "redis://127.0.0.1:7000/3"}):
        with pytest.raises(ValueError, match="cluster"):
            Settings(redis_cluster=True, _env_file=None, **bad)  # type: ignore[arg-type]
    keys = Settings(redis_cluster=True, key_prefix="t:", _env_file=None).keys
    assert keys.commissions == "{t:billing}:commissions"
    assert keys.fact("order", "o1").startswith("{t:billing:fact:")
    assert Keys("t:").commissions == "t:billing:commissions"  # one node: SPEC's names


@pytest.mark.parametrize("args", [("--workers", "2"), ("--processes", "2")])
def test_a_random_log_bills_as_the_replay(cluster, conn, keys, prefix, tmp_path, args) -> None:
    positioned = with_stream_ids([parse_log_event(e) for e in random_log(7, 1200)])
    engine = Engine(SMALL_RULES)
    expected = [o for pos, ev in positioned for o in engine.feed(ev, pos)]
    env = on_cluster(flows_env(cluster.url, prefix, tmp_path / "rec", SMALL_RULES, 10**13))
    proc = start_flows(env, *args)
    try:
        append_positioned(conn, keys, positioned[:600])
        wait_for(lambda: conn.xlen(keys.rejects) > 0, timeout=60)
        kill(proc)  # SIGKILL mid-way: the restart resumes from the last snapshot
        proc = start_flows(env, *args)
        append_positioned(conn, keys, positioned[600:])
        wanted = {o["output_id"] for o in expected}
        wait_for_outputs(conn, keys, wanted)
    finally:
        kill(proc, signal.SIGTERM)
    got = outputs(conn, keys)
    assert {o["output_id"] for o in got} == wanted
    assert final_state(got) == final_state(expected)
    # The facts (most of the memory) spread over the nodes; the rest share one.
    assert sum(1 for n in node_key_counts(cluster, f"{{{prefix}billing:fact:*") if n) >= 2
    assert sum(1 for n in node_key_counts(cluster, f"{{{prefix}billing}}:*") if n) == 1


def test_http_to_views_and_webhooks(cluster, conn, keys, prefix, tmp_path) -> None:
    settings = api_settings(cluster.url, prefix, redis_cluster=True, webhook_allow_private=True)
    rules = RuleSettings(idle_timeout_factor=1)
    flows = start_flows(on_cluster(flows_env(cluster.url, prefix, tmp_path / "rec", rules, 200)))
    dispatcher = start_dispatcher(on_cluster(dispatcher_env(cluster.url, prefix)))
    app = TestClient(create_app(settings), follow_redirects=False, client=("127.0.0.1", 50000))
    with app as api, Receiver() as receiver:
        api.headers["Authorization"] = f"Bearer {WRITE_KEY}"
        try:
            endpoint = _post(api, "/v1/webhook-endpoints", url=receiver.url, types=["commission"])
            _bill_an_order_and_a_session(api)
            wait_for(lambda: _closed(conn, keys), timeout=40)
            wait_for(lambda: len(receiver.delivered()) == 2, timeout=30)
        finally:
            kill(flows, signal.SIGTERM)
            kill(dispatcher)
        read = {"Authorization": f"Bearer {READ_KEY}"}
        listed = api.get("/v1/orders/o1/commissions", headers=read).json()
        amounts = sorted(o["commission_minor"] for o in listed["commissions"])
        assert amounts == [-53, 105]
        # The statement's read script, on a cluster (one slot: the sharer's keys).
        now_ms = int(conn.time()[0]) * 1000
        span = {"from": now_ms - 3_600_000, "to": now_ms + 3_600_000}
        statement = api.get("/v1/sharers/alice/statement", params=span, headers=read)
        assert statement.status_code == 200, statement.text
        assert sorted(e["commission_minor"] for e in statement.json()["entries"]) == [-53, 105]
        for request in receiver.delivered().values():
            assert verify_by_hand(endpoint["secret"], request["headers"], request["body"])
    usage = json.loads(conn.hget(keys.session_view("sess1"), "data"))
    assert (usage["billed_ms"], usage["fee_minor"]) == (300, 3)
    assert conn.hgetall(keys.sharer_view("alice"))["USD:pending"] == "52"
    assert conn.xlen(keys.rejects) == 0
    assert os.environ.get("BILLING_REDIS_CLUSTER") is None  # the env above was the child's


def _post(api: TestClient, path: str, **body: Any) -> dict[str, Any]:
    resp = api.post(path, json=body)
    assert resp.status_code in (200, 201, 202), resp.text
    return dict(resp.json())


def _bill_an_order_and_a_session(api: TestClient) -> None:
    assert api.put("/v1/commission-rules/r", json={"kind": "percent", "bps": 500}).is_success
    share = _post(
        api, "/v1/shares", item_id="i", sharer_id="alice", activity_url="https://shop.example/p"
    )
    scan = api.get(f"/s/{share['token']}", headers={"X-User-Id": "bob"})
    scan_id = scan.headers["location"].split("scan_id=")[1]
    line = {"item_id": "i", "quantity": 2, "unit_price_minor": 1050}
    order = {"order_id": "o1", "buyer_id": "bob", "currency": "USD", "lines": [line]}
    _post(api, "/v1/orders", **order, scan_id=scan_id)
    assert _post(api, "/v1/orders", **order, scan_id=scan_id)  # a repeat: 200, not logged
    refund = {"refund_id": "f1", "order_id": "o1", "lines": [{"item_id": "i", "quantity": 1}]}
    _post(api, "/v1/refunds", **refund)
    assert api.put("/v1/tariffs/t", json={"currency": "USD", "unit_ms": 100, "price_minor": 1})
    start = {"user_id": "u", "service_id": "v", "tariff_id": "t", "session_id": "sess1"}
    t0 = _post(api, "/v1/sessions", **start)["server_time_ms"]
    for seq, (lo, hi) in enumerate(((0, 250), (100, 300))):
        segment = {"seq": seq, "start_ms": t0 + lo, "end_ms": t0 + hi, "end": False}
        _post(api, "/v1/sessions/sess1/segments", **segment)


def _closed(conn: redis.Redis, keys: Keys) -> bool:
    data = conn.hget(keys.session_view("sess1"), "data")
    return data is not None and json.loads(data)["status"] == "closed"


def test_the_fact_sweeper_forgets_facts_on_every_node(cluster, conn, keys) -> None:
    """flows.fact_sweeper's SCAN for an earlier version's facts on a cluster: it visits
    every node, and each step's script gets the facts of one slot (one fact shard) at
    a time."""
    for n in range(200):
        conn.set(keys.fact("order", f"o{n}"), json.dumps([[n * 10, f"{n + 1}-0", None]]))
    conn.set(keys.facts_horizon, 1_000)
    assert FactSweeper(conn, keys, 0).sweep_all() == 100
    left = [conn.exists(keys.fact("order", f"o{n}")) for n in range(200)]
    assert left == [0] * 100 + [1] * 100
    assert sum(1 for n in node_key_counts(cluster, keys.fact_pattern()) if n) >= 2


def test_facts_are_written_into_their_shards_buckets_and_swept_on_every_node(
    cluster, conn, keys
) -> None:
    """flows.facts_redis writes each fact shard's facts with its own buckets and index
    in one script per shard (no CROSSSLOT); the sweeper reads every shard's index
    and sweeps each shard's buckets in one script."""
    sweeper = FactSweeper(conn, keys, 0)
    sweeper.legacy.note_upgrade()
    store = RedisFacts(conn, keys, None, COMMISSIONS)
    for n in range(200):
        key = keys.fact("order", f"o{n}")
        store._facts[key] = [[n * 60_000, f"{n + 1}-0", None]]
        store._dirty.add(key)
    store.flush()
    store.close()
    conn.set(keys.facts_horizon, 100 * 60_000)
    assert sweeper.sweep_all() == 100
    left = [conn.exists(keys.fact("order", f"o{n}")) for n in range(200)]
    assert left == [0] * 100 + [1] * 100
    indexes = [keys.fact_index(tag) for tag in keys.fact_tags()]
    assert sum(conn.zcard(index) for index in indexes) == 100
    assert (
        sum(
            1 for n in node_key_counts(cluster, f"{{{keys.prefix}billing:fact:*:factidx:index") if n
        )
        >= 2
    )


def test_the_mark_sweeper_forgets_applied_marks_on_a_cluster(cluster, conn, keys) -> None:
    """The sink writes the marks' buckets and their index under the deployment's hash
    tag, and the sweeper drops buckets in one script: no CROSSSLOT."""
    writer = _RedisWriter(cluster.url, keys)
    try:
        writer.write([accrual_output(f"o{n}", n * 60_000, 1) for n in range(10)])
    finally:
        writer.close()
    conn.set(keys.facts_horizon, 5 * 60_000)
    assert MarkSweeper(conn, keys, 0).sweep_all() == 5
    assert conn.zcard(keys.marks_index) == 5
