"""Issue 10, item 5 (in part): keys stay out of logs, activity URLs stay on allowed
hosts, and shares sealed with a retired key are sealed again."""

from __future__ import annotations

import logging

from fastapi.testclient import TestClient

from billing.settings import Settings
from ingest_api.app import create_app
from ingest_api.log_redaction import RedactKeys
from ingest_api.tokens import ShareTokens
from tests.conftest import READ_KEY, WRITE_KEY

SHARE = {"item_id": "i", "sharer_id": "al", "activity_url": "https://shop.example/p"}


def test_keys_in_the_query_are_redacted_from_the_access_log():
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "",
        0,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", f"/v1/stream?type=usage&key={READ_KEY}&x=1", "1.1", 200),
        None,
    )
    assert RedactKeys().filter(record)
    line = record.getMessage()
    assert READ_KEY not in line and "key=[redacted]&x=1" in line


def test_the_app_installs_the_redaction(settings: Settings):
    create_app(settings)
    assert any(isinstance(f, RedactKeys) for f in logging.getLogger("uvicorn.access").filters)


def test_activity_urls_must_be_on_an_allowed_host(settings: Settings):
    app = create_app(settings.model_copy(update={"activity_hosts": "shop.example,Other.example"}))
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {WRITE_KEY}"
        assert client.post("/v1/shares", json=SHARE).status_code == 202
        assert (
            client.post(
                "/v1/shares", json={**SHARE, "activity_url": "https://other.example/x"}
            ).status_code
            == 202
        )
        bad = client.post("/v1/shares", json={**SHARE, "activity_url": "https://evil.example/"})
        assert bad.status_code == 422
        assert bad.json()["errors"][0]["field"] == "body.activity_url"


def test_a_share_sealed_with_a_retired_key_is_sealed_again(settings: Settings):
    old = settings.model_copy(update={"share_keys": "k1:first-secret-for-tests"})
    new = settings.model_copy(update={"share_keys": "k3:third-secret,k2:second-secret"})
    body = {**SHARE, "share_id": "shr-1"}
    with TestClient(create_app(old)) as client:
        client.headers["Authorization"] = f"Bearer {WRITE_KEY}"
        first = client.post("/v1/shares", json=body).json()
    assert first["token"].startswith("k1.")
    with TestClient(create_app(new), follow_redirects=False) as client:
        client.headers["Authorization"] = f"Bearer {WRITE_KEY}"
        assert client.get(f"/s/{first['token']}").status_code == 404  # k1 is retired
        again = client.post("/v1/shares", json=body)
        assert again.status_code == 200  # a repeat, with a token that works again
        token = again.json()["token"]
        assert token.startswith("k3.")
        payload = ShareTokens(new.share_key_pairs).open(token)
        assert (payload.share_id, payload.activity_url) == ("shr-1", SHARE["activity_url"])
        assert client.get(f"/s/{token}").status_code == 302
        # And the QR code, fetched later, carries the new token too.
        png = client.get("/v1/shares/shr-1/qr.png", headers={"Authorization": f"Bearer {READ_KEY}"})
        assert png.status_code == 200
        assert client.post("/v1/shares", json=body).json()["token"] == token
