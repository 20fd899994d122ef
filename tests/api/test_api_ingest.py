"""Ingest endpoints against a real Redis and the real app."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from billing.keys import Keys
from tests.conftest import READ_KEY
from tests.support.streams import logged

ORDER: dict[str, Any] = {
    "order_id": "o1",
    "buyer_id": "b1",
    "currency": "USD",
    "lines": [{"item_id": "i1", "quantity": 2, "unit_price_minor": 500}],
}
TARIFF = {"currency": "USD", "unit_ms": 1000, "price_minor": 2}


def test_order_is_appended_with_server_ts(api: TestClient, redis_client: redis.Redis, keys: Keys):
    resp = api.post("/v1/orders", json=ORDER)
    assert resp.status_code == 202
    body = resp.json()
    assert body["order_id"] == "o1"
    (event,) = logged(redis_client, keys)
    assert event["type"] == "order" and event["ts"] == body["ts"]
    assert event["lines"] == ORDER["lines"]


def test_repeat_answers_200_with_the_first_answer(api: TestClient, redis_client, keys):
    first = api.post("/v1/orders", json=ORDER)
    again = api.post("/v1/orders", json=ORDER)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json() == first.json()
    assert len(logged(redis_client, keys)) == 1


def test_same_id_other_body_is_409_and_writes_nothing(api: TestClient, redis_client, keys):
    api.post("/v1/orders", json=ORDER)
    resp = api.post("/v1/orders", json={**ORDER, "buyer_id": "someone-else"})
    assert resp.status_code == 409
    assert resp.headers["content-type"] == "application/problem+json"
    assert len(logged(redis_client, keys)) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**ORDER, "lines": []}, "body.lines"),
        ({**ORDER, "currency": "usd"}, "body.currency"),
        ({**ORDER, "order_id": "has space"}, "body.order_id"),
        ({**ORDER, "order_id": "x" * 129}, "body.order_id"),
        (
            {**ORDER, "lines": [{"item_id": "i", "quantity": 0, "unit_price_minor": 1}]},
            "body.lines.0.quantity",
        ),
        (
            {**ORDER, "lines": [{"item_id": "i", "quantity": 1, "unit_price_minor": 1.5}]},
            "body.lines.0.unit_price_minor",
        ),
        (
            {**ORDER, "lines": [{"item_id": "i", "quantity": 1, "unit_price_minor": "100"}]},
            "body.lines.0.unit_price_minor",
        ),
        (
            {**ORDER, "lines": [{"item_id": "i", "quantity": 1, "unit_price_minor": -1}]},
            "body.lines.0.unit_price_minor",
        ),
        ({**ORDER, "lines": ORDER["lines"] * 2}, "body"),
        ({**ORDER, "ts": 5}, "body.ts"),
        ({k: v for k, v in ORDER.items() if k != "buyer_id"}, "body.buyer_id"),
    ],
)
def test_bad_order_is_422_problem_naming_the_field(api, redis_client, keys, body, field):
    resp = api.post("/v1/orders", json=body)
    assert resp.status_code == 422
    assert resp.headers["content-type"] == "application/problem+json"
    problem = resp.json()
    assert problem["status"] == 422
    assert any(e["field"] == field for e in problem["errors"]), problem
    assert logged(redis_client, keys) == []


def test_malformed_json_is_422_not_500(api: TestClient, redis_client, keys):
    resp = api.post(
        "/v1/orders", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert resp.status_code == 422
    assert resp.headers["content-type"] == "application/problem+json"


def test_oversized_body_is_413(api: TestClient, redis_client, keys):
    resp = api.post(
        "/v1/orders", content=b"x" * 70_000, headers={"content-type": "application/json"}
    )
    assert resp.status_code == 413
    assert resp.headers["content-type"] == "application/problem+json"
    assert logged(redis_client, keys) == []


@pytest.mark.parametrize("auth", [None, "Bearer wrong", f"Bearer {READ_KEY}", "Basic x"])
def test_writes_need_the_api_key(api: TestClient, redis_client, keys, auth):
    resp = api.post("/v1/orders", json=ORDER, headers={"Authorization": auth or ""})
    assert resp.status_code == 401
    assert resp.headers["content-type"] == "application/problem+json"
    assert logged(redis_client, keys) == []


def test_rules_and_tariffs_are_versioned_puts(api: TestClient, redis_client, keys):
    rule = {"kind": "percent", "bps": 500}
    assert api.put("/v1/commission-rules/r1", json=rule).status_code == 202
    assert api.put("/v1/commission-rules/r1", json=rule).status_code == 200
    assert api.put("/v1/commission-rules/r1", json={**rule, "bps": 600}).status_code == 202
    assert api.put("/v1/tariffs/t1", json=TARIFF).status_code == 202
    events = logged(redis_client, keys)
    assert [e["type"] for e in events] == ["commission_rule", "commission_rule", "tariff"]
    assert events[1]["bps"] == 600 and events[1]["rule_id"] == "r1"


@pytest.mark.parametrize(
    "rule",
    [
        {"kind": "percent"},
        {"kind": "flat", "amount_minor": 10},
        {"kind": "percent", "bps": 10_001},
        {"kind": "bogus", "bps": 1},
    ],
)
def test_bad_rules_are_422(api: TestClient, redis_client, keys, rule):
    assert api.put("/v1/commission-rules/r1", json=rule).status_code == 422
    assert logged(redis_client, keys) == []


def test_session_start_answers_clock_and_interval(api: TestClient, redis_client, keys, settings):
    api.put("/v1/tariffs/t1", json=TARIFF)
    resp = api.post("/v1/sessions", json={"user_id": "u", "service_id": "v", "tariff_id": "t1"})
    assert resp.status_code == 202
    body = resp.json()
    assert body["report_interval_ms"] == settings.report_interval_ms
    event = logged(redis_client, keys)[-1]
    assert event["type"] == "session_start"
    assert event["session_id"] == body["session_id"]
    assert event["ts"] == body["server_time_ms"]
    assert event["report_interval_ms"] == settings.report_interval_ms


def test_session_with_unknown_tariff_is_404(api: TestClient, redis_client, keys):
    resp = api.post("/v1/sessions", json={"user_id": "u", "service_id": "v", "tariff_id": "nope"})
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/problem+json"
    assert logged(redis_client, keys) == []


def test_client_chosen_session_id_is_idempotent(api: TestClient, redis_client, keys):
    api.put("/v1/tariffs/t1", json=TARIFF)
    body = {"user_id": "u", "service_id": "v", "tariff_id": "t1", "session_id": "s1"}
    first = api.post("/v1/sessions", json=body)
    again = api.post("/v1/sessions", json=body)
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.json() == again.json()
    assert api.post("/v1/sessions", json={**body, "user_id": "u2"}).status_code == 409


def test_segments(api: TestClient, redis_client, keys):
    seg = {"seq": 0, "start_ms": 1000, "end_ms": 2000, "end": False}
    assert api.post("/v1/sessions/s1/segments", json=seg).status_code == 202
    assert api.post("/v1/sessions/s1/segments", json=seg).status_code == 200
    assert api.post("/v1/sessions/s1/segments", json={**seg, "end_ms": 3000}).status_code == 409
    assert api.post("/v1/sessions/s1/segments", json={**seg, "seq": -1}).status_code == 422
    (event,) = logged(redis_client, keys)
    assert event["session_id"] == "s1" and event["seq"] == 0


def test_refunds(api: TestClient, redis_client, keys):
    resp = api.post("/v1/refunds", json={"refund_id": "r1", "order_id": "o1"})
    assert resp.status_code == 202
    bad = api.post("/v1/refunds", json={"refund_id": "r2", "order_id": "o1", "lines": []})
    assert bad.status_code == 422
    (event,) = logged(redis_client, keys)
    assert "lines" not in event


def test_batch_is_all_or_nothing(api: TestClient, redis_client, keys):
    batch = {
        "events": [
            {"type": "tariff", "tariff_id": "t1", **TARIFF},
            {
                "type": "session_start",
                "session_id": "s1",
                "user_id": "u",
                "service_id": "v",
                "tariff_id": "t1",
            },
            {
                "type": "segment",
                "session_id": "s1",
                "seq": 0,
                "start_ms": 1,
                "end_ms": 2,
                "end": True,
            },
            {"type": "order", **ORDER},
        ]
    }
    resp = api.post("/v1/events", json=batch)
    assert resp.status_code == 202, resp.text
    assert [r["status"] for r in resp.json()["results"]] == ["accepted"] * 4
    assert len(logged(redis_client, keys)) == 4
    # Same batch again: all repeats.
    again = api.post("/v1/events", json=batch)
    assert again.status_code == 200
    assert [r["status"] for r in again.json()["results"]] == ["repeat"] * 4
    # One conflicting event: nothing of the batch is written.
    conflicting = {
        "events": [
            {"type": "order", **ORDER, "order_id": "o9"},
            {"type": "order", **ORDER, "buyer_id": "other"},
        ]
    }
    resp = api.post("/v1/events", json=conflicting)
    assert resp.status_code == 409
    assert resp.json()["errors"][0]["field"] == "body.events.1"
    assert len(logged(redis_client, keys)) == 4


def test_batch_validation_names_the_index(api: TestClient, redis_client, keys):
    resp = api.post(
        "/v1/events",
        json={"events": [{"type": "order", **ORDER}, {"type": "segment", "session_id": "s"}]},
    )
    assert resp.status_code == 422
    fields = [e["field"] for e in resp.json()["errors"]]
    assert any(f.startswith("body.events.1") for f in fields)
    assert logged(redis_client, keys) == []


def test_batch_limit(api: TestClient, redis_client, keys):
    seg = {"type": "segment", "session_id": "s", "start_ms": 1, "end_ms": 2, "end": False}
    events = [{**seg, "seq": i} for i in range(1001)]
    resp = api.post("/v1/events", json={"events": events})
    assert resp.status_code == 413
    assert logged(redis_client, keys) == []


def test_batch_session_needs_known_tariff(api: TestClient, redis_client, keys):
    resp = api.post(
        "/v1/events",
        json={
            "events": [
                {
                    "type": "session_start",
                    "session_id": "s1",
                    "user_id": "u",
                    "service_id": "v",
                    "tariff_id": "t-missing",
                }
            ]
        },
    )
    assert resp.status_code == 404


def test_health_and_readiness(api: TestClient):
    assert api.get("/healthz").json() == {"status": "ok"}
    assert api.get("/readyz").status_code == 200
    assert api.get("/openapi.json").status_code == 200
