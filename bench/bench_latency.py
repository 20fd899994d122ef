"""Latency from a segment POST to its usage update on the SSE stream, under load.

    .venv/bin/python -m bench.bench_latency [--rate 5000] [--seconds 20]

Starts `billing serve` and `billing flows` (fresh key prefix), drives background
segments through `POST /v1/events` at about `--rate` events/s, and 10 times a second
posts a probe segment and times until `/v1/stream` shows the probe session's usage
with that segment counted. Prints p50/p95/p99 and the rate actually reached.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import httpx

from bench.common import scratch_redis
from harness.server import free_port

KEY = "bench-key"


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "programs.cli", *args],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    with scratch_redis() as (url, prefix):
        run(url, prefix, args.rate, args.seconds)


def run(url: str, prefix: str, rate: int, seconds: float) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "REDIS_URL": url,
        "BILLING_KEY_PREFIX": prefix,
        "BILLING_API_KEYS": KEY,
        "BILLING_READ_KEYS": KEY,
        "BILLING_SHARE_KEYS": "k:s",
        "BILLING_WATERMARK_LAG_MS": "2000",
        "BILLING_REPORT_INTERVAL_MS": "1000",
        "BILLING_MAX_BODY_BYTES": "5000000",
    }
    procs = [
        _start(["serve", "--port", str(port), "--log-level", "warning"], env),
        _start(["flows"], env),
    ]
    http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    try:
        for _ in range(200):
            try:
                if http.get("/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        http.put("/v1/tariffs/t", json={"currency": "USD", "unit_ms": 1000, "price_minor": 1})
        sessions = [
            http.post(
                "/v1/sessions", json={"user_id": f"u{n}", "service_id": "s", "tariff_id": "t"}
            ).json()
            for n in range(50)
        ]
        probe = http.post(
            "/v1/sessions",
            json={"user_id": "probe", "service_id": "s", "tariff_id": "t", "session_id": "probe"},
        ).json()
        sent_at: dict[int, float] = {}
        latencies: list[float] = []
        stop = threading.Event()
        sent = [0]

        def load() -> None:
            seqs = [0] * len(sessions)
            batch = max(1, rate // 20)
            next_at = time.monotonic()
            while not stop.is_set():
                events: list[dict[str, Any]] = []
                for _ in range(batch):
                    n = len(events) % len(sessions)
                    s = sessions[n]
                    start = s["server_time_ms"] + seqs[n] * 10
                    events.append(
                        {
                            "type": "segment",
                            "session_id": s["session_id"],
                            "seq": seqs[n],
                            "start_ms": start,
                            "end_ms": start + 10,
                            "end": False,
                        }
                    )
                    seqs[n] += 1
                http.post("/v1/events", json={"events": events})
                sent[0] += len(events)
                next_at += 0.05
                time.sleep(max(0.0, next_at - time.monotonic()))

        def listen() -> None:
            with httpx.stream(
                "GET",
                f"{base}/v1/stream",
                params={"session_id": "probe", "type": "usage"},
                headers={"Authorization": f"Bearer {KEY}"},
                timeout=None,
            ) as resp:
                for line in resp.iter_lines():
                    if stop.is_set():
                        return
                    if line.startswith("data: "):
                        usage = json.loads(line[6:])
                        seq = usage["segments"] - 1
                        if seq in sent_at:
                            latencies.append(time.monotonic() - sent_at.pop(seq))

        threads = [
            threading.Thread(target=load, daemon=True),
            threading.Thread(target=listen, daemon=True),
        ]
        for thread in threads:
            thread.start()
        time.sleep(1)
        started, count0 = time.monotonic(), sent[0]
        seq = 0
        while time.monotonic() - started < seconds:
            start = probe["server_time_ms"] + seq * 10
            sent_at[seq] = time.monotonic()
            http.post(
                "/v1/sessions/probe/segments",
                json={"seq": seq, "start_ms": start, "end_ms": start + 10, "end": False},
            )
            seq += 1
            time.sleep(0.1)
        achieved = (sent[0] - count0) / (time.monotonic() - started)
        time.sleep(2)
        stop.set()
        latencies.sort()
        if not latencies:
            raise SystemExit("no probe came back")

        def pct(p: float) -> float:
            return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

        print(f"background load: {achieved:,.0f} events/s; probes: {len(latencies)}/{seq}")
        print(
            f"segment POST -> SSE usage: p50 {pct(0.5):.0f} ms, p95 {pct(0.95):.0f} ms, "
            f"p99 {pct(0.99):.0f} ms, max {latencies[-1] * 1000:.0f} ms"
        )
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)


if __name__ == "__main__":
    main()
