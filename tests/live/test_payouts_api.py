"""Issue 8 interfaces end to end: POST /v1/payouts (and in batches), earnings and
statements (JSON and CSV) over what the live flows wrote, against real Redis."""

from __future__ import annotations

import csv
import io
import json

from billing.currencies import format_minor
from harness.live import wait_for
from state.config import RuleSettings
from tests.conftest import READ_KEY

READ = {"Authorization": f"Bearer {READ_KEY}"}
HOLD = 5000  # ms: approvals come within the test, after the early checks even on a busy machine


def _payouts(redis_client, keys):
    return [json.loads(f["data"]) for _, f in redis_client.xrange(keys.payouts)]


def _rejects(redis_client, keys):
    return [json.loads(f["data"])["reason"] for _, f in redis_client.xrange(keys.rejects)]


def test_payout_writes_are_validated_and_idempotent(api):
    body = {"sharer_id": "ana", "currency": "JPY", "payout_id": "p1"}
    first = api.post("/v1/payouts", json=body)
    assert first.status_code == 202 and first.json()["payout_id"] == "p1"
    assert api.post("/v1/payouts", json=body).status_code == 200  # the same again
    assert api.post("/v1/payouts", json={**body, "currency": "USD"}).status_code == 409
    made = api.post("/v1/payouts", json={"sharer_id": "ana", "currency": "USD"}).json()
    assert made["payout_id"].startswith("pay-")  # no id given: the server's
    bad = api.post("/v1/payouts", json={"sharer_id": "ana", "currency": "usd"})
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    assert "body.currency" in json.dumps(bad.json())
    batch = api.post(
        "/v1/events",
        json={
            "events": [{"type": "payout", "payout_id": "p2", "sharer_id": "cy", "currency": "KWD"}]
        },
    )
    assert batch.status_code == 202 and batch.json()["results"][0]["payout_id"] == "p2"
    assert (
        api.post("/v1/payouts", json=body, headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )


def test_lifecycle_live_earnings_and_statement(api, redis_client, keys, flows_factory):
    flows_factory(RuleSettings(holding_period_ms=HOLD), lag_ms=100)
    api.put("/v1/commission-rules/r", json={"kind": "percent", "bps": 1000})
    share = api.post(
        "/v1/shares",
        json={"item_id": "i", "sharer_id": "ana", "activity_url": "https://shop.example/p"},
    ).json()
    scan = api.get(f"/s/{share['token']}", headers={"X-User-Id": "bob"})
    assert scan.status_code == 302
    ordered = api.post(
        "/v1/orders",
        json={
            "order_id": "o1",
            "buyer_id": "bob",
            "currency": "JPY",
            "lines": [{"item_id": "i", "quantity": 3, "unit_price_minor": 1000}],
        },
    ).json()
    # Pending: nothing to pay yet.
    api.post("/v1/payouts", json={"sharer_id": "ana", "currency": "JPY", "payout_id": "early"})
    wait_for(lambda: "nothing_to_pay" in _rejects(redis_client, keys), timeout=30)
    early = api.get("/v1/sharers/ana/earnings", headers=READ).json()["currencies"]["JPY"]
    assert (early["pending"], early["payable"], early["paid"]) == (300, 0, 0)

    # After the holding period (the watermark passes it), the approval, then a payout.
    wait_for(
        lambda: (
            api.get("/v1/sharers/ana/earnings", headers=READ).json()["currencies"]["JPY"]["payable"]
            == 300
        ),
        timeout=30,
    )
    api.post("/v1/payouts", json={"sharer_id": "ana", "currency": "JPY", "payout_id": "p1"})
    wait_for(lambda: _payouts(redis_client, keys), timeout=30)
    (paid,) = _payouts(redis_client, keys)
    assert (paid["payout_id"], paid["amount_minor"], paid["output_id"]) == (
        "p1",
        300,
        f"payout:p1:{paid['ts']}",
    )
    # A clawback after payment: payable goes negative.
    api.post(
        "/v1/refunds",
        json={"refund_id": "f1", "order_id": "o1", "lines": [{"item_id": "i", "quantity": 1}]},
    )
    wait_for(
        lambda: (
            api.get("/v1/sharers/ana/earnings", headers=READ).json()["currencies"]["JPY"]["payable"]
            == -100
        ),
        timeout=30,
    )
    now = api.get("/v1/sharers/ana/earnings", headers=READ).json()["currencies"]["JPY"]
    assert (now["pending"], now["payable"], now["paid"]) == (0, -100, 300)
    assert (now["accruals"], now["approvals"], now["reversals"], now["payouts"]) == (1, 1, 1, 1)

    t0 = ordered["ts"]
    whole = api.get(
        "/v1/sharers/ana/statement", params={"from": t0, "to": paid["ts"] + 10**6}, headers=READ
    )
    assert whole.status_code == 200
    body = whole.json()
    assert [(e["type"], e.get("kind"), e.get("status")) for e in body["entries"]] == [
        ("commission", "accrual", "pending"),
        ("commission", "approval", "approved"),
        ("payout", None, None),
        ("commission", "reversal", "approved"),
    ]
    assert body["currencies"]["JPY"] == {
        "opening": {"pending": 0, "payable": 0, "paid": 0},
        "closing": {"pending": 0, "payable": -100, "paid": 300},
    }
    # A window that starts after the accrual and ends before the payout.
    part = api.get(
        "/v1/sharers/ana/statement", headers=READ, params={"from": t0 + 1, "to": paid["ts"]}
    ).json()
    assert [e.get("kind") for e in part["entries"]] == ["approval"]
    assert part["currencies"]["JPY"] == {
        "opening": {"pending": 300, "payable": 0, "paid": 0},
        "closing": {"pending": 0, "payable": 300, "paid": 0},
    }

    as_csv = api.get(
        "/v1/sharers/ana/statement",
        params={"from": t0, "to": paid["ts"] + 10**6},
        headers={**READ, "Accept": "text/csv"},
    )
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [(r["kind"], r["amount_minor"], r["amount"]) for r in rows] == [
        ("accrual", "300", "300"),
        ("approval", "300", "300"),
        ("", "300", "300"),
        ("reversal", "-100", "-100"),
    ]  # JPY has no decimals


def test_statement_arguments_are_checked(api):
    assert (
        api.get("/v1/sharers/ana/statement", params={"from": 10, "to": 5}, headers=READ).status_code
        == 422
    )
    old = api.get("/v1/sharers/ana/statement", params={"from": 0, "to": 5}, headers=READ)
    assert old.status_code == 422 and "query.from" in json.dumps(old.json())
    assert (
        api.get(
            "/v1/sharers/ana/statement", params={"from": "x", "to": 5}, headers=READ
        ).status_code
        == 422
    )
    assert (
        api.get(
            "/v1/sharers/ana/statement",
            params={"from": 1, "to": 5},
            headers={"Authorization": "Bearer nope"},
        ).status_code
        == 401
    )


def test_amounts_use_the_currency_exponent():
    assert [
        format_minor(a, c)
        for a, c in [
            (12345, "USD"),
            (12345, "JPY"),
            (12345, "KWD"),
            (-5, "KWD"),
            (7, "EUR"),
            (-100, "JPY"),
        ]
    ] == ["123.45", "12345", "12.345", "-0.005", "0.07", "-100"]
