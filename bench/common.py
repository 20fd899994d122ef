"""What the benchmarks share: a Redis to use and a key prefix that is cleaned up."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from billing.redis_runtime import EmbeddedRedis, client, delete_prefix, resolve_url


@contextmanager
def scratch_redis() -> Iterator[tuple[str, str]]:
    """(redis url, fresh key prefix): REDIS_URL, else 127.0.0.1:6379, else embedded."""
    embedded: list[EmbeddedRedis] = []
    url = resolve_url(embedded)
    prefix = f"bench:{secrets.token_hex(4)}:"
    try:
        yield url, prefix
    finally:
        conn = client(url)
        delete_prefix(conn, prefix)
        conn.close()
        for server in embedded:
            server.stop()


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM a process group started with start_new_session; SIGKILL it after 20 s."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
