"""Replay rates (bench_scale hotkey and ceiling): `billing replay`, the plain loop
over parsed events, and a bare bytewax flow over the same file; and the hot-key
and uniform logs."""

from __future__ import annotations

import io
import json
import time
from datetime import timedelta
from typing import Any

import orjson

from flows.file_io import parse_line
from flows.replay import replay
from state.config import RuleSettings
from state.engine import Engine


def hot_and_uniform_logs(path_hot: str, path_uniform: str, events: int) -> None:
    """Half scans then half orders, in both logs: in the hot one every scan and order
    is one buyer's of one item; in the uniform one they spread over 10,000 items and
    9,973 buyers."""
    scans, t0 = events // 2, 1_767_225_600_000

    def scan(n: int, item: str, buyer: str) -> dict[str, Any]:
        return {
            "type": "scan",
            "scan_id": f"c{n}",
            "ts": t0 + n,
            "share_id": "x",
            "item_id": item,
            "sharer_id": f"s{n % 50}",
            "scanner_id": buyer,
        }

    def order(n: int, item: str, buyer: str) -> dict[str, Any]:
        return {
            "type": "order",
            "order_id": f"o{n}",
            "ts": t0 + scans + n,
            "buyer_id": buyer,
            "currency": "USD",
            "lines": [{"item_id": item, "quantity": 1, "unit_price_minor": 1000}],
        }

    with open(path_hot, "w") as hot, open(path_uniform, "w") as uniform:
        for make, count in ((scan, scans), (order, events - scans)):
            for n in range(count):
                hot.write(json.dumps(make(n, "hot", "b")) + "\n")
                uniform.write(json.dumps(make(n, f"i{n % 10_000}", f"b{n % 9_973}")) + "\n")


def replay_rate(log: str, rules: RuleSettings) -> tuple[float, int]:
    out = io.StringIO()
    started = time.perf_counter()
    status = replay(log, out, rules)
    return status.events / (time.perf_counter() - started), out.getvalue().count("\n")


def plain_loop_rate(log: str, rules: RuleSettings) -> float:
    """The plain loop over events parsed beforehand (the parse is not timed)."""
    with open(log, "rb") as lines:
        entries = [p for n, line in enumerate(lines, 1) if (p := parse_line(line, n))]
    engine = Engine(rules)
    started = time.perf_counter()
    for i in range(0, len(entries), 1000):
        engine.on_batch(entries[i : i + 1000])
    engine.finish()
    return len(entries) / (time.perf_counter() - started)


def parse_rate(log: str) -> float:
    """Reading and validating the log's lines into events (`flows.file_io.parse_line`,
    what a replay does to each line), with nothing after it."""
    with open(log, "rb") as lines:
        raw = lines.readlines()
    started = time.perf_counter()
    parsed = [p for n, line in enumerate(raw, 1) if (p := parse_line(line, n))]
    return len(parsed) / (time.perf_counter() - started)


def ceiling_rate(log: str) -> float:
    """Bare bytewax: JSON lines in, one keyed stateful step, JSON lines out."""
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
    from bytewax.operators import StatefulBatchLogic
    from bytewax.outputs import DynamicSink, StatelessSinkPartition
    from bytewax.testing import run_main

    class Part(StatefulSourcePartition[tuple[str, Any], None]):
        def __init__(self) -> None:
            self.f = open(log, "rb")  # noqa: SIM115 - closed in close()

        def next_batch(self) -> list[tuple[str, Any]]:
            lines = self.f.readlines(1 << 20)
            if not lines:
                raise StopIteration()
            out = []
            for line in lines:
                event = orjson.loads(line)
                out.append((event.get("session_id") or event["type"], event))
            return out

        def snapshot(self) -> None:
            return None

        def close(self) -> None:
            self.f.close()

    class Source(FixedPartitionedSource[tuple[str, Any], None]):
        def list_parts(self) -> list[str]:
            return ["log"]

        def build_part(self, step_id: str, for_part: str, resume: None) -> Part:
            return Part()

    class Count(StatefulBatchLogic[Any, Any, int]):
        def __init__(self, resume: int | None) -> None:
            self.n = resume or 0

        def on_batch(self, values: list[Any]) -> tuple[list[Any], bool]:
            self.n += len(values)
            return values, False

        def snapshot(self) -> int:
            return self.n

    class Writer(StatelessSinkPartition[Any]):
        def __init__(self) -> None:
            self.out = io.BytesIO()

        def write_batch(self, items: list[Any]) -> None:
            self.out.write(b"".join(orjson.dumps(v) + b"\n" for _k, v in items))

    class Sink(DynamicSink[Any]):
        def build(self, step_id: str, worker_index: int, worker_count: int) -> Writer:
            return Writer()

    flow = Dataflow("ceiling")
    stream = op.input("in", flow, Source())
    counted = op.stateful_batch("count", stream, Count)
    op.output("out", counted, Sink())
    events = sum(1 for _ in open(log, "rb"))  # noqa: SIM115
    started = time.perf_counter()
    run_main(flow, epoch_interval=timedelta(seconds=10))
    return events / (time.perf_counter() - started)


def rules_cost_by_chunk(log: str, rules: RuleSettings, chunk: int, runs: int) -> list[float]:
    """The rules alone (the plain loop over events parsed beforehand), µs per event for
    each whole `chunk` events of the log, the fastest of `runs` runs: the machine's speed
    drifts by tens of percent over seconds, and the fastest run of a chunk is the one
    least slowed, so chunks early and late in the log compare."""
    with open(log, "rb") as lines:
        entries = [p for n, line in enumerate(lines, 1) if (p := parse_line(line, n))]
    best: list[float] = []
    for _ in range(runs):
        engine = Engine(rules)
        costs = []
        for start in range(0, len(entries) - chunk + 1, chunk):  # whole chunks only
            began = time.perf_counter()
            for i in range(start, start + chunk, 1000):
                engine.on_batch(entries[i : min(i + 1000, start + chunk)])
            costs.append((time.perf_counter() - began) / chunk * 1e6)
        best = [min(pair) for pair in zip(best, costs, strict=True)] if best else costs
    return best
