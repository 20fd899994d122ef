"""Live throughput: Redis input stream -> `billing flows` -> Redis outputs and views.

    .venv/bin/python -m bench.bench_live [--events 200000]

Loads a mixed log into a fresh key prefix, starts `billing flows` (one process, one
worker, recovery on, the tests' small windows), and prints events/s from its first
output to its last one (process start-up excluded). `bench.bench_scale catchup` does
the same at SPEC's default settings over several sizes. Uses REDIS_URL, else
127.0.0.1:6379, else an embedded server; cleans its keys up afterwards.
"""

from __future__ import annotations

import argparse
import os
import tempfile

from bench.bench_replay import make_log
from bench.common import scratch_redis
from bench.live_run import run_live
from state.testing import SMALL_RULES


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    with scratch_redis() as (url, prefix), tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "log.jsonl")
        make_log(log, args.events)
        r = run_live(url, prefix, tmp, log, SMALL_RULES)
        print(
            f"live Redis->flow->Redis: {r['rate']:,.0f} events/s "
            f"({r['elapsed']:.1f} s, {r['events']:,} events, with views and recovery)"
        )


if __name__ == "__main__":
    main()
