"""Process-wide tuning for running the dataflow."""

from __future__ import annotations

import gc
from typing import Any

from bytewax.dataflow import Dataflow
from bytewax.run import cli_main
from bytewax.testing import run_main


def tune_gc() -> None:
    """Billing state is millions of small, long-lived objects (ids, scans, intervals),
    and few cycles. With CPython's default thresholds the collector rescans them over
    and over (measured: replay of 1M events 29k/s before, 44k/s after)."""
    gc.set_threshold(200_000, 50, 1000)


def run_in_process(flow: Dataflow, workers: int, **kwargs: Any) -> None:
    """Run `flow` here, on `workers` worker threads: `run_main` for one (no cluster
    set-up at all), `cli_main` for more."""
    if workers == 1:
        run_main(flow, **kwargs)
    else:
        cli_main(flow, workers_per_process=workers, **kwargs)
