"""Issue 10, item 4: the public scan page cannot be abused.

The scanner header counts only from a trusted proxy; scans are rate-limited per
share and per client address (a Redis-backed limiter, `limits`); over a limit
the visitor is still redirected but no scan is written, and /metrics counts it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from billing.settings import Settings
from ingest_api.app import create_app
from tests.conftest import READ_KEY, WRITE_KEY
from tests.support.streams import logged

SHARE = {"item_id": "i", "sharer_id": "al", "activity_url": "https://shop.example/p"}


def _client(settings: Settings, peer: str, **update: str) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update=update))
    with TestClient(app, follow_redirects=False, client=(peer, 40000)) as client:
        client.headers["Authorization"] = f"Bearer {WRITE_KEY}"
        yield client


@pytest.fixture
def stranger(settings: Settings) -> Iterator[TestClient]:
    yield from _client(settings, "203.0.113.9")


def _scans(redis_client, keys) -> list[dict]:
    return [e for e in logged(redis_client, keys) if e["type"] == "scan"]


def test_the_scanner_header_of_a_stranger_is_ignored(
    stranger: TestClient, api: TestClient, redis_client, keys
):
    token = api.post("/v1/shares", json=SHARE).json()["token"]
    assert stranger.get(f"/s/{token}", headers={"X-User-Id": "victim"}).status_code == 302
    assert api.get(f"/s/{token}", headers={"X-User-Id": "bob"}).status_code == 302
    assert [s["scanner_id"] for s in _scans(redis_client, keys)] == [None, "bob"]


@pytest.mark.parametrize(
    ("limit", "tokens", "refused_by"),
    [("scan_rate_per_share", 1, "per_share"), ("scan_rate_per_client", 3, "per_client")],
)
def test_scans_over_a_limit_redirect_without_a_scan(
    settings: Settings, redis_client, keys, limit: str, tokens: int, refused_by: str
):
    for client in _client(settings, "198.51.100.7", **{limit: "3/minute"}):
        shares = [client.post("/v1/shares", json=SHARE).json()["token"] for _ in range(tokens)]
        answers = [client.get(f"/s/{shares[n % tokens]}") for n in range(5)]
        assert [a.status_code for a in answers] == [302] * 5
        with_scan = ["scan_id=" in a.headers["location"] for a in answers]
        assert with_scan == [True, True, True, False, False]
        assert len(_scans(redis_client, keys)) == 3
        metrics = client.get("/metrics", headers={"Authorization": f"Bearer {READ_KEY}"}).text
        assert f'billing_scans_refused_total{{limit="{refused_by}"}} 2.0' in metrics


def test_a_trusted_proxy_names_the_client_for_the_limit(settings: Settings, redis_client, keys):
    for client in _client(settings, "127.0.0.1", scan_rate_per_client="2/minute"):
        token = client.post("/v1/shares", json=SHARE).json()["token"]
        for visitor in ("192.0.2.1", "192.0.2.2", "192.0.2.1", "192.0.2.1"):
            client.get(f"/s/{token}", headers={"X-Forwarded-For": f"{visitor}, 127.0.0.1"})
        assert len(_scans(redis_client, keys)) == 3  # 192.0.2.1's third is refused
