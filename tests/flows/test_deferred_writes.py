"""Writes answered later (flows.deferred_writes), against real Redis.

`CLIENT PAUSE ... WRITE` holds every write on the server while reads go on, so
these tests see the moment between sending and storing that a fast Redis hides."""

from __future__ import annotations

import time

import pytest
import redis

from billing.keys import Keys
from billing.redis_runtime import client
from flows.deferred_writes import DeferredWrites
from flows.facts_redis import RedisFacts
from flows.logic import SequencerLogic
from state.messages import InputBatch, LogEvent, Watermark
from state.sharding import COMMISSIONS
from state.testing import SMALL_RULES
from tests.support.streams import no_parse

PAUSE_MS = 300


def _pause_writes(conn: redis.Redis) -> float:
    conn.execute_command("CLIENT", "PAUSE", PAUSE_MS, "WRITE")
    return time.monotonic()


def test_settle_waits_until_the_writes_are_stored(redis_client, prefix):
    writes = DeferredWrites(redis_client)
    started = _pause_writes(redis_client)
    writes.send([("SET", f"{prefix}a", "1"), ("SET", f"{prefix}b", "2")])
    assert time.monotonic() - started < PAUSE_MS / 2000  # sending does not wait
    assert redis_client.get(f"{prefix}a") is None  # held by the pause
    writes.settle()
    assert time.monotonic() - started >= PAUSE_MS / 1000 * 0.9
    assert redis_client.mget([f"{prefix}a", f"{prefix}b"]) == ["1", "2"]
    writes.close()


def test_each_writer_has_its_own_connection_outside_the_clients_pool(
    redis_url, redis_client, prefix
):
    """Writers made on one client do not use up its pool: with room for two
    connections, three writers and the client's own reads all go through.
    (`redis_client` is here for its clean-up of the prefix.)"""
    small = redis.Redis.from_url(redis_url, decode_responses=True, max_connections=2)
    writers = [DeferredWrites(small) for _ in range(3)]
    for n, writes in enumerate(writers):
        writes.send([("SET", f"{prefix}w{n}", str(n))])
        writes.settle()
    assert small.mget([f"{prefix}w{n}" for n in range(3)]) == ["0", "1", "2"]
    for writes in writers:
        writes.close()
    small.close()


def test_writes_lost_with_their_connection_are_sent_again(redis_url, redis_client, prefix):
    """Killed before the server ran them: the patient client sends them again."""
    writes = DeferredWrites(client(redis_url, patient=True))
    connection = writes._conn  # its own connection: learn its id on it
    connection.send_command("CLIENT", "ID")
    own_id = connection.read_response()
    _pause_writes(redis_client)
    writes.send([("SET", f"{prefix}lost", "kept")])
    redis_client.execute_command("CLIENT", "KILL", "ID", own_id)
    writes.settle()
    assert redis_client.get(f"{prefix}lost") == "kept"
    writes.close()


def test_an_error_reply_raises_and_the_next_writes_go_through(redis_client, prefix):
    redis_client.set(f"{prefix}s", "a string")
    writes = DeferredWrites(redis_client)
    writes.send([("ZADD", f"{prefix}s", 1, "m"), ("SET", f"{prefix}after", "x")])
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        writes.settle()
    writes.send([("SET", f"{prefix}next", "y")])
    writes.settle()
    assert redis_client.get(f"{prefix}next") == "y"
    writes.close()


def test_the_sequencers_snapshot_waits_for_its_epochs_fact_writes(redis_client, keys: Keys):
    """bytewax commits the epoch after the snapshot: a re-run from it must find the
    facts its input wrote (flows.facts_redis, crash safety)."""
    logic = SequencerLogic(
        SMALL_RULES, lambda key: RedisFacts(redis_client, keys, 10**12, key), no_parse, None
    )
    share = {"type": "share", "ts": 1_000, "share_id": "sh1", "sharer_id": "u1",
             "item_id": "i1"}  # fmt: skip
    _pause_writes(redis_client)
    logic.on_batch([InputBatch(COMMISSIONS, [LogEvent("1000-0", share), Watermark(1_000)])])
    assert redis_client.get(keys.fact("share", "sh1")) is None  # sent, held by the pause
    logic.snapshot()
    assert redis_client.get(keys.fact("share", "sh1")) is not None
