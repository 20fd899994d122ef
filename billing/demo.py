"""`billing demo`: the system on an embedded default.

Starts (or finds) Redis, then the API and the live flows as child processes, and
stops them all on Ctrl-C or after `--seconds`. Keys that are not configured are
made up for the run and printed, so a fresh clone needs no set-up.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time

import httpx

from billing.redis_runtime import EmbeddedRedis, resolve_url


def _child(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "billing.cli", *args],
        env=env,
        start_new_session=True,  # our own Ctrl-C handling stops them in order
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


def run(args: argparse.Namespace) -> int:
    embedded: list[EmbeddedRedis] = []
    redis_url = resolve_url(embedded)
    env = dict(os.environ)
    env["REDIS_URL"] = redis_url
    env.setdefault("BILLING_API_KEYS", "demo-write-" + secrets.token_urlsafe(12))
    env.setdefault("BILLING_READ_KEYS", "demo-read-" + secrets.token_urlsafe(12))
    env.setdefault("BILLING_SHARE_KEYS", "k1:" + secrets.token_urlsafe(24))
    base = f"http://127.0.0.1:{args.port}"
    env.setdefault("BILLING_PUBLIC_BASE_URL", base)
    if not os.environ.get("BILLING_KEY_PREFIX") and not embedded:
        # A shared server: keep the demo's keys apart from anything else on it.
        env["BILLING_KEY_PREFIX"] = f"demo:{secrets.token_hex(4)}:"

    children = [_child(["serve", "--port", str(args.port)], env)]
    stop = {"now": False}

    def _on_signal(signum: int, frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        _wait_ready(base, children)
        print(f"redis:     {redis_url}  (prefix {env.get('BILLING_KEY_PREFIX', '')!r})")
        print(f"api:       {base}  (OpenAPI at {base}/docs)")
        print(f"write key: {env['BILLING_API_KEYS'].split(',')[0]}")
        print(f"read key:  {env['BILLING_READ_KEYS'].split(',')[0]}")
        print("Ctrl-C stops everything.", flush=True)
        started = time.monotonic()
        while not stop["now"]:
            if args.seconds and time.monotonic() - started >= args.seconds:
                break
            if any(proc.poll() is not None for proc in children):
                print("a child process exited; stopping", file=sys.stderr)
                return 1
            time.sleep(0.2)
        return 0
    finally:
        _stop(children)
        for server in embedded:
            server.stop()


def _wait_ready(base: str, children: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 30
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
