"""Live throughput: Redis input stream -> `billing flows` -> Redis outputs and views.

    .venv/bin/python -m bench.bench_live [--events 200000]

Loads a mixed log into a fresh key prefix, starts `billing flows` (one process, one
worker, recovery on), and prints events/s from its first output to its last one
(process start-up excluded). Uses REDIS_URL, else 127.0.0.1:6379, else an
embedded server; cleans its keys up afterwards.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench.bench_replay import make_log
from bench.common import scratch_redis
from billing.events import parse_log_event
from billing.keys import Keys
from billing.redis_runtime import client
from state.engine import Engine
from tests.gen import SMALL_RULES
from tests.live_helpers import append_positioned, flows_env, kill, start_flows, with_stream_ids


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    with scratch_redis() as (url, prefix), tempfile.TemporaryDirectory() as tmp:
        conn = client(url)
        keys = Keys(prefix)
        log = Path(tmp) / "log.jsonl"
        make_log(str(log), args.events)
        with log.open() as lines:
            positioned = with_stream_ids([parse_log_event(json.loads(line)) for line in lines])
        engine = Engine(SMALL_RULES)
        expected = sum(len(engine.feed(ev, pos)) for pos, ev in positioned)
        for i in range(0, len(positioned), 10_000):
            append_positioned(conn, keys, positioned[i:i + 10_000])
        print(f"loaded {len(positioned)} events; expecting {expected} outputs")
        env = flows_env(url, prefix, Path(tmp) / "rec", SMALL_RULES, 10**13, epoch_ms=1000)
        proc = start_flows(env)
        try:
            first = None
            while True:
                done = sum(conn.xlen(s) for s in (keys.commissions, keys.usage, keys.rejects))
                if done and first is None:
                    first = time.perf_counter()
                if done >= expected:
                    break
                if proc.poll() is not None:
                    raise SystemExit("flows exited early")
                time.sleep(0.02)
            elapsed = time.perf_counter() - (first or time.perf_counter())
        finally:
            kill(proc)
        print(f"live Redis->flow->Redis: {len(positioned) / elapsed:,.0f} events/s "
              f"({elapsed:.1f} s, {expected} outputs with views)")


if __name__ == "__main__":
    main()
