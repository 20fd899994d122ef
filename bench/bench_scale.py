"""The engine at scale (issue 7): figures printed, not asserted.

    .venv/bin/python -m bench.bench_scale catchup [--sizes 200000,1000000,3000000] [--huge]
        [--no-recovery] [--ballast-mb N]
    .venv/bin/python -m bench.bench_scale hotkey [--events 200000]
    .venv/bin/python -m bench.bench_scale ceiling [--events 1000000]
    .venv/bin/python -m bench.bench_scale processes [--events 600000] [--counts 2,1]

- catchup: live catch-up (a log loaded into the input stream, then `billing flows`,
  one process, recovery on, default settings) over logs of growing size with
  unique order and scan ids; events/s, snapshot bytes per epoch, the flows' RSS
  and Redis's memory after each. `--huge` adds 10M events.
- hotkey: replay of a log where one buyer scans one item 100k times inside the
  window and then orders it, against a uniform log of the same size.
- ceiling: replay of the mixed log at default settings, beside a bare bytewax flow
  (JSON in, one stateful step, JSON out) over the same file, in the same run.
- processes: live catch-up with `--processes 1` and `--processes 2`, with the CPU
  each event cost the flows and Redis.

Uses REDIS_URL, else 127.0.0.1:6379, else an embedded server; cleans its keys up.
"""

from __future__ import annotations

import argparse
import bisect
import io
import json
import os
import statistics
import tempfile
import time
from array import array
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import orjson

from bench.bench_replay import make_log
from bench.common import scratch_redis, stop_group
from billing.keys import Keys
from billing.redis_runtime import client
from flows.file_io import parse_line
from flows.replay import replay
from harness.live import append_positioned, flows_env, start_flows, with_stream_ids
from harness.proc_stats import cpu_seconds, redis_cpu_seconds, rss_mb
from state.config import RuleSettings
from state.engine import Engine
from state.messages import LogEvent

P = TypeVar("P")  # a sampled point of a run (bench_scale.run_live)

DEFAULTS = RuleSettings()


def _entries(path: str) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as lines:
        for n, line in enumerate(lines, 1):
            parsed = parse_line(line, n)
            if parsed is not None and hasattr(parsed, "event"):
                yield parsed.event


def _id_number(entry_id: str) -> int:
    """A stream id as one sortable int (ms, then the sequence, which stays < 10^6 here)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms) * 1_000_000 + int(seq or 0)


def load_stream(
    conn: Any,
    keys: Keys,
    path: str,
    rules: RuleSettings,
    ids: array[int] | None = None,
    made: list[tuple[int, int]] | None = None,
) -> tuple[int, int, int]:
    """Append the log to the input stream; return (events, outputs the engine makes,
    the log's span in ms). With `ids`, also collect every entry id, to tell later how
    far the flows are; with `made`, (events, outputs) so far after each chunk."""
    engine = Engine(rules)
    events = outputs = 0
    first_ts: int | None = None
    chunk: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal outputs
        positioned = with_stream_ids(chunk)
        if ids is not None:
            ids.extend(_id_number(p) for p, _ in positioned)
        append_positioned(conn, keys, positioned)
        outputs += len(engine.on_batch([LogEvent(p, e) for p, e in positioned]))
        if made is not None:
            made.append((events, outputs))
        chunk.clear()

    last_ts = -1
    for event in _entries(path):
        # with_stream_ids numbers equal ts within one chunk; keep a ts run in one chunk.
        if len(chunk) >= 10_000 and event["ts"] != last_ts:
            flush()
        chunk.append(event)
        last_ts = event["ts"]
        first_ts = last_ts if first_ts is None else first_ts
        events += 1
    if chunk:
        flush()
    return events, outputs + len(engine.finish()), last_ts - (first_ts or last_ts)


def run_live(
    url: str,
    prefix: str,
    tmp: str,
    log: str,
    rules: RuleSettings,
    processes: int = 1,
    recovery: bool = True,
) -> dict[str, Any]:
    conn = client(url)
    keys = Keys(prefix)
    ids: array[int] = array("q")
    made: list[tuple[int, int]] = []
    events, expected, span_ms = load_stream(conn, keys, log, rules, ids, made)
    env = flows_env(url, prefix, Path(tmp) / f"rec-{prefix}", rules, 10**13, epoch_ms=1000)
    if not recovery:
        env.pop("BILLING_RECOVERY_DIR")
    env["BILLING_TRIM_INPUT"] = "false"  # the log is historical: keep it for the count
    proc = start_flows(env, "--processes", str(processes))
    curve: list[tuple[float, int]] = []  # (seconds, events the source has read)
    cpu_curve: list[tuple[int, float, float]] = []  # (events read, flows CPU s, Redis CPU s)
    try:
        first = None
        polls = 0
        while True:
            done = sum(int(conn.xlen(s)) for s in keys.output_streams)
            if done and first is None:
                first = time.perf_counter()
                cpu0 = cpu_seconds(proc.pid), redis_cpu_seconds(conn)
            position = conn.get(keys.flows_position)
            if first is not None and position:
                read = bisect.bisect_right(ids, _id_number(str(position)))
                curve.append((time.perf_counter() - first, read))
                polls += 1
                if polls % 20 == 1:  # about once a second: reading /proc is not free
                    cpu_curve.append((read, cpu_seconds(proc.pid), redis_cpu_seconds(conn)))
            if done >= expected:
                break
            if proc.poll() is not None:
                raise SystemExit("flows exited early")
            time.sleep(0.05)
        elapsed = time.perf_counter() - (first or time.perf_counter())
        flows_cpu, redis_cpu = cpu_seconds(proc.pid) - cpu0[0], redis_cpu_seconds(conn) - cpu0[1]
        time.sleep(1.5)  # one more heartbeat publishes the last snapshot counts
        rss = rss_mb(proc.pid)
    finally:
        stop_group(proc)
    snaps = {k: int(v) for k, v in conn.hgetall(keys.stats("snapshots")).items()}
    epochs = max(1, snaps.get("epochs", 0))
    return {
        "events": events,
        "span_days": span_ms / 86_400_000,
        "rate": events / elapsed,
        "elapsed": elapsed,
        "snap_bytes_per_epoch": snaps.get("bytes", 0) / epochs,
        "snap_keys_per_epoch": snaps.get("keys", 0) / epochs,
        "rss_mb": rss,
        # CPU per event over the same span as the rate (the machine's noise moves the
        # rate by tens of percent from run to run; the work per event moves less).
        "flows_cpu_us": flows_cpu / events * 1e6,
        "redis_cpu_us": redis_cpu / events * 1e6,
        "machine_busy": (flows_cpu + redis_cpu) / max(elapsed, 1e-9),
        "redis_mb": int(conn.info("memory")["used_memory"]) / 2**20,
        "by_fifth": _rates_by_fifth(curve, events),
        "outputs_by_fifth": _outputs_by_fifth(made, events, expected),
        "cpu_by_fifth": _cpu_by_fifth(cpu_curve, events),
    }


def _cpu_by_fifth(curve: list[tuple[int, float, float]], events: int) -> list[tuple[float, float]]:
    """(flows, Redis) CPU µs per event while the source read each fifth of the log:
    says which side a rate that falls along the log comes from."""
    result = []
    for ends in _fifth_ends(curve, events, lambda c: c[0]):
        if ends is None or ends[1][0] == ends[0][0]:
            result.append((float("nan"), float("nan")))
            continue
        (n0, f0, r0), (n1, f1, r1) = ends
        result.append(((f1 - f0) / (n1 - n0) * 1e6, (r1 - r0) / (n1 - n0) * 1e6))
    return result


def _fifth_ends(points: list[P], events: int, read: Callable[[P], int]) -> list[tuple[P, P] | None]:
    """For each fifth of the log, the first and last of the sampled `points` taken
    while the source read inside it (`read`: the events read at a point), or None
    if fewer than two were."""
    result: list[tuple[P, P] | None] = []
    for k in range(5):
        lo, hi = events * k // 5, events * (k + 1) // 5
        inside = [p for p in points if lo <= read(p) <= hi]
        result.append((inside[0], inside[-1]) if len(inside) >= 2 else None)
    return result


def _outputs_by_fifth(made: list[tuple[int, int]], events: int, total: int) -> list[float]:
    """Outputs per event in each fifth of the log (the work an event brings changes
    along a log: attributions grow as the window fills, approvals start after the
    holding period, forgetting after R)."""
    made = [*made, (events, total)]
    result = []
    for k in range(5):
        lo, hi = events * k // 5, events * (k + 1) // 5
        start = min(made, key=lambda m: abs(m[0] - lo))
        end = min(made, key=lambda m: abs(m[0] - hi))
        result.append((end[1] - start[1]) / max(1, end[0] - start[0]))
    return result


def _rates_by_fifth(curve: list[tuple[float, int]], events: int) -> list[float]:
    """Events/s while the source read each fifth of the log: a rate that falls from
    one fifth to the next is a cost that grows with the history behind it."""
    rates = []
    for ends in _fifth_ends(curve, events, lambda c: c[1]):
        if ends is None or ends[1][0] == ends[0][0]:
            rates.append(float("nan"))
            continue
        (t0, n0), (t1, n1) = ends
        rates.append((n1 - n0) / (t1 - t0))
    return rates


def _ballast(url: str, prefix: str, mb: int) -> None:
    """Fill Redis with `mb` MB of keys no one reads (under `prefix`, so cleaned up
    with it): tells whether Redis's size alone slows a run down. A catch-up writes
    facts and views whose TTLs run on the wall clock, so Redis holds the whole log's
    facts after it, and grows with the log where the engine's state does not."""
    conn = client(url)
    start = int(conn.info("memory")["used_memory"])
    value, n = b"x" * 100, 0
    while int(conn.info("memory")["used_memory"]) - start < mb * 2**20:
        pipe = conn.pipeline(transaction=False)
        for _ in range(10_000):
            pipe.set(f"{prefix}ballast:{n}", value)
            n += 1
        pipe.execute()
    conn.close()


def catchup(args: argparse.Namespace) -> None:
    sizes = [int(s) for s in args.sizes.split(",")] + ([10_000_000] if args.huge else [])
    if len(sizes) > 1:
        # This machine's speed drifts by tens of percent over minutes (measured: the
        # same 0.2M run at 13.5k and 19k events/s within the hour), so the smallest
        # log runs again after the largest, and the ratio uses both runs' mean.
        sizes.append(sizes[0])
    rates: dict[int, list[float]] = {}
    for size in sizes:
        with scratch_redis() as (url, prefix), tempfile.TemporaryDirectory() as tmp:
            log = os.path.join(tmp, "log.jsonl")
            make_log(log, size)
            if args.ballast_mb:
                _ballast(url, prefix, args.ballast_mb)
            r = run_live(url, prefix, tmp, log, DEFAULTS, recovery=not args.no_recovery)
            rates.setdefault(size, []).append(r["rate"])
            print(
                f"catch-up {r['events']:>9,} events: {r['rate']:>8,.0f} events/s "
                f"({r['elapsed']:.1f} s); snapshot {r['snap_bytes_per_epoch'] / 1e3:,.1f} kB "
                f"in {r['snap_keys_per_epoch']:,.0f} keys per epoch; flows RSS "
                f"{r['rss_mb']:,.0f} MB; Redis {r['redis_mb']:,.0f} MB",
                flush=True,
            )
            fifths = ", ".join(f"{rate / 1e3:,.1f}k" for rate in r["by_fifth"])
            print(f"  events/s by fifth of the log: {fifths}", flush=True)
            per_event = ", ".join(f"{n:.2f}" for n in r["outputs_by_fifth"])
            print(f"  outputs per event by fifth: {per_event}", flush=True)
            cpu = ", ".join(f"{f:.0f}+{r:.0f}" for f, r in r["cpu_by_fifth"])
            print(
                f"  CPU us per event, flows+Redis: {r['flows_cpu_us']:.0f}+"
                f"{r['redis_cpu_us']:.0f}; by fifth: {cpu}",
                flush=True,
            )
            print(
                f"  the log spans {r['span_days']:,.1f} days: approvals from day "
                f"{DEFAULTS.holding_period_ms / 86_400_000:.0f}, forgetting from day "
                f"{DEFAULTS.retention_ms / 86_400_000:.0f} (R) on",
                flush=True,
            )
    if len(rates) > 1:
        small, big = rates[sizes[0]], rates[max(sizes)][0]
        mean = sum(small) / len(small)
        runs = ", ".join(f"{rate:,.0f}" for rate in small)
        print(f"largest / smallest rate: {big / mean:.2f} (target >= 0.9; smallest runs {runs})")
    distinct = sorted(rates)
    if len(distinct) > 2:
        # Both of the two largest logs run past R, so this one compares steady states.
        bigger, big = rates[distinct[-2]][0], rates[distinct[-1]][0]
        print(f"largest / second largest rate: {big / bigger:.2f} (both past the first R)")


def _hot_and_uniform(path_hot: str, path_uniform: str, events: int) -> None:
    scans, t0 = events // 2, 1_767_225_600_000
    with open(path_hot, "w") as hot, open(path_uniform, "w") as uniform:
        for n in range(scans):
            ts = t0 + n
            for out, item, buyer in (
                (hot, "hot", "b"),
                (uniform, f"i{n % 10_000}", f"b{n % 9_973}"),
            ):
                out.write(
                    json.dumps(
                        {
                            "type": "scan",
                            "scan_id": f"c{n}",
                            "ts": ts,
                            "share_id": "x",
                            "item_id": item,
                            "sharer_id": f"s{n % 50}",
                            "scanner_id": buyer,
                        }
                    )
                    + "\n"
                )
        for n in range(events - scans):
            ts = t0 + scans + n
            for out, item, buyer in (
                (hot, "hot", "b"),
                (uniform, f"i{n % 10_000}", f"b{n % 9_973}"),
            ):
                out.write(
                    json.dumps(
                        {
                            "type": "order",
                            "order_id": f"o{n}",
                            "ts": ts,
                            "buyer_id": buyer,
                            "currency": "USD",
                            "lines": [{"item_id": item, "quantity": 1, "unit_price_minor": 1000}],
                        }
                    )
                    + "\n"
                )


def _replay_rate(log: str, rules: RuleSettings) -> tuple[float, int]:
    out = io.StringIO()
    started = time.perf_counter()
    status = replay(log, out, rules)
    return status.events / (time.perf_counter() - started), out.getvalue().count("\n")


def _plain_loop_rate(log: str, rules: RuleSettings) -> float:
    """The plain loop over events parsed beforehand (the parse is not timed)."""
    with open(log, "rb") as lines:
        entries = [p for n, line in enumerate(lines, 1) if (p := parse_line(line, n))]
    engine = Engine(rules)
    started = time.perf_counter()
    for i in range(0, len(entries), 1000):
        engine.on_batch(entries[i : i + 1000])
    engine.finish()
    return len(entries) / (time.perf_counter() - started)


def hotkey(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        hot, uniform = os.path.join(tmp, "hot.jsonl"), os.path.join(tmp, "uniform.jsonl")
        _hot_and_uniform(hot, uniform, args.events)
        rate_u, out_u = _replay_rate(uniform, DEFAULTS)
        rate_h, out_h = _replay_rate(hot, DEFAULTS)
        print(f"uniform ({args.events:,} events, {out_u:,} outputs): {rate_u:,.0f} events/s")
        print(
            f"hot key (one item, one buyer, {args.events // 2:,} scans in the window, then "
            f"orders; {out_h:,} outputs): {rate_h:,.0f} events/s"
        )
        print(f"hot / uniform: {rate_h / rate_u:.2f} (target >= 0.8)")


def _ceiling_rate(log: str) -> float:
    """Bare bytewax: JSON lines in, one keyed stateful step, JSON lines out."""
    from datetime import timedelta

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


def ceiling(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "log.jsonl")
        make_log(log, args.events)
        bare = _ceiling_rate(log)
        rate, outputs = _replay_rate(log, DEFAULTS)
        loop = _plain_loop_rate(log, DEFAULTS)
        print(f"bare bytewax JSON -> stateful -> JSON: {bare:,.0f} events/s")
        print(f"billing replay, default settings ({outputs:,} outputs): {rate:,.0f} events/s")
        print(f"replay / ceiling: {rate / bare:.2f} (target >= 0.7)")
        # The rules alone, with no parsing, no dataflow and no output encoding: what
        # any dataflow around them could reach at best.
        print(f"the rules alone (state.engine, parsed events): {loop:,.0f} events/s")
        print(f"rules alone / ceiling: {loop / bare:.2f}")


def processes(args: argparse.Namespace) -> None:
    rates: dict[int, list[float]] = {}
    # --counts 2,1 runs the two processes first, to tell a machine that warms up over
    # the first run from a real difference. --repeat runs the pair again, alternated:
    # this machine's speed drifts by a quarter between runs, so one pair proves little.
    counts = [int(c) for c in args.counts.split(",")]
    for _ in range(args.repeat):
        for count in counts:
            with scratch_redis() as (url, prefix), tempfile.TemporaryDirectory() as tmp:
                log = os.path.join(tmp, "log.jsonl")
                make_log(log, args.events)
                r = run_live(url, prefix, tmp, log, DEFAULTS, processes=count)
                rates.setdefault(count, []).append(r["rate"])
                print(
                    f"--processes {count}: {r['rate']:,.0f} events/s ({r['events']:,} events, "
                    f"{r['elapsed']:.1f} s); CPU per event: flows {r['flows_cpu_us']:.0f} us, "
                    f"Redis {r['redis_cpu_us']:.0f} us; {r['machine_busy']:.0%} of one core in use",
                    flush=True,
                )
    if 1 in rates and 2 in rates:
        pairs = [two / one for one, two in zip(rates[1], rates[2], strict=True)]
        print("2 / 1 processes, each pair: " + ", ".join(f"{p:.2f}" for p in pairs))
        ratio = statistics.median(rates[2]) / statistics.median(rates[1])
        print(f"2 / 1 processes, medians: {ratio:.2f} (target >= 1.3)")


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="what", required=True)
    c = sub.add_parser("catchup")
    c.add_argument("--sizes", default="200000,1000000,3000000")
    c.add_argument("--huge", action="store_true", help="also 10M events")
    c.add_argument("--no-recovery", action="store_true", help="run the flows without recovery")
    c.add_argument(
        "--ballast-mb",
        type=int,
        default=0,
        help="fill Redis with this many MB of keys nothing reads before each run",
    )
    c.set_defaults(func=catchup)
    h = sub.add_parser("hotkey")
    h.add_argument("--events", type=int, default=200_000)
    h.set_defaults(func=hotkey)
    e = sub.add_parser("ceiling")
    e.add_argument("--events", type=int, default=1_000_000)
    e.set_defaults(func=ceiling)
    p = sub.add_parser("processes")
    p.add_argument("--events", type=int, default=600_000)
    p.add_argument(
        "--counts",
        choices=["1,2", "2,1", "1", "2"],
        default="1,2",
        help="the order to run 1 and 2 processes in",
    )
    p.add_argument("--repeat", type=int, default=1, help="run the counts this many times")
    p.set_defaults(func=processes)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
