"""Soak (issue 10): a constant input rate for minutes; do memory and lag stay flat?

    .venv/bin/python -m bench.bench_soak [--rate 2500] [--seconds 300]
        [--retention-ms 60000] [--margin-ms 10000] [--workers 2]

Starts `billing flows` (one process, recovery on) and appends a live mix to the
input stream at a constant rate (scans with fresh ids, orders naming recent scans,
refunds, payouts, session starts and their segments on the server's clock, in
batches every 100 ms). Every 5 s it samples the flows' RSS, Redis's used memory,
the recovery directory's size and the flow lag (newest input `ts` minus the newest
`ts` the flows have read). It prints the samples and, for the second half of the
run (after the first R of log has filled), the slope of each per million events:
bounded state means slopes near 0 once R has passed, and the lag must not grow.
A short `--retention-ms` (default 60 s) and `--margin-ms` (10 s) make R and the
margin pass inside the run. Uses REDIS_URL,
else 127.0.0.1:6379, else an embedded server; cleans its keys up.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.common import scratch_redis, stop_group
from billing.keys import Keys
from billing.redis_runtime import client
from billing.stream_ids import ts_of
from harness.live import flows_env
from harness.proc_stats import rss_mb
from state.config import RuleSettings


class LiveMix:
    """Events as the ingest API would append them now (no `ts`: the entry id is it)."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.n = 0
        self.scans: list[tuple[str, str, str]] = []  # (scan id, item, scanner), recent
        self.orders: list[str] = []
        self.sessions: dict[str, list[int]] = {}  # id -> [next seq, covered to]

    def preamble(self) -> list[dict[str, Any]]:
        return [
            {
                "type": "commission_rule",
                "rule_id": "r",
                "kind": "percent",
                "bps": 500,
                "active": True,
            },
            {
                "type": "tariff",
                "tariff_id": "t",
                "currency": "EUR",
                "unit_ms": 1000,
                "price_minor": 3,
            },
        ]

    def batch(self, count: int, now_ms: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for _ in range(count):
            self.n += 1
            n, roll = self.n, self.rng.random()
            item, person = f"i{self.rng.randrange(500)}", f"u{self.rng.randrange(20_000)}"
            if roll < 0.35 or not self.scans:
                scan = (f"sc{n}", item, person)
                self.scans = [*self.scans[-999:], scan]
                out.append(
                    {
                        "type": "scan",
                        "scan_id": scan[0],
                        "share_id": f"sh{item}",
                        "item_id": item,
                        "sharer_id": f"s{item}",
                        "scanner_id": person,
                    }
                )
            elif roll < 0.60:
                scan_id, item, buyer = self.rng.choice(self.scans)
                self.orders = [*self.orders[-999:], f"o{n}"]
                out.append(
                    {
                        "type": "order",
                        "order_id": f"o{n}",
                        "buyer_id": buyer,
                        "currency": "USD",
                        "scan_id": scan_id,
                        "lines": [
                            {
                                "item_id": item,
                                "quantity": 1,
                                "unit_price_minor": self.rng.randrange(100, 9999),
                            }
                        ],
                    }
                )
            elif roll < 0.65 and self.orders:
                out.append(
                    {
                        "type": "refund",
                        "refund_id": f"f{n}",
                        "order_id": self.rng.choice(self.orders),
                    }
                )
            elif roll < 0.67:
                out.append(
                    {
                        "type": "payout",
                        "payout_id": f"p{n}",
                        "sharer_id": f"s{item}",
                        "currency": "USD",
                    }
                )
            elif roll < 0.72 or not self.sessions:
                self.sessions[f"ss{n}"] = [0, now_ms]
                out.append(
                    {
                        "type": "session_start",
                        "session_id": f"ss{n}",
                        "user_id": person,
                        "service_id": "svc",
                        "tariff_id": "t",
                        "report_interval_ms": 10_000,
                    }
                )
            else:
                sid = self.rng.choice(list(self.sessions))
                seq, covered = self.sessions[sid]
                end = roll > 0.95  # as many ends as starts: a steady number open
                out.append(
                    {
                        "type": "segment",
                        "session_id": sid,
                        "seq": seq,
                        "start_ms": covered,
                        "end_ms": max(now_ms, covered + 1),
                        "end": end,
                    }
                )
                if end:
                    del self.sessions[sid]
                else:
                    self.sessions[sid] = [seq + 1, max(now_ms, covered + 1)]
        return out


def _dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def _slope(xs: list[float], ys: list[float]) -> float:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    return 0.0 if var == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=2500, help="events per second")
    parser.add_argument("--seconds", type=int, default=300)
    parser.add_argument("--retention-ms", type=int, default=60_000)
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="billing flows --workers (2, as docker-compose.yml runs it)",
    )
    parser.add_argument(
        "--margin-ms",
        type=int,
        default=10_000,
        help="how long facts, marks and outputs outlive R (default 1 day live)",
    )
    args = parser.parse_args()
    rules = RuleSettings(
        retention_ms=args.retention_ms,
        attribution_window_ms=30_000,
        holding_period_ms=20_000,
        late_grace_ms=10_000,
    )
    mix = LiveMix()
    with scratch_redis() as (url, prefix), tempfile.TemporaryDirectory() as tmp:
        conn, keys = client(url), Keys(prefix)
        recovery = Path(tmp) / "rec"
        env = flows_env(url, prefix, recovery, rules, 2000, epoch_ms=1000)
        env["BILLING_FACTS_TTL_MARGIN_MS"] = str(args.margin_ms)
        # Statements are a finance record kept for their own retention (400 days by
        # default); here they keep R, so that the run shows every store bounded.
        env["BILLING_STATEMENT_RETENTION_MS"] = str(args.retention_ms)
        flows_log = open(Path(tmp) / "flows.log", "wb")  # noqa: SIM115 (closed below)
        proc = subprocess.Popen(
            [sys.executable, "-m", "programs.cli", "flows", "--workers", str(args.workers)],
            env=env,
            start_new_session=True,
            stdout=flows_log,
            stderr=subprocess.STDOUT,
        )
        samples: list[dict[str, float]] = []
        sent = 0
        try:
            for event in mix.preamble():
                conn.xadd(keys.events, {"data": orjson.dumps(event).decode()})
            start = time.monotonic()
            next_sample = start + 5
            tick = 0
            while (now := time.monotonic()) < start + args.seconds:
                seconds, micros = conn.time()
                batch = mix.batch(args.rate // 10, seconds * 1000 + micros // 1000)
                pipe = conn.pipeline(transaction=False)
                for event in batch:
                    pipe.xadd(keys.events, {"data": orjson.dumps(event).decode()})
                pipe.execute()
                sent += len(batch)
                if proc.poll() is not None:
                    raise SystemExit("flows exited")
                if now >= next_sample:
                    newest = conn.xrevrange(keys.events, count=1)
                    position = conn.get(keys.flows_position) or "0-0"
                    lag = ts_of(str(newest[0][0])) - ts_of(str(position)) if newest else 0
                    samples.append(
                        {
                            "t": now - start,
                            "events": sent,
                            "rss_mb": rss_mb(proc.pid),
                            "redis_mb": int(conn.info("memory")["used_memory"]) / 2**20,
                            "keys": conn.dbsize(),
                            "recovery_mb": _dir_mb(recovery),
                            "lag_ms": lag,
                        }
                    )
                    s = samples[-1]
                    print(
                        f"t={s['t']:6.1f}s events={sent:>9,} rss={s['rss_mb']:7.1f} MB "
                        f"redis={s['redis_mb']:7.1f} MB recovery={s['recovery_mb']:6.1f} MB "
                        f"keys={s['keys']:>8,} lag={lag:>6} ms",
                        flush=True,
                    )
                    next_sample += 5
                tick += 1
                time.sleep(max(0.0, start + tick * 0.1 - time.monotonic()))
        finally:
            stop_group(proc)
            conn.close()
            flows_log.close()
            output = (Path(tmp) / "flows.log").read_text(errors="replace")
            if "Traceback" in output or "panicked" in output:
                print("flows reported errors:\n" + output[-3000:])
    elapsed = samples[-1]["t"] if samples else 0.0
    print(
        f"\nsent {sent:,} events in {elapsed:.0f} s = {sent / max(elapsed, 1):,.0f} events/s;"
        f" R = {args.retention_ms} ms"
    )
    half = [s for s in samples if s["t"] >= elapsed / 2]
    if len(half) >= 2:
        millions = [s["events"] / 1e6 for s in half]
        print("slopes per million events, second half of the run:")
        for name, unit in (
            ("rss_mb", "MB"),
            ("redis_mb", "MB"),
            ("keys", "keys"),
            ("recovery_mb", "MB"),
            ("lag_ms", "ms"),
        ):
            print(
                f"  {name:12} {_slope(millions, [s[name] for s in half]):+10.2f} {unit}"
                f"   (last {half[-1][name]:.1f})"
            )


if __name__ == "__main__":
    main()
