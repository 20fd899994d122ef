"""Replay throughput: `billing replay`'s dataflow over a mixed log, one process.

    .venv/bin/python -m bench.bench_replay [--events 1000000] [--workers 1]

Prints events/s for the dataflow (file in, file out) and, for reference, for the
plain loop over the same events (no bytewax, no JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from flows.replay import replay
from state.engine import Engine
from state.testing import SMALL_RULES, random_log


def make_log(path: str, events: int) -> int:
    written = 0
    with open(path, "w") as out:
        seed = 0
        while written < events:
            # Independent chunks, shifted in time so the whole file stays in log order.
            chunk = random_log(
                seed, min(50_000, events - written), t0=1_700_000_000_000 + seed * 10**9
            )
            for event in chunk:
                event = dict(event)
                for key in ("order_id", "scan_id", "refund_id", "session_id"):
                    if key in event and event[key] not in ("nope", "ghost"):
                        event[key] = f"{seed}.{event[key]}"
                out.write(json.dumps(event) + "\n")
            written += len(chunk)
            seed += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "log.jsonl")
        count = make_log(log, args.events)
        size = os.path.getsize(log)
        print(f"log: {count} events, {size / 1e6:.1f} MB")

        started = time.perf_counter()
        with open(os.path.join(tmp, "out.jsonl"), "w") as out:
            replay(log, out, SMALL_RULES, workers=args.workers)
        elapsed = time.perf_counter() - started
        with open(os.path.join(tmp, "out.jsonl")) as produced_file:
            outputs = sum(1 for _ in produced_file)
        print(
            f"replay dataflow ({args.workers} worker): {count / elapsed:,.0f} events/s "
            f"({elapsed:.1f} s, {outputs} outputs)"
        )

        from flows.file_io import parse_line

        with open(log) as f:
            entries = [p for n, line in enumerate(f, 1) if (p := parse_line(line, n))]
        started = time.perf_counter()
        engine = Engine(SMALL_RULES)
        produced = sum(
            len(engine.on_batch(entries[i : i + 2000])) for i in range(0, len(entries), 2000)
        ) + len(engine.finish())
        elapsed = time.perf_counter() - started
        print(
            f"plain loop, parsed events, no I/O: {count / elapsed:,.0f} events/s "
            f"({produced} outputs)"
        )


if __name__ == "__main__":
    main()
