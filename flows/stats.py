"""Per-process counters of what the flows snapshot, published to Redis
(`billing:stats:snapshots`: bytes, keys, epochs; the supervisor adds the recovery
store's tombstones it swept), so that the benchmarks can tell the snapshot cost
per epoch.

Every process publishes its own: the source's heartbeat in the process that runs
the source, and the sink's partition at each epoch's end in every process (with
`--processes 2` the commission sequencer's snapshots are in the other process).
`take` hands each count out once, so the two never count one twice."""

from __future__ import annotations

import threading
from typing import Any

from billing.keys import Keys

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


def publish(conn: Any, keys: Keys) -> None:
    """Add what was counted since the last take to Redis; `conn` is a client or a
    pipeline (the caller executes a pipeline)."""
    for name, count in take().items():
        if count:
            conn.hincrby(keys.stats("snapshots"), name, count)
