"""The source's read-ahead (flows.stream_read_ahead), against real Redis: the next
`TIME` + `XREAD` is sent after a full batch and taken at the next call, and
whatever goes wrong with it, the partition reads every entry once, in order, with
a watermark that never passes an entry appended later."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.keys import Keys
from flows import stream_read_ahead
from flows.redis_source import RedisStreamSource
from state.messages import RawEntry, Watermark


class _CountedTakes(stream_read_ahead.StreamReadAhead):
    """Counts the reads in flight that were taken, and those refused (None)."""

    taken = 0
    refused = 0

    def take(self, after: str) -> Any:
        in_flight = self._from is not None
        read = super().take(after)
        if in_flight and read is None:
            _CountedTakes.refused += 1
        elif in_flight:
            _CountedTakes.taken += 1
        return read


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> type[_CountedTakes]:
    _CountedTakes.taken = _CountedTakes.refused = 0
    monkeypatch.setattr("flows.redis_source.StreamReadAhead", _CountedTakes)
    return _CountedTakes


def _append(conn: redis.Redis, keys: Keys, n: int) -> list[str]:
    return [str(conn.xadd(keys.events, {"data": '{"type": "scan"}'})) for _ in range(n)]


def _partition(redis_url: str, keys: Keys, batch: int) -> Any:
    source = RedisStreamSource(redis_url, keys, batch=batch, lag_ms=0)
    return source.build_part("input", keys.events, None)


def _positions(items: list[tuple[str, Any]]) -> list[str]:
    return [v.position for _k, v in items if isinstance(v, RawEntry)]


def _read_all(part: Any, calls: int) -> list[str]:
    read: list[str] = []
    for _ in range(calls):
        read += _positions(part.next_batch())
    return read


def test_after_a_full_batch_the_next_one_comes_from_the_read_sent_ahead(
    redis_url, redis_client, keys, counted
):
    ids = _append(redis_client, keys, 7)
    part = _partition(redis_url, keys, batch=3)
    assert _read_all(part, 4) == ids
    # Calls 2 and 3 follow full batches; call 1 had nothing sent, and the partial
    # batch of call 3 sent nothing for call 4.
    assert (counted.taken, counted.refused) == (2, 0)
    part.close()


def test_a_partial_batch_sends_nothing_ahead(redis_url, redis_client, keys, counted):
    ids = _append(redis_client, keys, 2)
    part = _partition(redis_url, keys, batch=3)
    assert _read_all(part, 1) == ids
    assert part._ahead._from is None
    more = _append(redis_client, keys, 1)
    assert _read_all(part, 1) == more  # read as it comes, not from a stale reply
    assert counted.taken == 0
    part.close()


def test_the_watermark_of_a_read_sent_ahead_never_passes_a_later_entry(
    redis_url, redis_client, keys, counted
):
    """The read sent after a full batch finds the stream empty; an entry appended
    after it has an id at or after the clock that read took, so the watermark the
    partition makes from that clock (lag 0 here) is not past it."""
    first = _append(redis_client, keys, 2)
    part = _partition(redis_url, keys, batch=2)
    assert _read_all(part, 1) == first  # full: the next read is sent now
    later = _append(redis_client, keys, 1)
    taken = part.next_batch()
    assert counted.taken == 1 and _positions(taken) == []
    [tick] = [v for _k, v in taken if isinstance(v, Watermark)]
    [entry] = [v for _k, v in part.next_batch() if isinstance(v, RawEntry)]
    assert entry.position == later[0]
    assert tick.log_time <= entry.ts
    part.close()


def test_a_read_whose_connection_died_is_read_again(redis_url, redis_client, keys, counted):
    ids = _append(redis_client, keys, 4)
    part = _partition(redis_url, keys, batch=2)
    ahead = part._ahead._conn  # its own connection: learn its id on it, then kill it
    ahead.send_command("CLIENT", "ID")
    redis_client.execute_command("CLIENT", "KILL", "ID", ahead.read_response())
    assert _read_all(part, 1) == ids[:2]  # full: the next read goes to a dead connection
    assert _read_all(part, 1) == ids[2:]  # so it is read here, synchronously
    assert (counted.taken, counted.refused) == (0, 1)
    part.close()


def test_a_read_from_a_position_left_behind_is_dropped(redis_url, redis_client, keys):
    ids = _append(redis_client, keys, 4)
    part = _partition(redis_url, keys, batch=2)
    assert _read_all(part, 1) == ids[:2]
    ahead = part._ahead
    assert ahead.take("0-0") is None  # sent from ids[1], asked from elsewhere
    assert ahead._from is None
    assert _read_all(part, 2) == ids[2:]  # read again, synchronously
    part.close()


def test_an_error_reply_is_left_to_the_synchronous_read(redis_client, keys):
    """A read that Redis refuses is not taken: the partition's own read meets the
    error again and raises as it always did. The connection stays usable."""
    redis_client.set(keys.events, "not a stream")
    ahead = stream_read_ahead.StreamReadAhead(redis_client, keys.events, 2)
    ahead.send("0-0")
    assert ahead.take("0-0") is None
    redis_client.delete(keys.events)
    ids = _append(redis_client, keys, 1)
    ahead.send("0-0")
    read = ahead.take("0-0")
    assert read is not None and [eid for eid, _fields in read[1]] == ids
    ahead.close()


def test_a_restart_with_a_read_in_flight_resumes_from_the_snapshot(redis_url, redis_client, keys):
    """A crash between sending a read and taking it: the new partition resumes at
    the last snapshot and reads on from there; nothing after it is lost."""
    ids = _append(redis_client, keys, 6)
    part = _partition(redis_url, keys, batch=2)
    assert _read_all(part, 1) == ids[:2]
    resume = part.snapshot()
    assert _read_all(part, 1) == ids[2:4]  # taken from ahead; the next one is sent
    assert part._ahead._from == ids[3]
    source = RedisStreamSource(redis_url, keys, batch=2, lag_ms=0)
    again = source.build_part("input", keys.events, resume)  # the old one is never closed
    assert _read_all(again, 2) == ids[2:]
    again.close()
    part.close()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batch=st.integers(1, 4),
    steps=st.lists(st.one_of(st.just("read"), st.integers(1, 5)), min_size=1, max_size=12),
)
def test_entries_come_once_in_order_and_no_tick_passes_a_later_entry(
    redis_url, redis_client, keys, batch, steps
):
    """Appends (a number) and reads, in any order: the entries come out once each, in
    the stream's order, and every watermark is at or before each entry after it."""
    redis_client.delete(keys.events)
    part = _partition(redis_url, keys, batch=batch)
    appended: list[str] = []
    out: list[Any] = []
    for step in [*steps, *["read"] * 8]:
        if step == "read":
            out += [v for _k, v in part.next_batch()]
        else:
            appended += _append(redis_client, keys, step)
    for _ in range(len(appended)):  # a batch of 1 needs a call per entry; more is a bug
        if sum(isinstance(v, RawEntry) for v in out) >= len(appended):
            break
        out += [v for _k, v in part.next_batch()]
    assert [v.position for v in out if isinstance(v, RawEntry)] == appended
    tick = -1
    for v in out:
        if isinstance(v, Watermark):
            tick = max(tick, v.log_time)
        else:
            assert v.ts >= tick
    part.close()
