"""The live sink's cost in Redis: its script's time per output, by call size.

    .venv/bin/python -m bench.bench_sink [--events 200000] [--per-call 800] [--webhook-group]

Replays the mixed log (bench.bench_replay) to outputs, then writes them through the
sink's writer (flows.redis_sink) in calls of `--per-call` outputs, as the live sink
does after each batch. Prints Redis's own time in the script (INFO commandstats:
the script's microseconds, which include the commands it runs) per output, and the
commands it ran per output. The sink's script is most of Redis's work in a live
run (measured 2026-12-03, `--processes 2` and 1 over 600k events: 42 of 50 s),
and with two processes Redis shares the two cores with the flows, so its time
is the flows' time too.

Reads Redis's counters for the whole server: run it on a Redis nothing else is
using (REDIS_URL, else 127.0.0.1:6379, else an embedded one).
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from typing import Any

import orjson

from bench.bench_replay import make_log
from bench.common import scratch_redis
from billing.keys import WEBHOOK_GROUP, Keys
from billing.redis_runtime import client
from flows.redis_sink import _RedisWriter
from flows.replay import replay
from state.config import RuleSettings


def _commandstats(conn: Any) -> dict[str, tuple[int, int]]:
    """command -> (calls, usec)."""
    stats = conn.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
        for name, v in stats.items()
    }


def _cpu(conn: Any) -> float:
    """Redis's CPU seconds (user and system) so far: the script, and reading its call."""
    info = conn.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--per-call", type=int, default=800)
    parser.add_argument(
        "--webhook-group",
        action="store_true",
        help="the webhook dispatchers' group on every output stream, as when they run "
        "(made at the end and never read from: the script asks it where to trim)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "log.jsonl")
        make_log(log, args.events)
        out = io.StringIO()
        replay(log, out, RuleSettings())
    outputs = [orjson.loads(line) for line in out.getvalue().splitlines()]
    with scratch_redis() as (url, prefix):
        conn = client(url)
        keys = Keys(prefix)
        writer = _RedisWriter(url, keys)
        if args.webhook_group:
            for stream in keys.output_streams:
                conn.xgroup_create(stream, WEBHOOK_GROUP, id="$", mkstream=True)
        before, cpu_before = _commandstats(conn), _cpu(conn)
        started = time.perf_counter()
        for i in range(0, len(outputs), args.per_call):
            writer.write(outputs[i : i + args.per_call])
        elapsed = time.perf_counter() - started
        after, cpu = _commandstats(conn), _cpu(conn) - cpu_before
        writer.close()
        conn.close()
    n = len(outputs)
    calls = {k: after[k][0] - before.get(k, (0, 0))[0] for k in after}
    usec = {k: after[k][1] - before.get(k, (0, 0))[1] for k in after}
    script = usec.get("evalsha", 0) + usec.get("eval", 0)
    inner = {k: c for k, c in calls.items() if k not in ("evalsha", "eval", "script|load")}
    print(f"{n:,} outputs in calls of {args.per_call}: {n / elapsed:,.0f} outputs/s written")
    print(f"Redis time in the script: {script / n:.2f} us per output ({script / 1e6:.2f} s)")
    print(f"Redis CPU in all: {cpu * 1e6 / n:.2f} us per output ({cpu:.2f} s)")
    print(f"commands the script ran: {sum(inner.values()) / n:.2f} per output")
    for name, count in sorted(inner.items(), key=lambda kv: -kv[1]):
        if count:
            print(f"  {name}: {count / n:.3f} per output, {usec[name] / max(1, count):.2f} us each")


if __name__ == "__main__":
    main()
