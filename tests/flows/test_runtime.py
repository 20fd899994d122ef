"""flows.runtime.keep_thread_state against real bytewax worker threads.

bytewax's workers are Rust threads that take the GIL afresh for each call into
Python; without a kept thread state each call gets a new one (measured: thousands
a second per worker, with an mmap and a munmap each). A thread state owns the
thread's `threading.local` values, so whether they last from one call to the
next shows whether the thread state does."""

from __future__ import annotations

import threading
from datetime import timedelta

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource

from flows.runtime import keep_thread_state, run_in_process


def _calls_and_remembered(keep: bool) -> tuple[int, int]:
    """(batches seen, batches whose thread still held the mark from its first one)."""
    local = threading.local()
    counts = {"calls": 0, "remembered": 0}
    lock = threading.Lock()

    class Logic(op.StatefulBatchLogic):
        def __init__(self, resume: object) -> None:
            if keep:
                keep_thread_state()

        def on_batch(self, values: list[int]) -> tuple[list[int], bool]:
            with lock:
                counts["calls"] += 1
                if getattr(local, "marked", False):
                    counts["remembered"] += 1
            local.marked = True
            return values, False

        def snapshot(self) -> None:
            return None

    flow = Dataflow("threads")
    # One item per epoch (a new epoch per batch, so each batch is its own activation).
    items = op.input("in", flow, TestingSource(list(range(200)), batch_size=1))
    keyed = op.key_on("key", items, lambda n: f"k{n % 4}")
    out: list[object] = []
    op.output("out", op.stateful_batch("logic", keyed, Logic), TestingSink(out))
    run_in_process(flow, 2, epoch_interval=timedelta(0))
    return counts["calls"], counts["remembered"]


def test_a_kept_thread_state_lasts_across_calls() -> None:
    calls, remembered = _calls_and_remembered(keep=True)
    assert calls >= 100
    # Every batch but each thread's first finds the mark its thread left.
    assert remembered >= calls - 2


def test_without_it_a_worker_thread_forgets() -> None:
    """What the helper is for: bytewax 0.21.1 drops the thread state between calls.
    If a new bytewax keeps it, this fails, and the helper can go."""
    calls, remembered = _calls_and_remembered(keep=False)
    assert remembered < calls // 2
