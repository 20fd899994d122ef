"""Per-process counters of what the flows snapshot, published to Redis by the
source's heartbeat (`billing:stats:snapshots`: bytes, keys, epochs; the supervisor
adds the recovery store's tombstones it swept), so that the benchmarks can tell
the snapshot cost per epoch.

Only the process that runs the source publishes: with `--processes 2` the other
process's snapshots are not counted, so the benchmarks take this figure from one
process (bench/bench_scale.py catchup)."""

from __future__ import annotations

import threading

_lock = threading.Lock()
_pending = {"bytes": 0, "keys": 0, "epochs": 0}


def snapshot_taken(size: int) -> None:
    with _lock:
        _pending["bytes"] += size
        _pending["keys"] += 1


def epoch_closed() -> None:
    with _lock:
        _pending["epochs"] += 1


def take() -> dict[str, int]:
    """What was counted since the last call (each count is published once)."""
    with _lock:
        taken = dict(_pending)
        for name in _pending:
            _pending[name] = 0
    return taken
