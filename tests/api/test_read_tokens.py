"""Issue 10, item 5: sharer-scoped, signed, expiring read tokens, and short-lived
dashboard tokens, minted with the write key, against real Redis and a running API."""

from __future__ import annotations

import time

import pytest

from billing.settings import Settings
from harness.server import running_api
from ingest_api.app import create_app
from ingest_api.read_tokens import InvalidReadToken, ReadTokens
from tests.api.test_read_side import commission, read_sse, usage
from tests.conftest import READ_KEY, SHARE_KEYS


def mint(api, **body) -> str:
    resp = api.post("/v1/read-tokens", json=body)
    assert resp.status_code == 201, resp.text
    assert resp.json()["expires_at"] > time.time() * 1000
    return resp.json()["token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_sharer_token_reads_only_its_sharer(api, writer):
    now = int(time.time() * 1000)
    writer(
        [
            commission("accrual", "o1", 100, sharer="ana", ts=now),
            commission("accrual", "o2", 7, sharer="bob", ts=now),
            usage("s1", 1),
        ]
    )
    token = mint(api, sharer_id="ana", ttl_ms=60_000)
    own = api.get("/v1/sharers/ana/earnings", headers=bearer(token))
    assert own.status_code == 200 and own.json()["currencies"]["USD"]["pending"] == 100
    span = f"from={now - 1000}&to={now + 1000}"
    statement = api.get(f"/v1/sharers/ana/statement?{span}", headers=bearer(token))
    assert statement.status_code == 200 and len(statement.json()["entries"]) == 1
    for path in (
        "/v1/sharers/bob/earnings",
        f"/v1/sharers/bob/statement?{span}",
        "/v1/sessions/s1",
        "/v1/orders/o1/commissions",
        "/v1/funnels",
        "/v1/shares/x/funnel",
        "/dashboard",
        "/metrics",
        "/v1/stream?sharer_id=bob",
    ):
        resp = api.get(path, headers=bearer(token))
        assert resp.status_code == 403, path
        assert resp.headers["content-type"] == "application/problem+json"


def test_a_sharer_token_streams_only_its_outputs(settings, api, writer):
    writer(
        [
            commission("accrual", "o1", 5, sharer="bob"),
            usage("s1", 1),
            commission("accrual", "o2", 6, sharer="ana"),
            commission("accrual", "o3", 7, sharer="ana"),
        ]
    )
    token = mint(api, sharer_id="ana")
    with running_api(settings) as base:
        events = read_sse(base, 2, headers=bearer(token))  # no filter asked: ana's anyway
        assert [e[2]["order_id"] for e in events] == ["o2", "o3"]
        # `?key=` as EventSource sends it: the same scope.
        events = read_sse(base, 1, headers={"Authorization": ""}, params={"key": token})
        assert events[0][2]["sharer_id"] == "ana"


def test_an_unscoped_token_reads_like_a_read_key_until_it_expires(api, writer):
    writer([usage("s1", 1)])
    token = mint(api, ttl_ms=1_000)
    assert api.get("/v1/sessions/s1", headers=bearer(token)).status_code == 200
    assert api.get(f"/dashboard?key={token}", headers={"Authorization": ""}).status_code == 200
    time.sleep(1.1)
    expired = api.get("/v1/sessions/s1", headers=bearer(token))
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [{"ttl_ms": 999}, {"ttl_ms": 91 * 86_400_000}, {"sharer_id": "bad id"}, {"scope": "all"}],
)
def test_minting_validates_its_body(api, body):
    resp = api.post("/v1/read-tokens", json=body)
    assert resp.status_code == 422
    assert resp.headers["content-type"] == "application/problem+json"


def test_minting_needs_the_write_key(api):
    assert api.post("/v1/read-tokens", json={}, headers=bearer(READ_KEY)).status_code == 401


def test_forged_altered_and_retired_tokens_are_refused(settings: Settings, api):
    token = mint(api, sharer_id="ana")
    signed, _, mac = token.rpartition(".")
    kid, payload = signed.split(".")[1:]
    other = ReadTokens([("k2", "another secret")]).mint("ana", 2**62)
    altered = ReadTokens([(kid, "x")]).mint(None, 2**62)  # the right kid, a wrong key
    for bad in (
        f"{signed}.{mac[:-2]}AA",
        f"rt.{kid}.{payload}x.{mac}",
        other,
        altered,
        "rt.",
        "rt.k2..",
        token + ".",
    ):
        assert api.get("/v1/sharers/ana/earnings", headers=bearer(bad)).status_code == 401, bad
    # Keys rotate with the share keys: a token of a key still configured verifies;
    # once its key is retired, it no longer does.
    rotated = settings.model_copy(update={"share_keys": "k3:newest-secret," + SHARE_KEYS})
    from fastapi.testclient import TestClient

    with TestClient(create_app(rotated)) as newer:
        assert newer.get("/v1/sharers/ana/earnings", headers=bearer(token)).status_code == 404
    retired = settings.model_copy(update={"share_keys": "k3:newest-secret"})
    with TestClient(create_app(retired)) as newest:
        assert newest.get("/v1/sharers/ana/earnings", headers=bearer(token)).status_code == 401


def test_verify_is_strict():
    tokens = ReadTokens([("k1", "s")])
    good = tokens.mint("ana", 10_000)
    assert tokens.verify(good, 9_999).sharer_id == "ana"
    with pytest.raises(InvalidReadToken):
        tokens.verify(good, 10_000)
    with pytest.raises(InvalidReadToken):
        tokens.verify(good.replace("rt.", "rt.x", 1), 0)
