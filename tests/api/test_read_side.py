"""Read API, SSE stream and metrics against real Redis and a running API."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from typing import Any

import httpx
import pytest

from billing.keys import WEBHOOK_GROUP
from billing.redis_runtime import async_client
from harness.server import running_api
from ingest_api import metrics
from tests.conftest import READ_KEY, WRITE_KEY

READ = {"Authorization": f"Bearer {READ_KEY}"}


def usage(session_id, version, **extra):
    return {
        "type": "usage",
        "output_id": f"usage:{session_id}:1000:{version}",
        "session_id": session_id,
        "started_ts": 1000,
        "user_id": "u",
        "service_id": "v",
        "tariff_id": "t",
        "status": "open",
        "closed_reason": None,
        "billed_ms": 1000 * version,
        "fee_minor": 10 * version,
        "currency": "USD",
        "segments": version,
        "version": version,
        "ts": 1000 + version,
        **extra,
    }


def commission(
    kind, order_id, amount, currency="USD", sharer="alice", refund_id=None, ts=5, status="pending"
):
    suffix = f"{refund_id}:i" if refund_id else f"{order_id}:i"
    return {
        "type": "commission",
        "output_id": f"commission:{kind}:{suffix}",
        "kind": kind,
        "status": status,
        "order_id": order_id,
        "item_id": "i",
        "buyer_id": "b",
        "sharer_id": sharer,
        "share_id": "x",
        "scan_id": "c",
        "rule": None,
        "base_minor": 100,
        "commission_minor": amount,
        "currency": currency,
        "ts": ts,
        "refund_id": refund_id,
    }


def reject(n, reason="duplicate", session_id=None):
    event = {"type": "segment", "session_id": session_id} if session_id else {"type": "order"}
    return {"type": "reject", "output_id": f"reject:L{n}", "reason": reason, "event": event}


def test_session_view(api, writer):
    writer([usage("s1", 2), usage("s1", 1)])
    resp = api.get("/v1/sessions/s1", headers=READ)
    assert resp.status_code == 200 and resp.json()["version"] == 2
    missing = api.get("/v1/sessions/nope", headers=READ)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


def test_order_commissions_and_sharer_earnings(api, writer):
    writer(
        [
            commission("accrual", "o1", 100),
            commission("reversal", "o1", -33, refund_id="f1", ts=6),
            commission("accrual", "o2", 7, currency="EUR"),
            commission("accrual", "o1", 100),
        ]
    )
    body = api.get("/v1/orders/o1/commissions", headers=READ).json()
    assert [c["commission_minor"] for c in body["commissions"]] == [100, -33]
    earnings = api.get("/v1/sharers/alice/earnings", headers=READ).json()
    zero = {
        "pending": 0,
        "payable": 0,
        "paid": 0,
        "accrued": 0,
        "reversed": 0,
        "net": 0,
        "accruals": 0,
        "approvals": 0,
        "reversals": 0,
        "payouts": 0,
    }
    assert earnings["currencies"] == {
        "EUR": {**zero, "pending": 7, "accrued": 7, "net": 7, "accruals": 1},
        "USD": {
            **zero,
            "pending": 67,
            "accrued": 100,
            "reversed": -33,
            "net": 67,
            "accruals": 1,
            "reversals": 1,
        },
    }
    assert api.get("/v1/orders/none/commissions", headers=READ).status_code == 404
    assert api.get("/v1/sharers/none/earnings", headers=READ).status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/v1/sessions/s1",
        "/v1/orders/o/commissions",
        "/v1/sharers/a/earnings",
        "/v1/stream",
        "/dashboard",
        "/metrics",
    ],
)
def test_reads_need_a_read_key(api, path):
    resp = api.get(path, headers={"Authorization": "Bearer nope"})
    assert resp.status_code == 401
    assert resp.headers["content-type"] == "application/problem+json"


def read_sse(base, count, headers=None, params=None, timeout=15.0):
    """The first `count` events of the stream as (id, type, data)."""
    events: list[tuple[str, str, str]] = []
    deadline = time.monotonic() + timeout
    with httpx.stream(
        "GET",
        f"{base}/v1/stream",
        headers={**READ, **(headers or {})},
        params=params,
        timeout=timeout,
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        current: dict[str, str] = {}
        for line in resp.iter_lines():
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(events)} of {count} events arrived")
            if not line:
                if "data" in current:
                    events.append((current["id"], current["event"], json.loads(current["data"])))
                    if len(events) == count:
                        return events
                current = {}
                continue
            field, _, value = line.partition(": ")
            current[field] = value
    return events


def test_sse_resumes_without_gaps_or_repeats(settings, writer):
    outputs = [usage("s", v) for v in range(1, 6)] + [
        commission("accrual", f"o{n}", n) for n in range(1, 6)
    ]
    outputs += [reject(n) for n in range(5)]
    writer(outputs[:8])
    with running_api(settings) as base:
        first = read_sse(base, 5)
        more = threading.Timer(0.3, lambda: writer(outputs[8:]))
        more.start()
        rest = read_sse(base, len(outputs) - 5, headers={"Last-Event-ID": first[-1][0]})
        more.join()
    got = [e[2]["output_id"] for e in first + rest]
    assert sorted(got) == sorted(o["output_id"] for o in outputs)
    assert len(set(got)) == len(got)
    ids = [e[0] for e in first + rest]
    keys = [tuple(map(int, i.split("-"))) for i in ids]
    assert keys == sorted(keys), "events come in stream-id order"


def test_sse_filters(settings, writer):
    writer(
        [
            usage("s1", 1),
            usage("s2", 1),
            commission("accrual", "o1", 5, sharer="bob"),
            commission("accrual", "o2", 6, sharer="al"),
            reject(1, session_id="s1"),
        ]
    )
    with running_api(settings) as base:
        by_session = read_sse(base, 2, params={"session_id": "s1"})
        by_sharer = read_sse(base, 1, params={"sharer_id": "bob"})
        by_type = read_sse(base, 2, params={"type": "commission"})
    assert [e[1] for e in by_session] == ["usage", "reject"]
    assert by_sharer[0][2]["order_id"] == "o1"
    assert {e[2]["order_id"] for e in by_type} == {"o1", "o2"}


def test_sse_rejects_a_bad_resume_id(api):
    resp = api.get("/v1/stream", headers={**READ, "Last-Event-ID": "garbage"})
    assert resp.status_code == 400


def test_metrics(api, writer, keys, redis_client):
    api.post(
        "/v1/orders",
        json={
            "order_id": "o",
            "buyer_id": "b",
            "currency": "USD",
            "lines": [{"item_id": "i", "quantity": 1, "unit_price_minor": 1}],
        },
        headers={"Authorization": f"Bearer {WRITE_KEY}"},
    )
    writer([usage("s", 1), reject(1), reject(2, "late")])
    text = api.get("/metrics", headers=READ).text
    assert 'billing_events_ingested_total{type="order"} 1.0' in text
    assert 'billing_outputs_total{type="usage"} 1.0' in text
    assert 'billing_rejects_total{reason="late"} 1.0' in text
    assert "billing_flow_lag_ms" in text


def _backlog_ages(api) -> dict[str, int]:
    text = api.get("/metrics", headers=READ).text
    found = re.findall(r'^billing_webhook_backlog_age_ms\{stream="(\w+)"\} (\S+)$', text, re.M)
    return {stream: int(float(age)) for stream, age in found}


def test_metrics_show_what_the_webhook_dispatchers_have_yet_to_take(
    api, writer, keys, redis_client
):
    """The gauge that explains a stream the sink may not trim: its oldest output the
    dispatchers' group has not finished (pending, or not read)."""
    assert _backlog_ages(api) == dict.fromkeys(("commissions", "usage", "payouts", "rejects"), 0)
    redis_client.xgroup_create(keys.rejects, WEBHOOK_GROUP, id="0", mkstream=True)
    writer([reject(1), reject(2)])
    time.sleep(0.05)
    assert _backlog_ages(api)["rejects"] >= 50  # two unread
    first = redis_client.xreadgroup(WEBHOOK_GROUP, "c", {keys.rejects: ">"}, count=1)
    time.sleep(0.05)
    assert _backlog_ages(api)["rejects"] >= 100  # one pending, one unread: the pending is older
    redis_client.xack(keys.rejects, WEBHOOK_GROUP, first[0][1][0][0])
    assert _backlog_ages(api)["rejects"] >= 100  # one unread, as old
    rest = redis_client.xreadgroup(WEBHOOK_GROUP, "c", {keys.rejects: ">"})
    redis_client.xack(keys.rejects, WEBHOOK_GROUP, rest[0][1][0][0])
    assert _backlog_ages(api)["rejects"] == 0


def test_the_backlog_gauge_survives_a_dispatcher_acknowledging_meanwhile(
    settings, writer, keys, redis_client
):
    """Seen in the demo as a 500 from /metrics: the group showed entries pending, and
    a dispatcher acknowledged them before the gauge asked for the oldest. Here the
    acknowledgement runs between the two reads, on the real Redis."""
    redis_client.xgroup_create(keys.rejects, WEBHOOK_GROUP, id="0", mkstream=True)
    writer([reject(1)])
    taken = redis_client.xreadgroup(WEBHOOK_GROUP, "c", {keys.rejects: ">"})
    conn = async_client(settings.redis_url, decode_responses=True)

    class AcknowledgingFirst:
        """The API's client, with the dispatcher's XACK run just before XPENDING."""

        def __getattr__(self, name: str) -> Any:
            return getattr(conn, name)

        async def xpending(self, *args: Any) -> Any:
            redis_client.xack(keys.rejects, WEBHOOK_GROUP, taken[0][1][0][0])
            return await conn.xpending(*args)

    async def oldest() -> str | None:
        try:
            return await metrics._oldest_unfinished_id(AcknowledgingFirst(), keys.rejects)
        finally:
            await conn.aclose()

    assert asyncio.run(oldest()) is None  # nothing left unfinished


def test_sse_merges_large_backlogs_in_order(settings, writer):
    # More than one XREAD's worth per stream, interleaved across streams.
    outputs = []
    for n in range(1500):
        outputs += [usage(f"s{n}", 1), commission("accrual", f"o{n}", n)]
    for start in range(0, len(outputs), 700):
        writer(outputs[start : start + 700])
    with running_api(settings) as base:
        events = read_sse(base, len(outputs), timeout=60)
    assert [e[2]["output_id"] for e in events] == [o["output_id"] for o in outputs]
