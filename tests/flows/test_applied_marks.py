"""The sink's applied marks are kept by the log's time, not by Redis's clock: each
holds its output's `ts` and no TTL, and flows.fact_sweeper's `MarkSweeper` deletes
those more than R and the margin behind where a re-run may start. So an output given
again after a crash is counted once in the balances however long the flows stood
still, which a TTL on Redis's clock could not promise."""

from __future__ import annotations

import time

import pytest

from billing.keys import Keys
from flows.fact_sweeper import MarkSweeper
from flows.redis_sink import _RedisWriter
from harness.live import url_of
from tests.support.outputs import accrual_output


def _balances(conn, keys: Keys) -> dict[str, str]:
    return conn.hgetall(keys.sharer_view("al"))


def test_an_output_given_again_after_any_stop_is_counted_once(redis_client, keys: Keys):
    """A writer whose views last 50 ms (as if R and the margin of Redis's clock had
    passed while the flows stood still) writes an output, and after 150 ms writes it
    again, as a re-run after a crash would: the balances take it once. Before marks
    were kept by the log's time, the mark had expired with the views' TTL and the
    output was counted twice."""
    writer = _RedisWriter(url_of(redis_client), keys, ttl_ms=50)
    out = accrual_output("o1", 1_700_000_000_000, 250)
    try:
        writer.write([out])
        once = _balances(redis_client, keys)
        assert once["USD:pending"] == "250"
        time.sleep(0.15)
        writer.write([out])
        assert _balances(redis_client, keys) == once
        mark = keys.applied(out["output_id"])
        assert redis_client.get(mark) == str(out["ts"])
        assert redis_client.pttl(mark) == -1
    finally:
        writer.close()


@pytest.mark.parametrize("cluster_names", [False, True])
def test_the_sweeper_deletes_exactly_the_marks_behind_the_horizon(
    redis_client, keys: Keys, cluster_names: bool
):
    """A mark whose `ts` is before horizon - keep goes; at or after it, it stays. Nothing
    goes before a horizon is published. A mark an earlier version wrote ('1', with a
    TTL) is left to its TTL; another deployment's marks, and other keys, are never
    touched. (`cluster_names`: the names as on a Redis Cluster, under the hash tag.)"""
    keys = Keys(keys.prefix, cluster=cluster_names)
    other = Keys(keys.prefix + "x:", cluster=cluster_names)
    keep, horizon = 1_000, 10_000
    old, edge, new = (keys.applied(f"commission:accrual:{n}") for n in ("old", "edge", "new"))
    redis_client.set(old, 8_999)
    redis_client.set(edge, 9_000)
    redis_client.set(new, 9_500)
    legacy = keys.applied("commission:accrual:legacy")
    redis_client.set(legacy, "1", px=60_000)
    theirs = other.applied("commission:accrual:old")
    redis_client.set(theirs, 100)
    view = keys.order_view("o")
    redis_client.set(view, 5)
    sweeper = MarkSweeper(redis_client, keys, keep)
    try:
        assert sweeper.sweep_all() == 0  # no horizon yet
        redis_client.set(keys.facts_horizon, horizon)
        assert sweeper.sweep_all() == 1
        assert redis_client.exists(old) == 0
        assert redis_client.exists(edge, new, legacy, theirs, view) == 5
    finally:  # names under a hash tag do not start with the prefix the fixture clears
        for key in redis_client.scan_iter(match=f"{{{keys.prefix}*"):
            redis_client.delete(key)


def test_marks_swept_by_the_writer_and_the_sweeper_together(redis_client, keys: Keys):
    """Outputs along several R, written as the log goes, the horizon following: the
    marks left are exactly those of the last R and the margin, and the balances are
    each output once."""
    writer = _RedisWriter(url_of(redis_client), keys)
    sweeper = MarkSweeper(redis_client, keys, keep_ms=1_000)
    try:
        for t in range(0, 5_000, 100):
            writer.write([accrual_output(f"o{t}", t + 1, 1)])
            redis_client.set(keys.facts_horizon, t + 1)
            sweeper.step()
        sweeper.sweep_all()
        left = sorted(
            int(redis_client.get(k)) for k in redis_client.scan_iter(match=keys.applied_pattern())
        )
        assert left == list(range(3_901, 5_001, 100))
        assert _balances(redis_client, keys)["USD:pending"] == "50"
    finally:
        writer.close()
