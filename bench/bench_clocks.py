"""What a session shard's snapshot costs per epoch as open sessions grow.

    .venv/bin/python -m bench.bench_clocks [--sizes 1000,10000,100000] [--touched-pct 10]

One session shard (state.sharding) with N open sessions, the live fact store in
Redis. Each epoch, `--touched-pct` of the sessions send a segment (10%: 10 s
segments, 1 s epochs). Prints, per epoch, the bytes bytewax stores for the shard
and the milliseconds its `snapshot` takes: with the clocks kept beside the
snapshot (flows.snapshot_tables: the epoch's changed clocks to Redis, a table ref
in the snapshot; a new base now and then, so the mean over 20 epochs is shown),
and with the clocks pickled into it, as before 2026-12-07.
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import time

from bench.common import scratch_redis
from billing.keys import Keys
from billing.redis_runtime import client
from flows.facts_redis import RedisFacts
from flows.logic import SequencerLogic
from state.messages import InputBatch, LogEvent, RawRun, SequencerInput
from state.sharding import SHARD_KEYS
from state.testing import SMALL_RULES

SHARD = SHARD_KEYS[0]
EPOCHS = 20


def _parse(position: str, data: str, ts: int) -> SequencerInput:
    raise TypeError("entries are parsed here")


def _start(n: int) -> dict[str, object]:
    return {
        "type": "session_start",
        "session_id": f"sess-{n:08d}-a1b2c3",
        "ts": 1_000 + n,
        "tariff_id": "t",
        "report_interval_ms": 3_600_000,  # open for the whole run
    }


def _segment(n: int, seq: int, ts: int) -> dict[str, object]:
    return {
        "type": "segment",
        "session_id": f"sess-{n:08d}-a1b2c3",
        "seq": seq,
        "ts": ts,
        "start_ms": ts - 10_000,
        "end_ms": ts,
        "end": False,
    }


def one_size(url: str, prefix: str, size: int, touched_pct: int) -> None:
    conn = client(url)
    keys = Keys(f"{prefix}{size}:")
    logic = SequencerLogic(
        SMALL_RULES,
        lambda key: RedisFacts(conn, keys, 10**12, key),
        _parse,
        None,
    )
    tariff = {"type": "tariff", "tariff_id": "t", "ts": 0}
    tariff |= {"currency": "USD", "unit_ms": 1000, "price_minor": 1}
    entries: list[SequencerInput | RawRun] = [LogEvent("1-0", tariff)]
    entries += [LogEvent(f"2-{n}", _start(n)) for n in range(size)]
    logic.on_batch([InputBatch(SHARD, entries)])
    logic.snapshot()
    touched = max(1, size * touched_pct // 100)
    outside_bytes, outside_ms, inside_bytes, inside_ms = [], [], [], []
    for epoch in range(EPOCHS):
        ts = 20_000 + epoch * 1_000
        first = epoch * touched
        batch: list[SequencerInput | RawRun] = [
            LogEvent(f"3-{epoch}-{i}", _segment((first + i) % size, epoch + 1, ts))
            for i in range(touched)
        ]
        logic.on_batch([InputBatch(SHARD, batch)])
        started = time.perf_counter()
        snap = logic.snapshot()
        outside_ms.append((time.perf_counter() - started) * 1e3)
        outside_bytes.append(len(snap))
        started = time.perf_counter()
        held = pickle.dumps((SHARD, logic.sequencer), protocol=pickle.HIGHEST_PROTOCOL)
        inside_ms.append((time.perf_counter() - started) * 1e3)
        inside_bytes.append(len(held))
    redis_bytes = sum(
        conn.memory_usage(k) or 0 for k in conn.scan_iter(f"{keys.base}:table:*", count=1000)
    )
    print(
        f"{size:>9,} open, {touched:>7,} touched per epoch: beside the snapshot "
        f"{statistics.mean(outside_bytes):>9,.0f} B and {statistics.mean(outside_ms):6.2f} ms "
        f"(max {max(outside_ms):6.2f}); held in it {statistics.mean(inside_bytes):>11,.0f} B "
        f"and {statistics.mean(inside_ms):7.2f} ms; the table in Redis {redis_bytes / 1e6:.1f} MB",
        flush=True,
    )
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--touched-pct", type=int, default=10)
    args = parser.parse_args()
    with scratch_redis() as (url, prefix):
        for size in (int(s) for s in args.sizes.split(",")):
            one_size(url, prefix, size, args.touched_pct)


if __name__ == "__main__":
    main()
