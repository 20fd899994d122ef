"""`billing demo`: the whole system on an embedded default, with simulated users.

Starts (or finds) Redis, then the API and the live flows as child processes, drives
a workload through the public API, prints the dashboard URL and a live summary, and
stops everything on Ctrl-C (or after `--seconds`): workload first, then the children,
then an embedded Redis. Keys that are not configured are made up for the run.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import httpx

from billing.redis_runtime import EmbeddedRedis, client, delete_prefix, resolve_url
from programs.workload import Workload
from sdk import BillingClient


def _child(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Own process group: a terminal's Ctrl-C reaches only us, and we stop them in order.
    return subprocess.Popen(
        [sys.executable, "-m", "programs.cli", *args], env=env, start_new_session=True
    )


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    for proc in children:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for proc in children:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _environment(port: int, redis_url: str, shared_server: bool, recovery: str) -> dict[str, str]:
    env = dict(os.environ)
    env["REDIS_URL"] = redis_url
    env.setdefault("BILLING_API_KEYS", "demo-write-" + secrets.token_urlsafe(12))
    env.setdefault("BILLING_READ_KEYS", "demo-read-" + secrets.token_urlsafe(12))
    env.setdefault("BILLING_SHARE_KEYS", "k1:" + secrets.token_urlsafe(24))
    env.setdefault("BILLING_PUBLIC_BASE_URL", f"http://127.0.0.1:{port}")
    env.setdefault("BILLING_REPORT_INTERVAL_MS", "2000")  # a lively demo
    env.setdefault("BILLING_WATERMARK_LAG_MS", "1000")
    # Commissions approve 20 s after their order (SPEC's default is 30 days), so that
    # approvals, clawbacks and the workload's payouts show within a minute.
    env.setdefault("BILLING_HOLDING_PERIOD_MS", "20000")
    # The simulated shoppers come through 127.0.0.1, as if behind the shop's own proxy.
    env.setdefault("BILLING_TRUSTED_PROXIES", "127.0.0.1/32")
    env.setdefault("BILLING_SCAN_RATE_PER_CLIENT", "100000/minute")
    env.setdefault("BILLING_RECOVERY_DIR", recovery)
    # The demo's own webhook receiver listens on 127.0.0.1.
    env.setdefault("BILLING_WEBHOOK_ALLOW_PRIVATE", "true")
    if shared_server and not env.get("BILLING_KEY_PREFIX"):
        # Someone else's server: keep the demo's keys apart from anything on it.
        env["BILLING_KEY_PREFIX"] = f"demo:{secrets.token_hex(4)}:"
    return env


def run(args: argparse.Namespace) -> int:
    stop = {"now": False}

    def _on_signal(signum: int, frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    embedded: list[EmbeddedRedis] = []
    redis_url = resolve_url(embedded)
    recovery = tempfile.mkdtemp(prefix="billing-demo-recovery-")
    env = _environment(args.port, redis_url, not embedded, recovery)
    base = env["BILLING_PUBLIC_BASE_URL"]
    read_key = env["BILLING_READ_KEYS"].split(",")[0]
    children = [
        _child(["serve", "--port", str(args.port), "--log-level", "warning"], env),
        _child(["flows"], env),
        _child(["webhooks", "--log-level", "warning"], env),
    ]
    receiver = DemoReceiver()
    workload: Workload | None = None
    try:
        _wait_ready(base, children)
        print(f"redis:     {redis_url}" + (" (embedded)" if embedded else ""))
        print(f"api:       {base}  (OpenAPI: {base}/docs)")
        # A signed token that expires (12 h) rides in the URL, not a long-lived read key.
        admin = BillingClient(base, env["BILLING_API_KEYS"].split(",")[0])
        dashboard_token = admin.read_token(ttl_ms=43_200_000)["token"]
        hook = admin.http.post(
            "/v1/webhook-endpoints",
            json={
                "url": receiver.url,
                "types": ["commission", "usage", "payout", "reject"],
                "description": "the demo's own receiver",
            },
        )
        hook.raise_for_status()
        receiver.secret = hook.json()["secret"]
        admin.close()
        print(f"webhooks:  {receiver.url} (signed; verified as they arrive)")
        print(f"dashboard: {base}/dashboard?key={dashboard_token}")
        print(
            f"children:  {' '.join(str(p.pid) for p in children)}"
            + (f" redis={embedded[0].proc.pid}" if embedded else "")
        )
        print("Ctrl-C stops everything.", flush=True)
        workload = Workload(
            base,
            env["BILLING_API_KEYS"].split(",")[0],
            env.get("BILLING_SCANNER_HEADER", "X-User-Id"),
            sessions=args.sessions,
        )
        workload.start()
        started = last = time.monotonic()
        while not stop["now"]:
            if args.seconds and time.monotonic() - started >= args.seconds:
                break
            if any(proc.poll() is not None for proc in children):
                print("a child process exited; stopping", file=sys.stderr)
                return 1
            if time.monotonic() - last >= args.summary_every:
                last = time.monotonic()
                print(
                    f"{_summary(base, read_key, workload)} | webhooks: "
                    f"{receiver.verified} verified, {receiver.refused} refused",
                    flush=True,
                )
            time.sleep(0.2)
        return 0
    finally:
        if workload is not None:
            workload.stop()
        _stop(children)
        receiver.close()
        if (
            not embedded
            and env.get("BILLING_KEY_PREFIX", "").startswith("demo:")
            and not os.environ.get("BILLING_KEY_PREFIX")
        ):
            _delete_prefix(redis_url, env["BILLING_KEY_PREFIX"])
        for server in embedded:
            server.stop()
        shutil.rmtree(recovery, ignore_errors=True)
        print("stopped.", flush=True)


class DemoReceiver:
    """A tiny webhook receiver: checks each signature as a receiving app would."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from standardwebhooks.webhooks import Webhook, WebhookVerificationError

        self.secret = ""
        self.verified = self.refused = 0
        self.seen: set[str] = set()
        demo = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                try:
                    Webhook(demo.secret).verify(body, dict(self.headers))
                    if self.headers["webhook-id"] not in demo.seen:  # repeats are dropped
                        demo.seen.add(self.headers["webhook-id"])
                        demo.verified += 1
                    self.send_response(204)
                except WebhookVerificationError:
                    demo.refused += 1
                    self.send_response(400)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _delete_prefix(redis_url: str, prefix: str) -> None:
    """The demo made up this prefix on someone else's server: leave nothing behind."""
    conn = client(redis_url)
    delete_prefix(conn, prefix)
    conn.close()


def _summary(base: str, read_key: str, workload: Workload) -> str:
    counts = " ".join(f"{k}={v}" for k, v in workload.counts.items())
    try:
        text = httpx.get(
            f"{base}/metrics", headers={"Authorization": f"Bearer {read_key}"}, timeout=2
        ).text
    except httpx.HTTPError:
        return f"sent: {counts}"
    outputs = {}
    lag = "?"
    for line in text.splitlines():
        if line.startswith("billing_outputs_total{"):
            kind = line.split('"')[1]
            outputs[kind] = int(float(line.rsplit(" ", 1)[1]))
        elif line.startswith("billing_flow_lag_ms "):
            lag = str(int(float(line.rsplit(" ", 1)[1])))
    produced = " ".join(f"{k}={v}" for k, v in sorted(outputs.items()))
    return f"sent: {counts} | outputs: {produced or 'none yet'} | flow lag: {lag} ms"


def _wait_ready(base: str, children: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(proc.poll() is not None for proc in children):
            raise RuntimeError("a child process exited during start-up")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the API did not become ready")
