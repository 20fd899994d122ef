"""The output streams are trimmed by the sink as they grow (ttl: R and a margin), but
never past what the webhook dispatchers' consumer group has yet to finish: an entry
it has not read, or read and not acknowledged, stays however old it is, so
dispatchers stopped for longer than the ttl lose no delivery."""

from __future__ import annotations

import json
import time

import pytest

from billing.keys import WEBHOOK_GROUP
from flows.redis_sink import _RedisWriter
from harness.live import url_of
from tests.support.outputs import accrual_output

TTL_MS = 300


def _rejects(names: range | list[str], tag: str = "old") -> list[dict[str, object]]:
    return [
        {"type": "reject", "output_id": f"{tag}:{n}", "reason": "duplicate", "event": {}}
        for n in names
    ]


def _kept(redis_client, stream: str) -> list[str]:
    return [json.loads(f["data"])["output_id"] for _id, f in redis_client.xrange(stream)]


@pytest.fixture
def writer(redis_client, keys):
    made = _RedisWriter(url_of(redis_client), keys, ttl_ms=TTL_MS)
    yield made
    made.close()


def _age_and_write_one(writer: _RedisWriter) -> None:
    """Let every entry so far pass the ttl, then write one more (which trims)."""
    time.sleep(TTL_MS / 1000 + 0.2)
    writer.write(_rejects(["x"], tag="new"))


@pytest.mark.parametrize(
    ("group", "read", "acked", "first_kept"),
    [
        # No group (no dispatcher ever ran): trimmed by time alone.
        (None, 0, 0, None),
        # Another reader's group does not hold the trim: only the dispatchers' does.
        ("someone-else", 0, 0, None),
        # The dispatchers' group, created and never read from: nothing goes.
        (WEBHOOK_GROUP, 0, 0, 0),
        # Read 200 of 300, acknowledged 100: the 100 pending and the 100 unread stay.
        (WEBHOOK_GROUP, 200, 100, 100),
        # Read 250 and acknowledged them all: the 50 unread stay.
        (WEBHOOK_GROUP, 250, 250, 250),
        # Read 200, acknowledged none: from the oldest pending on.
        (WEBHOOK_GROUP, 200, 0, 0),
    ],
)
def test_trim_stops_at_the_webhook_groups_oldest_unfinished_entry(
    redis_client, keys, writer, group, read, acked, first_kept
):
    stream = keys.rejects
    writer.write(_rejects(range(300)))
    if group is not None:
        redis_client.xgroup_create(stream, group, id="0")
    if read:
        got = redis_client.xreadgroup(group, "c1", {stream: ">"}, count=read)
        ids = [entry_id for entry_id, _f in got[0][1]]
        assert len(ids) == read
        if acked:
            redis_client.xack(stream, group, *ids[:acked])
    _age_and_write_one(writer)
    kept = _kept(redis_client, stream)
    assert kept[-1] == "new:x"
    if first_kept is None:
        assert len(kept) < 150  # whole radix-tree nodes of old entries went
    else:
        # Every entry from the oldest unfinished on is kept, in order.
        assert kept[-(300 - first_kept) - 1 : -1] == [f"old:{n}" for n in range(first_kept, 300)]


def test_once_the_dispatchers_catch_up_the_stream_is_trimmed_again(redis_client, keys, writer):
    stream = keys.rejects
    redis_client.xgroup_create(stream, WEBHOOK_GROUP, id="0", mkstream=True)
    writer.write(_rejects(range(300)))
    _age_and_write_one(writer)
    assert len(_kept(redis_client, stream)) == 301  # held for the dispatchers
    got = redis_client.xreadgroup(WEBHOOK_GROUP, "c1", {stream: ">"})
    redis_client.xack(stream, WEBHOOK_GROUP, *[entry_id for entry_id, _f in got[0][1]])
    _age_and_write_one(writer)
    kept = _kept(redis_client, stream)
    assert len(kept) < 150
    assert kept[-1] == "new:x"


def test_each_stream_is_held_by_its_own_group(redis_client, keys, writer):
    """The group on the rejects stream holds that stream, not the commissions stream."""
    redis_client.xgroup_create(keys.rejects, WEBHOOK_GROUP, id="0", mkstream=True)
    now = int(time.time() * 1000)
    writer.write(_rejects(range(300)) + [accrual_output(f"o{n}", now, 1) for n in range(300)])
    time.sleep(TTL_MS / 1000 + 0.2)
    writer.write([*_rejects(["x"], tag="new"), accrual_output("o-new", now, 1)])
    assert len(_kept(redis_client, keys.rejects)) == 301
    assert redis_client.xlen(keys.commissions) < 150
