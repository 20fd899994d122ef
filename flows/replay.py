"""`billing replay`: the live dataflow over a log file, with a file sink."""

from __future__ import annotations

import os
import sys
import tempfile
from typing import IO

from flows.dataflow import build_flow
from flows.file_io import JsonLinesSink, JsonLinesSource, LogLineError, ReplayStatus
from flows.runtime import run_in_process, tune_gc
from state.config import RuleSettings


def replay(
    input_path: str,
    out: IO[str],
    rules: RuleSettings,
    workers: int = 1,
    progress: bool = False,
) -> ReplayStatus:
    """Run the dataflow over `input_path`, writing outputs to `out`.

    Raises LogLineError (with the line number) for a malformed or out-of-order line.
    """
    with open(input_path, "rb"):
        pass  # a missing or unreadable file is a clear OSError here, not a dataflow crash
    tune_gc()
    status = ReplayStatus()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=os.path.getsize(input_path),
            unit="B",
            unit_scale=True,
            file=sys.stderr,
            desc="replay",
        )
        status.on_progress = bar.update
    flow = build_flow(
        JsonLinesSource(input_path, status), JsonLinesSink(out), rules, recovery=False
    )
    try:
        run_in_process(flow, workers)
    finally:
        if bar is not None:
            bar.close()
    if status.error is not None:
        raise status.error
    return status


def replay_to_path(
    input_path: str, output_path: str | None, rules: RuleSettings, workers: int, progress: bool
) -> ReplayStatus:
    """Replay to a file atomically (no partial output file on error), or to stdout."""
    if output_path is None:
        return replay(input_path, sys.stdout, rules, workers, progress)
    directory = os.path.dirname(os.path.abspath(output_path))
    fd, tmp = tempfile.mkstemp(prefix=".replay-", dir=directory)
    try:
        with os.fdopen(fd, "w") as out:
            status = replay(input_path, out, rules, workers, progress)
        os.replace(tmp, output_path)
        return status
    except BaseException:
        os.unlink(tmp)
        raise


__all__ = ["LogLineError", "replay", "replay_to_path"]
