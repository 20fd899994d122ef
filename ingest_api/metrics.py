"""Prometheus metrics, read from counters that the ingest script and the flows keep in
Redis, so they are the same whichever API replica is scraped.

Output and reject counters count what the sink wrote: after a crash, recovery may
write the last epoch's outputs again, and those repeats are counted too.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from billing import stream_ids
from billing.keys import WEBHOOK_GROUP, Keys
from billing.stream_ids import ts_of
from webhooks.store import LATENCY_BUCKETS_MS, WebhookStore


class _Snapshot:
    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> list[Any]:
        return self.families


def _ms(entry_id: str | None) -> int | None:
    return ts_of(entry_id) if entry_id else None


async def _webhook_families(redis: Any, keys: Keys, now_ms: int) -> list[Any]:
    store = WebhookStore(redis, keys)
    outcomes = await redis.hgetall(store.stats_key)
    latency = await redis.hgetall(store.latency_key)
    oldest = await store.oldest_undelivered_ms()
    fam = CounterMetricFamily(
        "billing_webhook_deliveries",
        "Webhook delivery attempts, by endpoint and outcome (succeeded, retry, failed)",
        labels=["endpoint", "outcome"],
    )
    for field, count in sorted(outcomes.items()):
        endpoint, _, outcome = field.partition("|")
        fam.add_metric([endpoint, outcome], int(count))
    age = GaugeMetricFamily(
        "billing_webhook_oldest_undelivered_age_ms",
        "Age of the oldest delivery not yet succeeded or failed",
    )
    age.add_metric([], 0 if oldest is None else max(0, now_ms - oldest))
    hist = HistogramMetricFamily(
        "billing_webhook_latency_ms", "Webhook request latency (ms), every attempt"
    )
    # Kept per bucket (one counter per attempt); Prometheus wants running totals.
    buckets, running = [], 0
    for bound in [*map(str, LATENCY_BUCKETS_MS), "+Inf"]:
        running += int(latency.get(bound, 0))
        buckets.append((bound, running))
    hist.add_metric([], buckets, sum_value=int(latency.get("sum", 0)))
    return [fam, age, hist]


async def _oldest_unfinished_id(redis: Any, stream: str) -> str | None:
    """The oldest entry of an output stream the webhook dispatchers' group has not
    finished (read and not acknowledged, or not read), or None: no group, or done.
    The sink does not trim a stream past it (flows.sink_script)."""
    try:
        groups = await redis.xinfo_groups(stream)
    except aioredis.ResponseError:  # no such stream yet
        return None
    group = next((g for g in groups if g["name"] == WEBHOOK_GROUP), None)
    if group is None:
        return None
    found: list[str] = []
    # The oldest pending is None when a dispatcher acknowledged the last meanwhile.
    pending = await redis.xpending(stream, WEBHOOK_GROUP) if int(group["pending"]) else None
    if pending and pending["min"] is not None:
        found.append(pending["min"])
    unread = await redis.xrange(stream, min=f"({group['last-delivered-id']}", count=1)
    if unread:
        found.append(unread[0][0])
    return min(found, key=stream_ids.parse) if found else None


async def _backlog_family(redis: Any, keys: Keys, now_ms: int) -> Any:
    fam = GaugeMetricFamily(
        "billing_webhook_backlog_age_ms",
        "Age of the oldest output the webhook dispatchers have not taken yet, by output "
        "stream (0: none waiting). The stream is kept from there on, however old",
        labels=["stream"],
    )
    for stream in keys.output_streams:
        oldest = await _oldest_unfinished_id(redis, stream)
        # Labelled by the stream's own name (`billing:rejects` -> rejects).
        name = stream.rpartition(":")[2]
        fam.add_metric([name], 0 if oldest is None else max(0, now_ms - ts_of(oldest)))
    return fam


async def render(redis: Any, keys: Keys) -> bytes:
    ingested = await redis.hgetall(keys.stats("ingested"))
    outputs = await redis.hgetall(keys.stats("outputs"))
    rejects = await redis.hgetall(keys.stats("rejects"))
    newest = await redis.xrevrange(keys.events, count=1)
    processed = await redis.get(keys.flows_position)
    refused = await redis.hgetall(keys.stats("scans_refused"))

    families: list[Any] = []
    fam = CounterMetricFamily(
        "billing_events_ingested", "Events appended to the log, by type", labels=["type"]
    )
    for kind, count in sorted(ingested.items()):
        fam.add_metric([kind], int(count))
    families.append(fam)
    fam = CounterMetricFamily(
        "billing_outputs", "Outputs written by the flows, by type", labels=["type"]
    )
    for kind, count in sorted(outputs.items()):
        fam.add_metric([kind], int(count))
    families.append(fam)
    fam = CounterMetricFamily(
        "billing_rejects", "Rejects written by the flows, by reason", labels=["reason"]
    )
    for reason, count in sorted(rejects.items()):
        fam.add_metric([reason], int(count))
    families.append(fam)
    fam = CounterMetricFamily(
        "billing_scans_refused", "Scans not written: over a rate limit, by limit", labels=["limit"]
    )
    for limit, count in sorted(refused.items()):
        fam.add_metric([limit], int(count))
    families.append(fam)
    newest_ms = _ms(newest[0][0]) if newest else None
    processed_ms = _ms(processed)
    lag = GaugeMetricFamily(
        "billing_flow_lag_ms", "Newest input ts minus the newest ts the flows have read"
    )
    if newest_ms is not None:
        lag.add_metric([], max(0, newest_ms - (processed_ms or 0)))
    families.append(lag)
    seconds, micros = await redis.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    families += await _webhook_families(redis, keys, now_ms)
    families.append(await _backlog_family(redis, keys, now_ms))
    registry = CollectorRegistry()
    registry.register(_Snapshot(families))
    return generate_latest(registry)
