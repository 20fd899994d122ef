"""The live sink's partition (flows.redis_output) against real Redis."""

from __future__ import annotations

import redis

from billing.keys import Keys
from flows import stats
from flows.redis_output import RedisOutputSink


def test_each_process_s_sink_publishes_its_snapshot_counts(
    redis_url: str, redis_client: redis.Redis, keys: Keys
) -> None:
    """With `--processes 2` the commission sequencer snapshots in the process that
    has no source, so no heartbeat there would publish what it counted."""
    sink = RedisOutputSink(redis_url, keys, 10**9, 10**9, process_id=1)
    part = sink.build_part("billing.output", "p0001", None)
    try:
        stats.take()  # what other tests in this process counted
        stats.snapshot_taken(1_234)
        stats.snapshot_taken(66)
        part.snapshot()
        assert redis_client.hgetall(keys.stats("snapshots")) == {"bytes": "1300", "keys": "2"}
        part.snapshot()  # each count once
        assert redis_client.hgetall(keys.stats("snapshots")) == {"bytes": "1300", "keys": "2"}
    finally:
        part.close()
