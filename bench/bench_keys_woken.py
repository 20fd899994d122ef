"""Keyed items per event by key kind: how many keys the flow wakes, counted, not timed.

    .venv/bin/python -m bench.bench_keys_woken [--events 300000] [--epoch 2000]

Runs the dataflow in-process (one worker, no Redis, default settings) with an epoch
every `--epoch` entries, over the mixed bench log and the shop log
(bench.bench_wakeups), and counts the items that reach each keyed step: one per key
per batch, by the key's kind, with the messages they carry. A count does not drift
with the machine's speed, so it compares two versions where timings cannot.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections import Counter
from datetime import timedelta
from typing import Any

from bytewax.testing import TestingSink, TestingSource

import flows.dataflow as dataflow
from bench.bench_replay import make_log
from bench.bench_wakeups import shop_log
from flows.runtime import run_in_process
from state.config import RuleSettings
from state.messages import LogEvent


def count(events: list[dict[str, Any]], epoch: int) -> tuple[Counter[str], int]:
    """Items and messages per key kind, and the number of outputs."""
    counts: Counter[str] = Counter()
    rekey = dataflow._rekey

    def counting(item: Any) -> Any:
        kind = item[1].key.split(":", 1)[0]
        counts[kind] += 1
        counts[f"{kind} messages"] += len(item[1].messages)
        return rekey(item)

    dataflow._rekey = counting
    try:
        items = [("log", LogEvent(str(n), e)) for n, e in enumerate(events)]
        out: list[Any] = []
        flow = dataflow.build_flow(
            TestingSource(items, batch_size=epoch), TestingSink(out), RuleSettings()
        )
        run_in_process(flow, 1, epoch_interval=timedelta(0))
    finally:
        dataflow._rekey = rekey
    return counts, sum(len(batch) for _key, batch in out)


def report(name: str, events: list[dict[str, Any]], epoch: int) -> None:
    counts, outputs = count(events, epoch)
    n = len(events)
    print(f"{name}: {n:,} events, {outputs:,} outputs; per event:")
    for kind in ("touch", "line", "session", "sharer"):
        print(
            f"  {kind:8} keys woken {counts[kind] / n:.3f}, "
            f"messages {counts[f'{kind} messages'] / n:.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--epoch", type=int, default=2_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "log.jsonl")
        make_log(path, args.events)
        with open(path) as lines:
            mixed = [json.loads(line) for line in lines]
    report("mixed bench log", mixed, args.epoch)
    report("shop log, 5% of orders from a share", list(shop_log(args.events, 0.05)), args.epoch)


if __name__ == "__main__":
    main()
