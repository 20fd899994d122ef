"""`billing flows`: the live dataflow, Redis in and out, with recovery and a supervisor.

bytewax ends every process of a cluster when one dies, so with several processes
a supervisor restarts the whole cluster; with recovery on, it resumes from the
last snapshot (stream position and state), re-emitting at most one epoch of
outputs, which carry the same `output_id`s and leave the views unchanged.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import cast

import redis
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig
from bytewax.run import cli_main

from billing.net import free_ports
from billing.redis_runtime import die_with_parent, server_ms
from billing.settings import Settings
from flows import recovery_gc
from flows.dataflow import build_flow
from flows.fact_sweeper import FactSweeper, MarkSweeper
from flows.facts_redis import RedisFacts
from flows.recovery_store import StoreDamaged, create_partitions, has_run
from flows.redis_output import STEP_ID, RedisOutputSink, part_name
from flows.redis_source import RedisStreamSource, parse_entry
from flows.runtime import tune_gc

RECOVERY_PARTITIONS = 4
SWEEP_EVERY_S = 10.0
# The fact sweeper's time per tick of the supervisor (0.2 s), when it finds much to delete.
SWEEP_BUDGET_S = 0.05


def live_flow(settings: Settings, process_id: int = 0, processes: int = 1) -> Dataflow:
    keys = settings.keys
    rules = settings.rules()  # refuses inconsistent settings before any event is read
    source = RedisStreamSource(
        settings.redis_url,
        keys,
        lag_ms=settings.watermark_lag_ms,
        trim_ms=rules.retention_ms if settings.trim_input else None,
        # Parsing at the keys spreads it over processes; in one it only costs a read.
        parse_here=processes == 1,
    )
    ttl_ms = rules.retention_ms + settings.facts_ttl_margin_ms

    def facts(key: str) -> RedisFacts:
        # No TTL: forgotten by the log's time (flows.fact_sweeper, flows.wake_buckets).
        return RedisFacts(settings.redis_client(patient=True), keys, None, key)

    sink = RedisOutputSink(
        settings.redis_url, keys, ttl_ms, settings.statement_retention_ms, process_id
    )
    return build_flow(source, sink, rules, facts, parse_entry, recovery=bool(settings.recovery_dir))


def recovery_config(settings: Settings) -> RecoveryConfig | None:
    """The store the supervisor made (flows.recovery_store)."""
    return RecoveryConfig(Path(settings.recovery_dir)) if settings.recovery_dir else None


def run_process(
    settings: Settings,
    workers: int,
    process_id: int | None = None,
    addresses: list[str] | None = None,
) -> int:
    tune_gc()
    cli_main(
        live_flow(settings, process_id or 0, len(addresses) if addresses else 1),
        workers_per_process=workers,
        process_id=process_id,
        addresses=addresses,
        epoch_interval=timedelta(milliseconds=settings.epoch_interval_ms),
        recovery_config=recovery_config(settings),
    )
    return 0


def run_cluster(settings: Settings, workers: int, processes: int) -> int:
    """Supervise the cluster's processes (one or more): when one exits (a crash,
    or Redis gone longer than the clients' retries), restart them all, with a
    back-off that grows to 30 s and resets once they have run for a minute."""
    stopping = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    backoff = 1.0
    facts = _FactSweeping(settings)
    refused = _fresh_start_refused(settings, lambda: stopping)
    if refused:
        print(f"billing flows: {refused}", file=sys.stderr)
        return 2
    while not stopping:
        if settings.recovery_dir:  # no process runs now: a shape change resumes cleanly
            try:
                create_partitions(Path(settings.recovery_dir), RECOVERY_PARTITIONS)
            except StoreDamaged as exc:
                print(f"billing flows: {exc}", file=sys.stderr)
                return 2
            parts = [part_name(i) for i in range(processes)]
            recovery_gc.keep_sink_parts(settings.recovery_dir, STEP_ID, parts)
        facts.start()  # before the flows run (once made, nothing more)
        addresses = (
            [f"127.0.0.1:{port}" for port in free_ports(processes)] if processes > 1 else ["-"]
        )
        started = time.monotonic()
        children = [
            subprocess.Popen(
                [sys.executable, "-m", "flows.live", str(workers), str(i), ",".join(addresses)],
                env=dict(os.environ),
                preexec_fn=die_with_parent,
            )
            for i in range(processes)
        ]
        swept_at = time.monotonic()
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(0.2)
            facts.step()
            if settings.recovery_dir and time.monotonic() - swept_at >= SWEEP_EVERY_S:
                _sweep(settings)
                swept_at = time.monotonic()
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
        if not stopping:
            if time.monotonic() - started > 60:
                backoff = 1.0
            print(f"flows: a process exited; restarting in {backoff:.0f} s", file=sys.stderr)
            deadline = time.monotonic() + backoff
            while not stopping and time.monotonic() < deadline:
                time.sleep(0.1)
            backoff = min(backoff * 2, 30.0)
    return 0


def _fresh_start_refused(settings: Settings, stopping: Callable[[], bool]) -> str | None:
    """Why this start must not go ahead, if it must not: the recovery directory has
    never run, but the flows have read this deployment's input before (they publish
    where they are). Such a start reads the input stream again from its start, as
    after an upgrade ("Upgrading"), but without the care that asks for: a re-read
    meets ids whose facts were swept (kept R and a day behind where the flows were)
    and bills a duplicate among them again. A lost volume looks just like this, so it
    is refused until the operator says otherwise. Redis not answering yet (it may
    start after the flows) is waited for: the answer decides the start."""
    if not settings.recovery_dir or settings.allow_fresh_start:
        return None
    directory = Path(settings.recovery_dir)
    if has_run(directory):
        return None
    position = _flows_position(settings, stopping)
    if position is None:
        return None  # the first start of this deployment
    return (
        f"the recovery directory {directory} has never run, but the flows have read "
        f"this deployment's input before (up to entry {position}). Starting afresh would "
        "read the input stream again from its start and may bill again a duplicate id "
        "whose first use was forgotten. If the recovery directory was lost, restore "
        "it. If this start is meant (an upgrade that needs a new recovery directory: "
        "README, 'Upgrading'), check what it will bill with `billing export` and "
        "`billing replay`, then start once with BILLING_ALLOW_FRESH_START=true"
    )


def _flows_position(settings: Settings, stopping: Callable[[], bool]) -> str | None:
    """Where the flows of this deployment last said they were (the client decodes
    replies), asked until Redis answers (None: never, or stopped while waiting, when
    nothing will run)."""
    conn, waited = settings.redis_client(), False
    try:
        while not stopping():
            try:
                return cast(str | None, conn.get(settings.keys.flows_position))
            except redis.RedisError:
                if not waited:
                    print("billing flows: waiting for Redis to answer", file=sys.stderr)
                    waited = True
                time.sleep(1.0)
        return None
    finally:
        conn.close()


class _FactSweeping:
    """The facts and the applied marks forgotten by the log's time (flows.fact_sweeper),
    a step of each per tick of the supervisor; Redis unreachable is the flows'
    business, not the sweepers'."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sweepers: list[tuple[FactSweeper | MarkSweeper, str]] = []

    def _made(self) -> list[tuple[FactSweeper | MarkSweeper, str]]:
        if not self.sweepers:
            settings = self.settings
            conn, keys = settings.redis_client(), settings.keys
            keep_ms = settings.rules().retention_ms + settings.facts_ttl_margin_ms
            facts = FactSweeper(conn, keys, keep_ms)
            # Before the flows run: whether facts of an earlier version are there.
            facts.legacy.note_upgrade()
            self.sweepers = [(facts, "swept"), (MarkSweeper(conn, keys, keep_ms), "marks_swept")]
        return self.sweepers

    def start(self) -> None:
        with contextlib.suppress(redis.RedisError):  # then at the first step
            self._made()

    def step(self) -> None:
        settings = self.settings
        try:
            for sweeper, field in self._made():
                gone = sweeper.step(budget_s=SWEEP_BUDGET_S)
                if gone:
                    sweeper.r.hincrby(settings.keys.stats("facts"), field, gone)
        except redis.RedisError:
            pass  # the next tick tries again


def _sweep(settings: Settings) -> None:
    """Here, in the supervisor, never in a flows process: bytewax links its own SQLite,
    and two SQLite copies on one file in one process break each other's POSIX locks
    (measured: "database disk image is malformed"). Across processes, the file's
    locks keep the two apart as SQLite always does."""
    swept = recovery_gc.sweep(settings.recovery_dir)
    if swept:
        conn = settings.redis_client()
        with contextlib.suppress(redis.RedisError):  # a statistic, not worth a crash
            conn.hincrby(settings.keys.stats("snapshots"), "tombstones_swept", swept)
        conn.close()


def healthy(settings: Settings, max_age_s: float) -> bool:
    """The source beats every 0.25 s with Redis's clock; stale means stuck or dead."""
    conn = settings.redis_client()
    key = settings.keys.flows_heartbeat
    beat = conn.get(key)
    if beat is None:
        return False
    return server_ms(conn, key) - int(beat) <= max_age_s * 1000


if __name__ == "__main__":
    # Cluster member: `python -m flows.live WORKERS PROCESS_ID ADDR,ADDR,...` (`-`: alone)
    _workers, _pid, _addrs = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(",")
    if _addrs == ["-"]:
        sys.exit(run_process(Settings(), _workers))
    sys.exit(run_process(Settings(), _workers, _pid, _addrs))
