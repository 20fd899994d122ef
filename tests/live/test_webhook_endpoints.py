"""Webhooks: the endpoint API (saved, shown once, refused when private or
malformed, write key only), the address check at save and at delivery, and the
signatures as independent Standard Webhooks verifiers check them."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from svix.webhooks import Webhook as SvixWebhook

from tests.conftest import READ_KEY
from tests.support.webhooks import output, subscribe, verify_by_hand
from webhooks.addresses import RefusedAddress, check_url


# --- the endpoint API ------------------------------------------------------------------
def test_endpoints_are_saved_shown_once_and_deleted(private_api):
    created = subscribe(private_api, "http://127.0.0.1:9/hook", ["payout", "commission"])
    assert (
        created["secret"].startswith("whsec_")
        and len(base64.b64decode(created["secret"][6:])) == 24
    )
    assert created["types"] == ["commission", "payout"]
    shown = private_api.get(f"/v1/webhook-endpoints/{created['id']}").json()
    assert "secret" not in shown and shown["url"] == "http://127.0.0.1:9/hook"
    listed = private_api.get("/v1/webhook-endpoints").json()["endpoints"]
    assert [e["id"] for e in listed] == [created["id"]] and "secret" not in listed[0]
    assert private_api.delete(f"/v1/webhook-endpoints/{created['id']}").status_code == 204
    gone = private_api.get(f"/v1/webhook-endpoints/{created['id']}")
    assert gone.status_code == 404 and gone.headers["content-type"] == "application/problem+json"
    assert private_api.delete(f"/v1/webhook-endpoints/{created['id']}").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://example.com/x", "types": ["usage"]}, "body.url"),
        ({"url": "http://127.0.0.1/x", "types": ["usage"]}, "body.url"),
        ({"url": "http://localhost:8000/x", "types": ["usage"]}, "body.url"),
        ({"url": "http://10.1.2.3/x", "types": ["usage"]}, "body.url"),
        ({"url": "http://169.254.169.254/latest", "types": ["usage"]}, "body.url"),
        ({"url": "http://[::1]/x", "types": ["usage"]}, "body.url"),
        ({"url": "http://[::ffff:192.168.0.1]/x", "types": ["usage"]}, "body.url"),
        ({"url": "http://user:pw@example.com/x", "types": ["usage"]}, "body.url"),
        ({"url": "http://[zz::1]/x", "types": ["usage"]}, "body.url"),  # once a 500
        ({"url": "http://a\x00b/x", "types": ["usage"]}, "body.url"),
        ({"url": "https://example.com/x", "types": []}, "body.types"),
        ({"url": "https://example.com/x", "types": ["orders"]}, "body.types.0"),
    ],
)
def test_bad_and_private_urls_are_refused(api, body, field):
    resp = api.post("/v1/webhook-endpoints", json=body)
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in resp.json()["errors"]]


def test_endpoints_need_the_write_key(api):
    read = {"Authorization": f"Bearer {READ_KEY}"}
    assert api.get("/v1/webhook-endpoints", headers=read).status_code == 401
    assert (
        api.post(
            "/v1/webhook-endpoints",
            headers=read,
            json={"url": "https://example.com", "types": ["usage"]},
        ).status_code
        == 401
    )


def test_addresses_are_checked_at_save_and_again_at_delivery():
    """DNS rebinding: the name resolves to a public address when saved, and to
    loopback later; the check at delivery time refuses it."""
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])

    def resolver(host: str, port: int) -> list[str]:
        return next(answers)

    saved = check_url("https://hooks.example.com/x", False, resolver)
    assert (saved.address, saved.port, saved.host) == ("93.184.216.34", 443, "hooks.example.com")
    with pytest.raises(RefusedAddress, match="non-public"):
        check_url("https://hooks.example.com/x", False, resolver)
    assert check_url("http://h:81/", True, lambda h, p: ["10.0.0.5"]).address == "10.0.0.5"


# --- signing ---------------------------------------------------------------------------
def test_signatures_verify_with_independent_verifiers_and_fail_when_altered():
    secret = "whsec_" + base64.b64encode(b"k" * 24).decode()
    now = datetime.now(UTC)
    body = json.dumps(output("payout", 1), separators=(",", ":"))
    headers = {
        "webhook-id": "payout:p1:5",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign("payout:p1:5", now, body),
    }
    assert verify_by_hand(secret, headers, body.encode())
    SvixWebhook(secret).verify(body, headers)
    Webhook(secret).verify(body, headers)
    tampered = body.replace('"amount_minor":1', '"amount_minor":100')
    other = "whsec_" + base64.b64encode(b"x" * 24).decode()
    old = now - timedelta(minutes=10)
    stale = {
        **headers,
        "webhook-timestamp": str(int(old.timestamp())),
        "webhook-signature": Webhook(secret).sign("payout:p1:5", old, body),
    }
    for data, h, key in (
        (tampered, headers, secret),
        (body, headers, other),
        (body, stale, secret),
    ):
        assert not verify_by_hand(key, h, data.encode())
        with pytest.raises(WebhookVerificationError):
            SvixWebhook(key).verify(data, h)
