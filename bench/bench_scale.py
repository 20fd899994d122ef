"""The engine at scale (issue 7): figures printed, not asserted.

    .venv/bin/python -m bench.bench_scale catchup [--sizes 200000,1000000,3000000] [--huge]
        [--no-recovery] [--ballast-mb N] [--by-class] [--repeat N]
    .venv/bin/python -m bench.bench_scale hotkey [--events 200000]
    .venv/bin/python -m bench.bench_scale ceiling [--events 1000000]
    .venv/bin/python -m bench.bench_scale processes [--events 600000] [--counts 2,1]
    .venv/bin/python -m bench.bench_scale phases [--events 1000000] [--runs 5]

- catchup: live catch-up (a log loaded into the input stream, then `billing flows`,
  one process, recovery on, default settings) over logs of growing size with
  unique order and scan ids; events/s, snapshot bytes per epoch, the flows' RSS
  and Redis's memory after each. `--huge` adds 10M events; `--by-class` splits
  Redis's memory by class of key (bench.redis_classes).
- hotkey: replay of a log where one buyer scans one item 100k times inside the
  window and then orders it, against a uniform log of the same size.
- ceiling: replay of the mixed log at default settings, beside a bare bytewax flow
  (JSON in, one stateful step, JSON out) over the same file, in the same run; and the
  rules alone and parsing alone, whose sum bounds any replay from above.
- processes: live catch-up with `--processes 1` and `--processes 2`, with the CPU
  each event cost the flows and Redis.
- phases: the rules alone over the catch-up's log, µs per event for each 50k events
  (the fastest of several runs): what an event costs before approvals begin (day 30)
  and forgetting (day 35), against after, whatever the machine's drift.

Uses REDIS_URL, else 127.0.0.1:6379, else an embedded server; cleans its keys up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile

from bench.bench_replay import make_log
from bench.common import scratch_redis
from bench.live_run import ballast, run_live
from bench.redis_classes import print_by_class
from bench.replay_rates import (
    ceiling_rate,
    hot_and_uniform_logs,
    parse_rate,
    plain_loop_rate,
    replay_rate,
    rules_cost_by_chunk,
)
from billing.redis_runtime import client
from state.config import RuleSettings

DEFAULTS = RuleSettings()


def catchup(args: argparse.Namespace) -> None:
    sizes = [int(s) for s in args.sizes.split(",")] + ([10_000_000] if args.huge else [])
    if len(sizes) > 1:
        # This machine's speed drifts by tens of percent over minutes (measured: the
        # same 0.2M run at 13.5k and 19k events/s within the hour), so the smallest
        # log runs again after the largest, and the ratio uses both runs' mean.
        sizes.append(sizes[0])
    # One round proves little when the drift is as large as the gap to the target
    # (the same code gave 0.92, 0.69 and 0.73 within two hours): --repeat runs the
    # whole sequence again and says in how many rounds the target was met.
    ratios = []
    for round_ in range(1, args.repeat + 1):
        if args.repeat > 1:
            print(f"round {round_} of {args.repeat}", flush=True)
        ratio = _catchup_round(args, sizes)
        if ratio is not None:
            ratios.append(ratio)
    if len(ratios) > 1:
        met = sum(1 for r in ratios if r >= 0.9)
        each = ", ".join(f"{r:.2f}" for r in ratios)
        print(
            f"largest / smallest over {len(ratios)} rounds: {each}; median "
            f"{statistics.median(ratios):.2f}; target >= 0.9 met in {met} of {len(ratios)}"
        )


def _catchup_round(args: argparse.Namespace, sizes: list[int]) -> float | None:
    """One run of each size in `sizes`; the largest / smallest rate, if both ran."""
    rates: dict[int, list[float]] = {}
    for size in sizes:
        with scratch_redis() as (url, prefix), tempfile.TemporaryDirectory() as tmp:
            log = os.path.join(tmp, "log.jsonl")
            make_log(log, size)
            if args.ballast_mb:
                ballast(url, prefix, args.ballast_mb)
            r = run_live(url, prefix, tmp, log, DEFAULTS, recovery=not args.no_recovery)
            rates.setdefault(size, []).append(r["rate"])
            print(
                f"catch-up {r['events']:>9,} events: {r['rate']:>8,.0f} events/s "
                f"({r['elapsed']:.1f} s); snapshot {r['snap_bytes_per_epoch'] / 1e3:,.1f} kB "
                f"in {r['snap_keys_per_epoch']:,.0f} keys per epoch; flows RSS "
                f"{r['rss_mb']:,.0f} MB; recovery store {r['recovery_mb']:,.0f} MB; "
                f"Redis {r['redis_mb']:,.0f} MB",
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
            if args.by_class:
                print("  Redis by class of key:", flush=True)
                conn = client(url)
                print_by_class(conn, prefix)
                conn.close()
    distinct = sorted(rates)
    if len(distinct) > 2:
        # Both of the two largest logs run past R, so this one compares steady states.
        bigger, big = rates[distinct[-2]][0], rates[distinct[-1]][0]
        print(f"largest / second largest rate: {big / bigger:.2f} (both past the first R)")
    if len(rates) < 2:
        return None
    small, big = rates[sizes[0]], rates[max(sizes)][0]
    mean = sum(small) / len(small)
    runs = ", ".join(f"{rate:,.0f}" for rate in small)
    print(f"largest / smallest rate: {big / mean:.2f} (target >= 0.9; smallest runs {runs})")
    return big / mean


def hotkey(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        hot, uniform = os.path.join(tmp, "hot.jsonl"), os.path.join(tmp, "uniform.jsonl")
        hot_and_uniform_logs(hot, uniform, args.events)
        rate_u, out_u = replay_rate(uniform, DEFAULTS)
        rate_h, out_h = replay_rate(hot, DEFAULTS)
        print(f"uniform ({args.events:,} events, {out_u:,} outputs): {rate_u:,.0f} events/s")
        print(
            f"hot key (one item, one buyer, {args.events // 2:,} scans in the window, then "
            f"orders; {out_h:,} outputs): {rate_h:,.0f} events/s"
        )
        print(f"hot / uniform: {rate_h / rate_u:.2f} (target >= 0.8)")


def ceiling(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "log.jsonl")
        make_log(log, args.events)
        bare = ceiling_rate(log)
        rate, outputs = replay_rate(log, DEFAULTS)
        loop = plain_loop_rate(log, DEFAULTS)
        print(f"bare bytewax JSON -> stateful -> JSON: {bare:,.0f} events/s")
        print(f"billing replay, default settings ({outputs:,} outputs): {rate:,.0f} events/s")
        print(f"replay / ceiling: {rate / bare:.2f} (target >= 0.7)")
        # The rules alone, with no parsing, no dataflow and no output encoding: what
        # any dataflow around them could reach at best.
        print(f"the rules alone (state.engine, parsed events): {loop:,.0f} events/s")
        print(f"rules alone / ceiling: {loop / bare:.2f}")
        # Parsing is the one step of a replay besides the rules that no dataflow can
        # skip: parse and rules one after the other bound any replay from above.
        parsed = parse_rate(log)
        both = 1 / (1 / parsed + 1 / loop)
        print(f"parsing alone (flows.file_io.parse_line): {parsed:,.0f} events/s")
        print(
            f"parsing then the rules, no dataflow and no output: at most {both:,.0f} "
            f"events/s, {both / bare:.2f} of the ceiling"
        )


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


def phases(args: argparse.Namespace) -> None:
    chunk = 50_000
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "log.jsonl")
        make_log(log, args.events)
        costs = rules_cost_by_chunk(log, DEFAULTS, chunk, args.runs)
        with open(log, "rb") as lines:
            tss = [json.loads(line)["ts"] for n, line in enumerate(lines) if n % chunk == 0]
    starts = [(ts - tss[0]) / 86_400_000 for ts in tss]  # the day where each begins
    days, ends = starts[: len(costs)], [*starts[1:], float("inf")][: len(costs)]
    print(f"the rules alone, µs per event by {chunk:,} events (fastest of {args.runs} runs):")
    for n, (cost, day) in enumerate(zip(costs, days, strict=True)):
        print(f"  events {n * chunk:>9,}+ (from day {day:5.1f}): {cost:6.2f}")
    # Chunks wholly before the first approvals (day 30), against those past R (day 35).
    before = [c for c, end in zip(costs, ends, strict=True) if end <= 30]
    after = [c for c, day in zip(costs, days, strict=True) if day >= 35]
    if before and after:
        mean_b, mean_a = statistics.mean(before), statistics.mean(after)
        print(f"before day 30: {mean_b:.2f}; from day 35: {mean_a:.2f}; {mean_a / mean_b:.2f} x")


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="what", required=True)
    c = sub.add_parser("catchup")
    c.add_argument("--sizes", default="200000,1000000,3000000")
    c.add_argument("--huge", action="store_true", help="also 10M events")
    c.add_argument("--repeat", type=int, default=1, help="run the sizes this many times")
    c.add_argument("--no-recovery", action="store_true", help="run the flows without recovery")
    c.add_argument(
        "--ballast-mb",
        type=int,
        default=0,
        help="fill Redis with this many MB of keys nothing reads before each run",
    )
    c.add_argument(
        "--by-class", action="store_true", help="print Redis's memory by class of key after each"
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
    ph = sub.add_parser("phases")
    ph.add_argument("--events", type=int, default=1_000_000)
    ph.add_argument("--runs", type=int, default=5)
    ph.set_defaults(func=phases)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
