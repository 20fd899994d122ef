"""Webhook delivery (issue 9): throughput, and latency at a steady rate.

    .venv/bin/python -m bench.bench_webhooks [--burst 5000] [--rate 1000] [--seconds 10]
        [--replicas 1]

Starts `billing webhooks` (one replica by default) against a local receiver that
answers 204 at once, with one endpoint subscribed to every output type. Then:
- burst: `--burst` outputs written at once by the real sink; deliveries/s from the
  first delivery to the last;
- steady: outputs written at `--rate` per second for `--seconds` (batches every
  10 ms); the latency of each from its stream entry's time (Redis's clock, when the
  sink wrote it) to its arrival at the receiver, p50/p99/max.
Uses REDIS_URL, else 127.0.0.1:6379, else an embedded server; cleans its keys up.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import redis.asyncio as aioredis

from bench.common import scratch_redis
from billing.keys import Keys
from billing.redis_runtime import client
from billing.settings import Settings
from billing.stream_ids import ts_of
from flows.redis_sink import _RedisWriter
from harness.live import dispatcher_env, kill, start_dispatcher
from webhooks.store import WebhookStore, new_secret


class FastReceiver:
    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}  # webhook-id -> wall-clock ms of arrival
        bench = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real receivers do

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                bench.arrivals.setdefault(self.headers["webhook-id"], time.time() * 1000)
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _output(n: int) -> dict[str, Any]:
    return {"type": "reject", "output_id": f"reject:b{n}", "reason": "duplicate", "event": {}}


def _wait(receiver: FastReceiver, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(receiver.arrivals) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(receiver.arrivals)} of {count} delivered")
        time.sleep(0.01)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--burst", type=int, default=5000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--replicas", type=int, default=1)
    args = parser.parse_args()
    receiver = FastReceiver()
    with scratch_redis() as (url, prefix):
        keys, conn = Keys(prefix), client(url)

        async def add_endpoint() -> None:
            r = aioredis.Redis.from_url(url, decode_responses=True)
            await WebhookStore(r, Keys(prefix)).add_endpoint(
                "whe_bench",
                receiver.url,
                ["commission", "payout", "reject", "usage"],
                None,
                new_secret(),
                int(time.time() * 1000) - 1000,
            )
            await r.aclose()

        asyncio.run(add_endpoint())
        # Production lease and schedule, not the tests' fast ones.
        env = dispatcher_env(
            url,
            prefix,
            webhook_lease_ms="30000",
            webhook_retry_schedule_ms=Settings.model_fields["webhook_retry_schedule_ms"].default,
        )
        procs = [start_dispatcher(env) for _ in range(args.replicas)]
        writer = _RedisWriter(url, keys)
        try:
            time.sleep(1.5)  # start-up
            writer.write([_output(n) for n in range(args.burst)])
            _wait(receiver, args.burst, 120)
            times = sorted(receiver.arrivals.values())
            burst_rate = args.burst / max((times[-1] - times[0]) / 1000, 1e-6)
            print(
                f"burst: {args.burst:,} outputs, {burst_rate:,.0f} deliveries/s "
                f"({args.replicas} replica(s))"
            )
            receiver.arrivals.clear()
            per_tick = max(1, args.rate // 100)
            start, n = time.monotonic(), args.burst
            ticks = args.seconds * 100
            for tick in range(ticks):
                writer.write([_output(n + i) for i in range(per_tick)])
                n += per_tick
                time.sleep(max(0.0, start + (tick + 1) * 0.01 - time.monotonic()))
            sent = ticks * per_tick
            _wait(receiver, sent, 120)
            written = {
                f["output_id"]: ts_of(eid)
                for eid, f in cast(list[Any], conn.xrange(keys.rejects, min="-", max="+"))
            }
            latencies = [receiver.arrivals[i] - written[i] for i in receiver.arrivals]
            print(
                f"steady: {sent / args.seconds:,.0f} outputs/s for {args.seconds} s: "
                f"latency p50 {_pct(latencies, 0.5):.1f} ms, p99 {_pct(latencies, 0.99):.1f}"
                f" ms, max {max(latencies):.1f} ms"
            )
        finally:
            for proc in procs:
                kill(proc)
            writer.close()
            conn.close()


if __name__ == "__main__":
    main()
