"""Process-wide tuning for running the dataflow."""

from __future__ import annotations

import ctypes
import gc
import threading
from typing import Any

from bytewax.dataflow import Dataflow
from bytewax.run import cli_main
from bytewax.testing import run_main


def tune_gc() -> None:
    """Billing state is millions of small, long-lived objects (ids, scans, intervals),
    and few cycles. With CPython's default thresholds the collector rescans them over
    and over (measured: replay of 1M events 29k/s before, 44k/s after)."""
    gc.set_threshold(200_000, 50, 1000)


_kept = threading.local()  # owned by the thread state, so set only while it is kept


def keep_thread_state() -> None:
    """Call on a bytewax worker thread (from a step, a source or a sink): keeps its
    Python thread state for the thread's life.

    bytewax's worker threads are Rust threads, and each call into Python there
    takes the GIL with `PyGILState_Ensure` and lets it go with `PyGILState_Release`,
    which deletes the thread state when its count drops to zero; so every call made
    and freed a thread state and its frame stack (an mmap and a munmap). Measured
    with perf at 2 processes: thousands a second per worker, about 7% of a worker's
    CPU. One more `Ensure`, never released, keeps the count above zero. A worker on
    the main thread (one worker, one process) has a lasting thread state already.
    The kept state outlives its thread (a few hundred bytes per worker thread, once
    per run of a flow); the mark is a thread-local, not the thread's id, because ids
    of ended threads are reused.
    """
    if getattr(_kept, "done", False):
        return
    if threading.current_thread() is not threading.main_thread():
        ctypes.pythonapi.PyGILState_Ensure()
    _kept.done = True  # on the main thread too: later calls stop at the first line


def run_in_process(flow: Dataflow, workers: int, **kwargs: Any) -> None:
    """Run `flow` here, on `workers` worker threads: `run_main` for one (no cluster
    set-up at all), `cli_main` for more."""
    if workers == 1:
        run_main(flow, **kwargs)
    else:
        cli_main(flow, workers_per_process=workers, **kwargs)
