"""What a keyed state's life costs: bytewax alone, and the live flows.

    .venv/bin/python -m bench.bench_key_life bytewax [--items 200000]
    .venv/bin/python -m bench.bench_key_life sessions [--sessions 100000]
    .venv/bin/python -m bench.bench_key_life idle-keys [--extra 0,30000,0,30000]

The live catch-up's steady state costs more per event than its first R (README,
Benchmarks). It could be the keys held (more of them live) or the keys woken (the
approvals and forgetting that start after the holding period and R). These tell
the two apart:

- bytewax: one `stateful_batch` step that only counts, with and without recovery.
  Items either go to 1,000 keys that live throughout, or each item wakes a key that
  is new (its first item) or ends (its second: the key is discarded).
- sessions: the live flows (one process, recovery on, default settings) over a log
  of `--sessions` session starts and a last event 40 days on, so every session is
  started and closed as idle (then forgotten): the wall-clock time per session
  from the first output to the last (`bench.live_run.run_live`), and the flows' CPU.
- idle-keys: the 0.2M bench log's catch-up with `--extra` more sessions started
  at its beginning. They close as idle at once and are held until R, and nothing
  wakes them within the log, so they add live keys and no traffic. Rates by fifth
  of the log, as `bench_scale catchup` prints them.

Nothing is asserted. Uses REDIS_URL, else 127.0.0.1:6379, else an embedded server.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulBatchLogic
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSource, run_main

from bench.bench_live_keys import Discard
from bench.bench_replay import make_log
from bench.bench_scale import DEFAULTS, run_live
from bench.common import scratch_redis

T0 = 1_700_000_000_000
DAY_MS = 86_400_000


class EndsAtTwo(StatefulBatchLogic[int, int, bytes]):
    """Counts its items; the key is discarded once it has had two."""

    def __init__(self, resume: bytes | None) -> None:
        self.n = pickle.loads(resume) if resume else 0

    def on_batch(self, values: list[int]) -> tuple[list[int], bool]:
        self.n += len(values)
        return [], self.n >= 2

    def snapshot(self) -> bytes:
        return pickle.dumps(self.n)


def _bytewax_rate(items: int, churn: bool, recovery: bool) -> float:
    """µs per item: to 1,000 lasting keys, or (`churn`) to keys made and ended."""
    if churn:  # every key's first item, then every key's second
        entries = [(f"k{i}", 1) for i in range(items // 2)] * 2
    else:
        entries = [(f"k{i % 1000}", 1) for i in range(items)]
    flow = Dataflow("key_life")
    stream = op.input("in", flow, TestingSource(entries, batch_size=2000))
    op.output("out", op.stateful_batch("count", stream, EndsAtTwo), Discard())
    with tempfile.TemporaryDirectory() as tmp:
        kwargs: dict[str, Any] = {"epoch_interval": timedelta(seconds=1)}
        if recovery:
            init_db_dir(Path(tmp), 1)
            kwargs["recovery_config"] = RecoveryConfig(tmp)
        started = time.perf_counter()
        run_main(flow, **kwargs)
        return (time.perf_counter() - started) / len(entries) * 1e6


def bytewax_alone(args: argparse.Namespace) -> None:
    for recovery in (False, True):
        lasting = _bytewax_rate(args.items, churn=False, recovery=recovery)
        churn = _bytewax_rate(args.items, churn=True, recovery=recovery)
        print(
            f"recovery {'on ' if recovery else 'off'}: {lasting:.2f} us per item to 1,000 "
            f"lasting keys; {churn:.2f} us per item that makes or ends a key",
            flush=True,
        )


def _session_start(session_id: str, ts: int) -> dict[str, Any]:
    return {
        "type": "session_start",
        "session_id": session_id,
        "ts": ts,
        "user_id": "u",
        "service_id": "svc",
        "tariff_id": "t0",
        "report_interval_ms": 10_000,
    }


def sessions(args: argparse.Namespace) -> None:
    n = args.sessions
    tariff = {"type": "tariff", "tariff_id": "t0", "ts": T0, "currency": "USD"}
    events = [{**tariff, "unit_ms": 1000, "price_minor": 3}]
    events += [_session_start(f"s{k}", T0 + 1 + k) for k in range(n)]
    share = {"type": "share", "share_id": "x", "item_id": "i", "sharer_id": "s"}
    events.append({**share, "ts": T0 + 40 * DAY_MS, "activity_url": "https://example.com/"})
    with scratch_redis() as (url, prefix), tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "sessions.jsonl")
        with open(log, "w") as out:
            out.writelines(json.dumps(event) + "\n" for event in events)
        r = run_live(url, prefix, tmp, log, DEFAULTS)
    print(
        f"{n:,} sessions started and closed as idle in {r['elapsed']:.1f} s (from the "
        f"first output to the last): {r['elapsed'] / n * 1e6:.0f} us per session; flows "
        f"{r['flows_cpu_us'] * r['events'] / n:.0f} us of CPU per session"
    )


def _with_idle_sessions(src: str, dst: str, extra: int) -> None:
    """`src` with `extra` session starts after its first lines (its tariffs)."""
    with open(src) as lines, open(dst, "w") as out:
        tariffs = [next(lines) for _ in range(3)]
        ts = json.loads(tariffs[0])["ts"]
        out.writelines(tariffs)
        for k in range(extra):
            out.write(json.dumps(_session_start(f"idle{k}", ts)) + "\n")
        out.writelines(lines)


def idle_keys(args: argparse.Namespace) -> None:
    for extra in (int(n) for n in args.extra.split(",")):
        with scratch_redis() as (url, prefix), tempfile.TemporaryDirectory() as tmp:
            log = os.path.join(tmp, "log.jsonl")
            make_log(log, 200_000)
            if extra:
                _with_idle_sessions(log, os.path.join(tmp, "idle.jsonl"), extra)
                log = os.path.join(tmp, "idle.jsonl")
            r = run_live(url, prefix, tmp, log, DEFAULTS)
        fifths = ", ".join(f"{rate / 1e3:,.1f}k" for rate in r["by_fifth"])
        print(
            f"{extra:>7,} idle sessions more: {r['rate']:,.0f} events/s over "
            f"{r['events']:,} events; flows {r['flows_cpu_us']:.1f} us per event; "
            f"by fifth {fifths}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="what", required=True)
    b = sub.add_parser("bytewax")
    b.add_argument("--items", type=int, default=200_000)
    b.set_defaults(func=bytewax_alone)
    s = sub.add_parser("sessions")
    s.add_argument("--sessions", type=int, default=100_000)
    s.set_defaults(func=sessions)
    i = sub.add_parser("idle-keys")
    i.add_argument("--extra", default="0,30000,0,30000")
    i.set_defaults(func=idle_keys)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
