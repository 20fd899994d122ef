"""The sink's applied marks are kept by the log's time, not by Redis's clock: each is
a field of its minute's bucket (by the output's `ts`), with no TTL, and flows.
fact_sweeper's `MarkSweeper` drops whole buckets more than R and the margin behind
where a re-run may start. So an output given again after a crash is counted once in
the balances however long the flows stood still, which a TTL on Redis's clock could
not promise."""

from __future__ import annotations

import time

from billing.keys import Keys
from billing.sharer_view import MARK_BUCKET_MS
from flows.fact_sweeper import MarkSweeper
from flows.redis_sink import _RedisWriter
from harness.live import url_of
from tests.support.outputs import accrual_output

T0 = 1_700_000_040_000  # a minute's start


def _balances(conn, keys: Keys) -> dict[str, str]:
    return conn.hgetall(keys.sharer_view("al"))


def _marked(conn, keys: Keys) -> list[str]:
    """The output ids marked, over every bucket the index names."""
    return sorted(m for b in conn.zrange(keys.marks_index, 0, -1) for m in conn.hkeys(b))


def test_an_output_given_again_after_any_stop_is_counted_once(redis_client, keys: Keys):
    """A writer whose views last 50 ms (as if R and the margin of Redis's clock had
    passed while the flows stood still) writes an output, and after 150 ms writes it
    again, as a re-run after a crash would: the balances take it once. Before marks
    were kept by the log's time, the mark had expired with the views' TTL and the
    output was counted twice."""
    writer = _RedisWriter(url_of(redis_client), keys, ttl_ms=50)
    out = accrual_output("o1", T0 + 5, 250)
    try:
        writer.write([out])
        once = _balances(redis_client, keys)
        assert once["USD:pending"] == "250"
        time.sleep(0.15)
        writer.write([out])
        assert _balances(redis_client, keys) == once
        bucket = keys.marks(T0 // MARK_BUCKET_MS)
        assert redis_client.hkeys(bucket) == [out["output_id"]]
        assert redis_client.pttl(bucket) == -1 and redis_client.pttl(keys.marks_index) == -1
        assert redis_client.zrange(keys.marks_index, 0, -1, withscores=True) == [
            (bucket, T0 + MARK_BUCKET_MS)  # where its minute ends
        ]
    finally:
        writer.close()


def test_a_mark_an_earlier_version_set_is_honoured(redis_client, keys: Keys):
    """Versions before the buckets marked an output with a key of its own (with a
    TTL). The first re-run after an upgrade gives the last epoch's outputs again:
    those must not be counted twice."""
    out = accrual_output("o1", T0, 250)
    redis_client.set(keys.applied(out["output_id"]), "1", px=60_000)
    writer = _RedisWriter(url_of(redis_client), keys)
    try:
        writer.write([out, accrual_output("o2", T0, 7)])
        assert _balances(redis_client, keys)["USD:pending"] == "7"
    finally:
        writer.close()


def test_the_sweeper_drops_exactly_the_buckets_behind_the_horizon(redis_client, keys: Keys):
    """A bucket goes once its whole minute is before horizon - keep; one that ends
    after it stays, even if most of its minute is before. Nothing goes before a
    horizon is published, and another deployment's marks are never touched (the
    same on a Redis Cluster: tests/cluster)."""
    other = Keys(keys.prefix + "x:")
    url = url_of(redis_client)
    writers = [_RedisWriter(url, keys), _RedisWriter(url, other)]
    keep = 1_000
    horizon = T0 + 2 * MARK_BUCKET_MS + keep  # the cutoff: the third minute's start
    try:
        for w in writers:
            w.write(
                [
                    accrual_output("a", T0, 1),
                    accrual_output("b", T0 + MARK_BUCKET_MS - 1, 1),
                    accrual_output("c", T0 + MARK_BUCKET_MS, 1),
                    accrual_output("d", T0 + 2 * MARK_BUCKET_MS - 1, 1),
                    accrual_output("e", T0 + 2 * MARK_BUCKET_MS, 1),
                ]
            )
        sweeper = MarkSweeper(redis_client, keys, keep)
        assert sweeper.sweep_all() == 0  # no horizon yet
        redis_client.set(keys.facts_horizon, horizon)
        assert sweeper.sweep_all() == 4
        assert _marked(redis_client, keys) == ["commission:accrual:e:" + str(T0 + 120_000) + ":i"]
        assert len(_marked(redis_client, other)) == 5
        redis_client.set(keys.facts_horizon, horizon - 1)
        assert sweeper.sweep_all() == 0
    finally:
        for w in writers:
            w.close()


def test_marks_swept_by_the_writer_and_the_sweeper_together(redis_client, keys: Keys, monkeypatch):
    """Outputs along several R, written as the log goes, the horizon following: the
    marks left are those of the buckets that end after the cutoff, and the balances
    are each output once. Steps of two buckets, so that a step goes on."""
    monkeypatch.setattr(MarkSweeper, "BUCKETS_PER_STEP", 2)
    writer = _RedisWriter(url_of(redis_client), keys)
    sweeper = MarkSweeper(redis_client, keys, keep_ms=10 * MARK_BUCKET_MS)
    try:
        for n in range(100):
            t = T0 + n * MARK_BUCKET_MS // 2
            writer.write([accrual_output(f"o{n}", t, 1)])
            redis_client.set(keys.facts_horizon, t)
            sweeper.step()
        sweeper.sweep_all()
        # The cutoff is T0 + 39.5 minutes: minutes 39 to 49 stay, two outputs each.
        assert redis_client.zcard(keys.marks_index) == 11
        assert len(_marked(redis_client, keys)) == 22
        assert _balances(redis_client, keys)["USD:pending"] == "100"
    finally:
        writer.close()
