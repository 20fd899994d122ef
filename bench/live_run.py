"""One live catch-up measured (bench_scale, bench_live, bench_wakeups): a log loaded
into the input stream, then `billing flows` run until every output is written, with
the rate, the CPU per event and how both move along the log."""

from __future__ import annotations

import bisect
import time
from array import array
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from bench.common import stop_group
from billing.keys import Keys
from billing.redis_runtime import client
from flows.file_io import parse_line
from harness.live import append_positioned, flows_env, start_flows, with_stream_ids
from harness.proc_stats import cpu_seconds, redis_cpu_seconds, rss_mb
from state.config import RuleSettings
from state.engine import Engine
from state.messages import LogEvent

P = TypeVar("P")  # a sampled point of a run (run_live)


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
    recovery_dir = Path(tmp) / f"rec-{prefix}"
    env = flows_env(url, prefix, recovery_dir, rules, 10**13, epoch_ms=1000)
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
        # The recovery store is state too: its SQLite files (WAL included) at the end.
        recovery_mb = sum(f.stat().st_size for f in recovery_dir.glob("*") if f.is_file()) / 1e6
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
        "recovery_mb": recovery_mb,
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


def ballast(url: str, prefix: str, mb: int) -> None:
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
