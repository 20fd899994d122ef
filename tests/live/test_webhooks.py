"""Issue 9: webhook delivery, against real Redis, a real receiver on 127.0.0.1 and
real `billing webhooks` dispatcher processes (BILLING_WEBHOOK_ALLOW_PRIVATE=true).
The endpoint API and the signatures: test_webhook_endpoints."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from svix.webhooks import Webhook as SvixWebhook

from billing.keys import WEBHOOK_GROUP
from flows.redis_sink import _RedisWriter
from harness.live import dispatcher_env, kill, start_dispatcher, url_of, wait_for
from tests.support.webhooks import Receiver, body_of, output, subscribe, verify_by_hand


@pytest.fixture
def write(redis_client, keys):
    writer = _RedisWriter(url_of(redis_client), keys)
    yield lambda outs: writer.write(outs)
    writer.close()


def failed_delivery(api, endpoint: dict) -> dict:
    """Wait for the endpoint's one delivery to be `failed`, and return it."""
    base = f"/v1/webhook-endpoints/{endpoint['id']}/deliveries?status=failed"
    wait_for(lambda: api.get(base).json()["deliveries"], timeout=30)
    (failed,) = api.get(base).json()["deliveries"]
    return failed


# --- delivery --------------------------------------------------------------------------
def statuses(api, endpoint_id: str) -> set[str]:
    listed = api.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries?limit=500").json()
    return {d["status"] for d in listed["deliveries"]}


def test_every_subscribed_output_arrives_signed_and_no_other(private_api, write, redis_url, prefix):
    with Receiver() as money, Receiver() as metering:
        a = subscribe(private_api, money.url, ["commission", "payout"])
        b = subscribe(private_api, metering.url, ["usage"])
        outs = [
            output(k, n) for n in range(15) for k in ("commission", "usage", "payout", "reject")
        ]
        write(outs)
        proc = start_dispatcher(dispatcher_env(redis_url, prefix))
        try:
            want_a = {o["output_id"] for o in outs if o["type"] in ("commission", "payout")}
            want_b = {o["output_id"] for o in outs if o["type"] == "usage"}
            wait_for(
                lambda: set(money.delivered()) == want_a and set(metering.delivered()) == want_b,
                timeout=30,
            )
            # The dispatcher records "succeeded" after the receiver has answered, so a
            # kill right after the last receipt may leave that delivery pending (it
            # would be retried): wait for the records too before stopping it.
            wait_for(lambda: statuses(private_api, a["id"]) == {"succeeded"}, timeout=30)
        finally:
            kill(proc)
        for receiver, endpoint in ((money, a), (metering, b)):
            for ident, request in receiver.delivered().items():
                assert body_of(request)["output_id"] == ident  # webhook-id = output_id
                assert verify_by_hand(endpoint["secret"], request["headers"], request["body"])
                SvixWebhook(endpoint["secret"]).verify(request["body"], request["headers"])
        assert {r["id"] for r in money.requests} == want_a  # nothing unsubscribed
        listed = private_api.get(f"/v1/webhook-endpoints/{a['id']}/deliveries?limit=500").json()
        assert {d["output_id"] for d in listed["deliveries"]} == want_a
        assert {d["status"] for d in listed["deliveries"]} == {"succeeded"}
        attempt = listed["deliveries"][0]["attempt_log"][0]
        assert attempt["status_code"] == 200 and attempt["latency_ms"] >= 0


def test_a_failing_receiver_gets_it_after_the_back_off(private_api, write, redis_url, prefix):
    with Receiver(fail_first=2) as receiver:
        endpoint = subscribe(private_api, receiver.url, ["payout"])
        proc = start_dispatcher(dispatcher_env(redis_url, prefix))
        try:
            write([output("payout", 1)])
            wait_for(lambda: "payout:p1:5" in receiver.delivered(), timeout=30)
            wait_for(lambda: statuses(private_api, endpoint["id"]) == {"succeeded"}, timeout=30)
        finally:
            kill(proc)
        times = [r["at"] for r in receiver.requests]
        assert [r["answered"] for r in receiver.requests] == [500, 500, 200]
        assert times[1] - times[0] >= 0.29 and times[2] - times[1] >= 0.59  # 300, 600 ms
        (delivery,) = private_api.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries").json()[
            "deliveries"
        ]
        assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 500, 200]
        assert delivery["status"] == "succeeded" and delivery["attempts"] == 3


def test_a_spent_schedule_fails_and_can_be_retried_by_hand(private_api, write, redis_url, prefix):
    with Receiver() as receiver:
        receiver.failing = True
        endpoint = subscribe(private_api, receiver.url, ["usage"])
        base = f"/v1/webhook-endpoints/{endpoint['id']}/deliveries"
        proc = start_dispatcher(dispatcher_env(redis_url, prefix))
        try:
            write([output("usage", 7)])
            failed = failed_delivery(private_api, endpoint)
            assert failed["attempts"] == 3 and len(receiver.requests) == 3  # 1 + 2 retries
            metrics = private_api.get("/metrics").text
            assert (
                f'billing_webhook_deliveries_total{{endpoint="{endpoint["id"]}",'
                f'outcome="failed"}} 1.0' in metrics
            )
            assert "billing_webhook_latency_ms_bucket" in metrics
            receiver.failing = False
            retried = private_api.post(f"{base}/{failed['id']}/retry")
            assert retried.status_code == 202, retried.text
            wait_for(lambda: "usage:s7:1:1" in receiver.delivered(), timeout=30)
            wait_for(
                lambda: private_api.get(f"{base}?status=succeeded").json()["deliveries"], timeout=10
            )
            again = private_api.post(f"{base}/{failed['id']}/retry")
            assert again.status_code == 409
            missing = private_api.post(f"{base}/dlv_{'0' * 24}/retry")
            assert missing.status_code == 404
        finally:
            kill(proc)


def test_a_private_address_is_refused_at_delivery_time(private_api, write, redis_url, prefix):
    """Saved while private addresses were allowed; the dispatcher does not allow them."""
    with Receiver() as receiver:
        endpoint = subscribe(private_api, receiver.url, ["payout"])
        proc = start_dispatcher(dispatcher_env(redis_url, prefix, webhook_allow_private="false"))
        try:
            write([output("payout", 2)])
            failed = failed_delivery(private_api, endpoint)
        finally:
            kill(proc)
        assert all("non-public" in a["error"] for a in failed["attempt_log"])
        assert receiver.requests == []


def test_a_redirect_is_never_followed(private_api, write, redis_url, prefix):
    """A receiver answering 307 to an internal address (here: another local server
    standing in for 169.254.169.254) gets a failed attempt; the target gets nothing."""
    with Receiver() as internal, Receiver(redirect_to="") as bouncer:
        bouncer.redirect_to = internal.url
        endpoint = subscribe(private_api, bouncer.url, ["payout"])
        proc = start_dispatcher(dispatcher_env(redis_url, prefix))
        try:
            write([output("payout", 3)])
            failed = failed_delivery(private_api, endpoint)
        finally:
            kill(proc)
        assert [a["status_code"] for a in failed["attempt_log"]] == [307, 307, 307]
        assert internal.requests == [] and len(bouncer.requests) == 3


def test_a_killed_dispatcher_loses_nothing(private_api, write, redis_url, prefix):
    """Two replicas share the work; one is SIGKILLed with deliveries in flight; the
    other takes its deliveries over once their lease runs out."""
    with Receiver(delay_s=0.2) as receiver, Receiver() as other:
        subscribe(private_api, receiver.url, ["commission"])
        subscribe(private_api, other.url, ["usage"])
        env = dispatcher_env(redis_url, prefix)
        first, second = start_dispatcher(env), start_dispatcher(env)
        try:
            outs = [output("commission", n) for n in range(40)]
            outs += [output("usage", n) for n in range(40)]
            write(outs)
            wait_for(lambda: len(receiver.requests) >= 5, timeout=30)
            kill(first, signal.SIGKILL)
            wanted = {o["output_id"] for o in outs if o["type"] == "commission"}
            wait_for(lambda: set(receiver.delivered()) == wanted, timeout=60)
            wait_for(lambda: len(other.delivered()) == 40, timeout=30)
        finally:
            kill(first)
            kill(second)
        assert {r["id"] for r in receiver.requests} == wanted
        assert {body_of(r)["type"] for r in other.requests} == {"usage"}


def test_dispatchers_stopped_past_the_streams_ttl_lose_nothing(
    private_api, redis_client, redis_url, prefix, keys
):
    """The sink trims an output stream by its ttl (R and a margin) but never past what
    the dispatchers' group has not taken: with every dispatcher down for longer than
    the ttl while outputs go on being written, each output still arrives once they
    come back. (Before, whole radix-tree nodes of those outputs went unseen.)"""
    writer = _RedisWriter(url_of(redis_client), keys, ttl_ms=300)
    with Receiver() as receiver:
        subscribe(private_api, receiver.url, ["commission"])
        env = dispatcher_env(redis_url, prefix)
        proc = start_dispatcher(env)  # makes its group, and stops
        try:
            wait_for(lambda: redis_client.exists(keys.commissions), timeout=30)
        finally:
            kill(proc, signal.SIGTERM)
        outs = [output("commission", n) for n in range(250)]
        writer.write(outs[:200])
        time.sleep(0.5)  # every one of them older than the ttl
        writer.write(outs[200:])  # a write that trims
        proc = start_dispatcher(env)
        try:
            wanted = {o["output_id"] for o in outs}
            wait_for(lambda: set(receiver.delivered()) == wanted, timeout=60)
        finally:
            kill(proc)
            writer.close()
    time.sleep(0.5)
    writer = _RedisWriter(url_of(redis_client), keys, ttl_ms=300)
    writer.write([output("commission", 250)])  # taken and older than the ttl: trimmed now
    writer.close()
    assert redis_client.xlen(keys.commissions) < 150


def test_retiring_webhooks_lets_the_streams_be_trimmed_again(
    private_api, redis_client, redis_url, prefix, keys
):
    """`billing webhooks --retire` deletes the dispatchers' group on every output
    stream, so that a stream no dispatcher will read is trimmed by time again; it is
    refused while an endpoint exists, whose outputs would then never be delivered. A
    dispatcher left running stops on its own, and one started again refuses to run
    (exit 2) until an endpoint exists, so neither makes the groups again."""
    env = dispatcher_env(redis_url, prefix)
    with Receiver() as receiver:
        endpoint = subscribe(private_api, receiver.url, ["commission"])
        proc = start_dispatcher(env)  # makes its groups
        try:
            wait_for(lambda: redis_client.exists(*keys.output_streams) == 4, timeout=30)
        finally:
            kill(proc, signal.SIGTERM)
    command = [sys.executable, "-m", "programs.cli", "webhooks", "--retire"]
    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert endpoint["id"] in refused.stderr and "delete them first" in refused.stderr
    assert all(redis_client.xinfo_groups(s) for s in keys.output_streams)  # untouched
    assert private_api.delete(f"/v1/webhook-endpoints/{endpoint['id']}").status_code == 204
    running = start_dispatcher(env)  # left running through the retiring
    try:
        time.sleep(1.0)
        retired = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert retired.returncode == 0, retired.stderr
        assert "on 4 output stream(s)" in retired.stderr
        assert running.wait(30) == 0  # it stopped on its own, making no group again
    finally:
        kill(running)
    assert not any(redis_client.xinfo_groups(s) for s in keys.output_streams)
    # One started again (a supervisor's restart) refuses while no endpoint exists.
    again = [sys.executable, "-m", "programs.cli", "webhooks"]
    refused = subprocess.run(again, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "retired" in refused.stderr, refused.stderr
    assert not any(redis_client.xinfo_groups(s) for s in keys.output_streams)
    writer = _RedisWriter(url_of(redis_client), keys, ttl_ms=300)
    writer.write([output("commission", n) for n in range(200)])
    time.sleep(0.5)
    writer.write([output("commission", 200)])
    writer.close()
    assert redis_client.xlen(keys.commissions) < 150  # trimmed by time: no group holds it
    # With an endpoint again, a dispatcher runs, makes its groups and clears the mark.
    with Receiver() as receiver:
        subscribe(private_api, receiver.url, ["commission"])
        proc = start_dispatcher(env)
        try:
            wait_for(lambda: all(redis_client.xinfo_groups(s) for s in keys.output_streams), 30)
            assert not redis_client.exists(keys.webhooks_retired)
        finally:
            kill(proc, signal.SIGTERM)


def test_a_group_deleted_by_hand_is_made_again(private_api, redis_client, redis_url, prefix, keys):
    """Not retired (`--retire` not run): a running dispatcher that finds its group gone
    makes it again and goes on delivering."""
    env = dispatcher_env(redis_url, prefix)
    with Receiver() as receiver:
        subscribe(private_api, receiver.url, ["commission"])
        proc = start_dispatcher(env)
        try:
            wait_for(lambda: redis_client.exists(*keys.output_streams) == 4, timeout=30)
            for stream in keys.output_streams:
                redis_client.xgroup_destroy(stream, WEBHOOK_GROUP)
            wait_for(lambda: all(redis_client.xinfo_groups(s) for s in keys.output_streams), 30)
            writer = _RedisWriter(url_of(redis_client), keys)
            writer.write([output("commission", 1)])
            writer.close()
            wait_for(lambda: len(receiver.delivered()) == 1, 30)
            assert proc.poll() is None
        finally:
            kill(proc, signal.SIGTERM)


def test_deliveries_go_on_across_a_redis_restart(tmp_path):
    from billing.keys import Keys
    from billing.redis_runtime import EmbeddedRedis, client
    from billing.settings import Settings
    from ingest_api.app import create_app
    from tests.conftest import SHARE_KEYS, WRITE_KEY

    server = EmbeddedRedis(persist=True)
    keys = Keys("hooks:")
    try:
        from fastapi.testclient import TestClient

        settings = Settings(
            redis_url=server.url,
            key_prefix=keys.prefix,
            api_keys=WRITE_KEY,
            share_keys=SHARE_KEYS,
            webhook_allow_private=True,
            _env_file=None,
        )
        with Receiver(delay_s=0.05) as receiver, TestClient(create_app(settings)) as api:
            api.headers["Authorization"] = f"Bearer {WRITE_KEY}"
            subscribe(api, receiver.url, ["reject"])
            proc = start_dispatcher(dispatcher_env(server.url, keys.prefix))
            try:
                writer = _RedisWriter(server.url, keys)
                writer.write([output("reject", n) for n in range(30)])
                wait_for(lambda: len(receiver.delivered()) >= 3, timeout=30)
                server.restart(down_s=2)
                writer = _RedisWriter(server.url, keys)
                writer.write([output("reject", n) for n in range(30, 60)])
                wait_for(lambda: len(receiver.delivered()) == 60, timeout=60)
                assert proc.poll() is None
            finally:
                kill(proc)
        conn = client(server.url)
        assert conn.xlen(keys.rejects) == 60
    finally:
        server.stop()


def test_metrics_report_the_oldest_undelivered_output(private_api, write, redis_url, prefix):
    with Receiver() as receiver:
        receiver.failing = True
        subscribe(private_api, receiver.url, ["reject"])
        proc = start_dispatcher(
            dispatcher_env(redis_url, prefix, webhook_retry_schedule_ms="60000")
        )
        try:
            write([output("reject", 1)])
            wait_for(lambda: len(receiver.requests) == 1, timeout=30)
            time.sleep(1.0)

            def age() -> float:
                for line in private_api.get("/metrics").text.splitlines():
                    if line.startswith("billing_webhook_oldest_undelivered_age_ms "):
                        return float(line.split()[1])
                raise AssertionError("no age metric")

            assert age() >= 1000
        finally:
            kill(proc)
