"""Issue 8: each share's funnel (scans, then orders, then commission), against real Redis.

Scans are counted by the ingest API in the script that logs them (so exactly the
logged ones); orders and commission by the sink under each output's applied mark
(so a replayed output counts once). The end-to-end path, with real flows and a
browser, is in test_dashboard.py.
"""

from __future__ import annotations

from billing import share_view
from flows.redis_sink import _RedisWriter
from harness.live import url_of
from tests.conftest import READ_KEY

SHARE = {"item_id": "lamp", "sharer_id": "ana", "activity_url": "https://shop.example/lamp"}


def _read(api):
    return {"Authorization": f"Bearer {READ_KEY}"}


def test_each_logged_scan_counts_once_and_the_newest_shares_come_first(api, redis_client, keys):
    first = api.post("/v1/shares", json={**SHARE, "share_id": "sh-1"}).json()
    second = api.post("/v1/shares", json={**SHARE, "share_id": "sh-2"}).json()
    for _ in range(3):
        assert api.get(f"/s/{first['token']}").status_code == 302
    assert api.head(f"/s/{first['token']}").status_code == 302  # HEAD logs no scan
    assert (
        api.post("/v1/scans", json={"token": second["token"], "scanner_id": "zoe"}).status_code
        == 202
    )
    funnel = api.get("/v1/shares/sh-1/funnel", headers=_read(api)).json()
    assert funnel == {
        "share_id": "sh-1",
        "item_id": "lamp",
        "sharer_id": "ana",
        "scans": 3,
        "orders": 0,
        "currencies": {},
    }
    listed = api.get("/v1/funnels", headers=_read(api)).json()["funnels"]
    assert [(f["share_id"], f["scans"]) for f in listed] == [("sh-2", 1), ("sh-1", 3)]
    assert (
        api.get("/v1/funnels?limit=1", headers=_read(api)).json()["funnels"][0]["share_id"]
        == "sh-2"
    )
    assert redis_client.pttl(keys.share_view("sh-1")) > 0  # forgotten once idle past R


def test_unknown_share_and_bad_limit_are_problems(api):
    missing = api.get("/v1/shares/nope/funnel", headers=_read(api))
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert api.get("/v1/funnels?limit=0", headers=_read(api)).status_code == 422
    assert api.get("/v1/funnels", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_the_active_index_is_capped(api, redis_client, keys, monkeypatch):
    monkeypatch.setattr(share_view, "ACTIVE_CAP", 2)
    for n in range(4):
        token = api.post("/v1/shares", json={**SHARE, "share_id": f"s{n}"}).json()["token"]
        api.get(f"/s/{token}")
    assert redis_client.zrevrange(keys.active_shares, 0, -1) == ["s3", "s2"]


def _commission(kind: str, amount: int, refund: str | None = None) -> dict:
    order = "o1"
    ident = f"commission:{kind}:{refund or order}:5:lamp"
    return {
        "type": "commission",
        "output_id": ident,
        "kind": kind,
        "status": "pending",
        "order_id": order,
        "item_id": "lamp",
        "sharer_id": "ana",
        "share_id": "sh-9",
        "currency": "JPY",
        "commission_minor": amount,
        "ts": 5,
        "refund_id": refund,
    }


def test_orders_and_commission_count_once_each_even_when_replayed(redis_client, keys):
    writer = _RedisWriter(url_of(redis_client), keys, ttl_ms=60_000)
    batch = [
        _commission("accrual", 123),
        _commission("approval", 123),
        _commission("reversal", -23, refund="f1"),
    ]
    writer.write(batch)
    writer.write(batch)  # at-least-once: the same outputs again after a crash
    fields = redis_client.hgetall(keys.share_view("sh-9"))
    assert share_view.funnel("sh-9", fields) == {
        "share_id": "sh-9",
        "item_id": None,
        "sharer_id": None,
        "scans": 0,
        "orders": 1,
        "currencies": {"JPY": {"accrued": 123, "reversed": -23, "net": 100}},
    }
    assert 0 < redis_client.pttl(keys.share_view("sh-9")) <= 60_000
    writer.close()
