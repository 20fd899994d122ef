"""A soak of SIGKILLed dispatchers (slow: BILLING_SLOW_TESTS=1).

test_webhooks.py kills one replica at one chosen point. Here each seed draws how
many replicas run, how slow and how flaky the receivers are, outputs written in
four bursts, and after each burst a random wait and then a SIGKILL of a random
replica, which may be started again. In the end every subscribed output must have
reached its receiver with a valid signature and one body, its delivery must read
`succeeded`, and no receiver may get what it did not subscribe to.
`BILLING_WEBHOOK_KILL_SOAK_SEEDS` sets how many seeds (default 5)."""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable

import pytest

from flows.redis_sink import _RedisWriter
from harness.live import dispatcher_env, kill, start_dispatcher, url_of, wait_for
from tests.support.webhooks import Receiver, body_of, output, subscribe, verify_by_hand

pytestmark = pytest.mark.slow

SEEDS = int(os.environ.get("BILLING_WEBHOOK_KILL_SOAK_SEEDS", "5"))
KINDS = ("commission", "usage", "payout", "reject")


def _listed(api, endpoint_id: str) -> list[dict]:
    """Every delivery of the endpoint (a seed writes at most 320 outputs)."""
    return api.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries?limit=500").json()["deliveries"]


def _all_succeeded(api, endpoint_id: str, wanted: set[str]) -> Callable[[], bool]:
    """Records too: "succeeded" is written after the receiver answers."""
    return lambda: (
        {(d["output_id"], d["status"]) for d in _listed(api, endpoint_id)}
        == {(i, "succeeded") for i in wanted}
    )


@pytest.mark.parametrize("seed", range(SEEDS))
def test_killed_dispatchers_lose_nothing_and_send_nothing_unsubscribed(
    private_api, redis_client, redis_url, prefix, keys, seed
):
    rng = random.Random(seed)
    # Enough retries that kills (each may cost an attempt) never spend a schedule.
    env = dispatcher_env(
        redis_url, prefix, webhook_retry_schedule_ms="200,300,400,500,600,700,800,900"
    )
    writer = _RedisWriter(url_of(redis_client), keys)
    with (
        Receiver(fail_first=rng.choice([0, 1]), delay_s=rng.choice([0.0, 0.05])) as money,
        Receiver(delay_s=rng.choice([0.0, 0.05, 0.2])) as metering,
    ):
        a = subscribe(private_api, money.url, ["commission", "payout"])
        b = subscribe(private_api, metering.url, ["usage"])
        replicas = [start_dispatcher(env) for _ in range(rng.choice([1, 2, 3]))]
        outs: list[dict] = []
        try:
            for burst in range(4):
                batch = [
                    output(kind, 1000 * burst + n)
                    for n in range(rng.choice([10, 40, 80]))
                    for kind in [rng.choice(KINDS)]
                ]
                writer.write(batch)
                outs += batch
                time.sleep(rng.uniform(0.05, 1.5))
                victim = replicas.pop(rng.randrange(len(replicas)))
                kill(victim, signal.SIGKILL)
                if not replicas or rng.random() < 0.7:
                    replicas.append(start_dispatcher(env))
            want_a = {o["output_id"] for o in outs if o["type"] in ("commission", "payout")}
            want_b = {o["output_id"] for o in outs if o["type"] == "usage"}
            wait_for(
                lambda: set(money.delivered()) == want_a and set(metering.delivered()) == want_b,
                timeout=120,
            )
            for endpoint, wanted in ((a, want_a), (b, want_b)):
                wait_for(_all_succeeded(private_api, endpoint["id"], wanted), timeout=60)
        finally:
            for proc in replicas:
                kill(proc)
            writer.close()
        for receiver, endpoint, wanted in ((money, a, want_a), (metering, b, want_b)):
            assert {r["id"] for r in receiver.requests} == wanted  # nothing unsubscribed
            bodies: dict[str, bytes] = {}
            for request in receiver.requests:
                assert verify_by_hand(endpoint["secret"], request["headers"], request["body"])
                assert body_of(request)["output_id"] == request["id"]
                assert bodies.setdefault(request["id"], request["body"]) == request["body"]
