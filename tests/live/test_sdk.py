"""The heartbeat SDK against a running API, the live flows and injected network faults."""

from __future__ import annotations

import json
import time

import pytest

from harness.live import flows_env, kill, start_flows, wait_for
from harness.server import running_api
from sdk import ApiError, BillingClient
from sdk.faults import FlakyTransport
from state.testing import SMALL_RULES
from tests.conftest import READ_KEY, WRITE_KEY


@pytest.fixture
def stack(settings, redis_url, prefix, tmp_path):
    fast = settings.model_copy(update={"report_interval_ms": 200})
    flows = start_flows(flows_env(redis_url, prefix, tmp_path / "rec", SMALL_RULES, lag_ms=200))
    try:
        with running_api(fast) as base:
            yield base
    finally:
        kill(flows)


def usage_of(redis_client, keys, session_id):
    raw = redis_client.hget(keys.session_view(session_id), "data")
    return json.loads(raw) if raw else None


@pytest.mark.parametrize("failure_rate", [0.0, 0.3])
def test_session_bills_the_time_it_ran_within_one_interval(stack, redis_client, keys, failure_rate):
    transport = FlakyTransport(failure_rate, seed=7)
    client = BillingClient(stack, WRITE_KEY, transport=transport, timeout=2)
    BillingClient(stack, WRITE_KEY).put_tariff("t", currency="USD", unit_ms=100, price_minor=1)
    session = client.start_session("u1", "svc", "t")
    assert session.wait_started(10)
    started = time.monotonic()
    time.sleep(2.0)
    call = time.monotonic()
    session.stop()
    assert time.monotonic() - call < 0.05, "stop() must not wait on the network"
    ran_ms = (time.monotonic() - started) * 1000
    assert session.join(30)
    assert session.error is None and session.dropped == []
    if failure_rate:
        assert transport.failures > 0

    def closed():
        usage = usage_of(redis_client, keys, session.session_id)
        return usage is not None and usage["status"] == "closed"

    wait_for(closed, timeout=30)
    usage = usage_of(redis_client, keys, session.session_id)
    assert usage["closed_reason"] == "end"
    assert abs(usage["billed_ms"] - ran_ms) <= session.interval_ms, (usage, ran_ms)
    assert usage["fee_minor"] == -(-usage["billed_ms"] // 100)


def test_start_never_blocks_even_when_the_server_is_down(settings):
    client = BillingClient("http://127.0.0.1:9", WRITE_KEY, timeout=0.2)
    began = time.monotonic()
    session = client.start_session("u", "v", "t", give_up_after_s=0.5)
    session.stop()
    assert time.monotonic() - began < 0.1
    assert session.join(5)
    assert session.error is not None


def test_client_helpers(stack, redis_client, keys):
    client = BillingClient(stack, WRITE_KEY)
    share = client.create_share("i", "alice", "https://shop.example/p")
    assert client.scan_link(share["token"]) == share["scan_url"]
    scan = client.in_app_scan(share["token"], "bob")
    assert scan["redirect_url"].endswith(scan["scan_id"])
    client.post_order(
        "o1",
        "bob",
        "USD",
        [{"item_id": "i", "quantity": 1, "unit_price_minor": 100}],
        scan_id=scan["scan_id"],
    )
    client.post_refund("f1", "o1")
    with pytest.raises(ApiError) as err:
        client.post_order(
            "o1", "eve", "USD", [{"item_id": "i", "quantity": 1, "unit_price_minor": 100}]
        )
    assert err.value.status == 409


def test_payout_and_statement(stack, redis_client, keys):
    client = BillingClient(stack, WRITE_KEY, read_key=READ_KEY)
    client.put_commission_rule("r", kind="percent", bps=1000)
    share = client.create_share("i", "ana", "https://shop.example/p")
    scan = client.in_app_scan(share["token"], "bob")
    order = client.post_order(
        "o1",
        "bob",
        "KWD",
        [{"item_id": "i", "quantity": 1, "unit_price_minor": 12345}],
        scan_id=scan["scan_id"],
    )
    asked = client.payout("ana", "KWD")  # still pending (SMALL_RULES hold 30 s)
    assert asked["payout_id"].startswith("pay-")
    assert client.payout("ana", "KWD", payout_id=asked["payout_id"])["ts"] == asked["ts"]

    def statement():
        return client.statement("ana", order["ts"], order["ts"] + 10**6)

    wait_for(lambda: statement()["entries"], timeout=30)
    body = statement()
    assert [(e["kind"], e["commission_minor"]) for e in body["entries"]] == [("accrual", 1235)]
    assert body["currencies"]["KWD"]["closing"] == {"pending": 1235, "payable": 0, "paid": 0}
    text = client.statement("ana", order["ts"], order["ts"] + 10**6, as_csv=True)
    assert "1235,1.235," in text  # KWD has 3 decimals
    with pytest.raises(ValueError):
        BillingClient(stack, WRITE_KEY).statement("ana", 0, 1)
