"""bytewax alone: does a stateful step's cost per item grow with the keys it holds?

    .venv/bin/python -m bench.bench_live_keys [--live 1000,30000,150000] [--touched N]

The live catch-up's CPU per event rises along the first R of the log and then stays
(README, Benchmarks), and a log whose R is short stays flat. This measures the
part bytewax itself can have in that: one `stateful_batch` step whose logic only
counts, first given `live` keys (each kept), then `--items` items to keys drawn at
random among them, no recovery, no Python work per item but one `on_batch` call
per key and batch. It prints the items/s of the second phase and the `on_batch`
calls per item (a batch of `--batch` items over few keys makes fewer calls, so
compare rows with about the same calls per item). With `--touched N` the items go
to N of the keys only, and the rest are held but never woken: that tells keys held
from keys worked on. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Iterator
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, run_main

calls = [0]


class Count(StatefulBatchLogic[int, int, int]):
    def __init__(self, resume: int | None) -> None:
        self.n = resume or 0

    def on_batch(self, values: list[int]) -> tuple[list[int], bool]:
        calls[0] += 1
        self.n += len(values)
        return [], False

    def snapshot(self) -> int:
        return self.n


class _Discard(StatelessSinkPartition[Any]):
    def write_batch(self, items: list[Any]) -> None:
        pass


class Discard(DynamicSink[Any]):
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Discard:
        return _Discard()


def measure(live: int, items: int, batch: int, touched: int | None) -> tuple[float, float]:
    """(items/s, on_batch calls per item) over the items to random live keys (among
    the first `touched` of them only, if given: the others are held, never woken)."""
    marks: dict[str, float] = {}

    def entries() -> Iterator[tuple[str, int]]:
        for k in range(live):
            yield f"key{k}", 1
        marks["start"] = time.perf_counter()
        calls[0] = 0
        rnd = random.Random(1)
        among = live if touched is None else min(touched, live)
        for _ in range(items):
            yield f"key{rnd.randrange(among)}", 1

    flow = Dataflow("live_keys")
    stream = op.input("in", flow, TestingSource(entries(), batch_size=batch))
    op.output("out", op.stateful_batch("count", stream, Count), Discard())
    run_main(flow)
    return items / (time.perf_counter() - marks["start"]), calls[0] / items


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--live", default="1000,30000,150000")
    parser.add_argument("--items", type=int, default=2_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--touched", type=int, help="wake only this many of the keys")
    args = parser.parse_args()
    for live in (int(n) for n in args.live.split(",")):
        rate, per_item = measure(live, args.items, args.batch, args.touched)
        print(
            f"{live:>9,} live keys: {rate:>9,.0f} items/s, {per_item:.2f} on_batch calls "
            f"per item ({1e6 / rate:.2f} us per item)",
            flush=True,
        )


if __name__ == "__main__":
    main()
