"""Running `billing flows` as a real process against the test's Redis prefix."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any, cast

import redis

from billing.keys import Keys
from state.config import RuleSettings
from state.testing import SMALL_RULES


def flows_env(
    redis_url: str,
    prefix: str,
    recovery_dir: Path,
    rules: RuleSettings,
    lag_ms: int,
    epoch_ms: int = 100,
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "REDIS_URL": redis_url,
            "BILLING_KEY_PREFIX": prefix,
            "BILLING_RECOVERY_DIR": str(recovery_dir),
            "BILLING_WATERMARK_LAG_MS": str(lag_ms),
            "BILLING_EPOCH_INTERVAL_MS": str(epoch_ms),
        }
    )
    # Every rule setting, by its SPEC environment name.
    env.update({f"BILLING_{f.name.upper()}": str(getattr(rules, f.name)) for f in fields(rules)})
    return env


def start_flows(
    env: dict[str, str], *args: str, stderr_to: Path | None = None
) -> subprocess.Popen[bytes]:
    """`stderr_to` appends the process's stderr to a file, for a test to show on failure."""
    with open(stderr_to, "ab") if stderr_to else open(os.devnull, "wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "programs.cli", "flows", *args],
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def kill(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
    proc.wait(10)


def members(supervisor: int) -> list[int]:
    """The processes a `billing flows` supervisor runs now (none once it is gone)."""
    try:
        with open(f"/proc/{supervisor}/task/{supervisor}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def outputs(conn: redis.Redis, keys: Keys) -> list[dict[str, Any]]:
    result = []
    for stream in keys.output_streams:
        for _id, entry in cast(list[Any], conn.xrange(stream)):
            result.append(json.loads(entry["data"]))
    return result


def wait_for(predicate: Callable[[], bool], timeout: float = 30, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError("condition not met in time")


def wait_for_outputs(conn: redis.Redis, keys: Keys, wanted: set[str], timeout: float = 120) -> None:
    """Until every output id in `wanted` is in the output streams."""
    wait_for(
        lambda: {o["output_id"] for o in outputs(conn, keys)} >= wanted,
        timeout=timeout,
        every=0.5,
    )


def with_stream_ids(events: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Stream ids made from each event's ts, so that the live log is exactly `events`."""
    positioned = []
    last_ts, n = -1, 0
    for event in events:
        n = n + 1 if event["ts"] == last_ts else 0
        last_ts = event["ts"]
        positioned.append((f"{event['ts']}-{n}", event))
    return positioned


def append_positioned(
    conn: redis.Redis, keys: Keys, positioned: list[tuple[str, dict[str, Any]]]
) -> None:
    pipe = conn.pipeline(transaction=False)
    for entry_id, event in positioned:
        body = {k: v for k, v in event.items() if k != "ts"}
        pipe.xadd(keys.events, {"data": json.dumps(body)}, id=entry_id)
    pipe.execute()


def flows_starter(
    redis_url: str, prefix: str, recovery_dir: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Body of the `flows_factory` fixture: start `billing flows` processes, kill them after."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(
        rules: RuleSettings = SMALL_RULES, lag_ms: int = 100, args: tuple[str, ...] = ()
    ) -> subprocess.Popen[bytes]:
        env = flows_env(redis_url, prefix, recovery_dir, rules, lag_ms)
        proc = start_flows(env, *args, stderr_to=recovery_dir.parent / "flows.stderr")
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        kill(proc)


def dispatcher_env(redis_url: str, prefix: str, **settings: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "REDIS_URL": redis_url,
            "BILLING_KEY_PREFIX": prefix,
            "BILLING_WEBHOOK_ALLOW_PRIVATE": "true",
            "BILLING_WEBHOOK_RETRY_SCHEDULE_MS": "300,600",
            "BILLING_WEBHOOK_LEASE_MS": "1500",
            "BILLING_WEBHOOK_TIMEOUT_MS": "2000",
        }
    )
    env.update({f"BILLING_{k.upper()}": v for k, v in settings.items()})
    return env


def start_dispatcher(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "programs.cli", "webhooks", "--log-level", "warning"],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def url_of(conn: redis.Redis) -> str:
    """The URL a client was made from, for a process that needs its own."""
    kw = conn.connection_pool.connection_kwargs
    return f"redis://{kw.get('host', '127.0.0.1')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"
