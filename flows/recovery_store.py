"""Creating bytewax's recovery store so that a kill part-way leaves no half-made store.

bytewax's `init_db_dir` writes the partition files one after another in place, in
about 10 ms. `billing flows` used to create them when it found none: killed
between two files, it found some at the next start, created nothing, and bytewax
refused to resume ("Missing recovery partitions ... can't resume") at every
restart, for ever. The kill soak (tests/live/test_kill_soak.py) met this as flows
that never came back. Here each file is made in a scratch directory and renamed
into place (a rename is atomic), so a partition file that exists is whole, and the
next start makes only the ones still missing.

Only the supervisor calls this, before it starts any member: a file renamed over
one that a running member had open would split the store in two.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bytewax.recovery import init_db_dir

SCRATCH_PREFIX = ".creating-"


def part_file(index: int) -> str:
    return f"part-{index}.sqlite3"  # bytewax's name (src/recovery.rs, init_db_dir)


def create_partitions(directory: Path, count: int) -> list[int]:
    """Make whichever of the `count` partition files `directory` lacks; returns their
    indexes (none for a store that is already whole, the usual case)."""
    directory.mkdir(parents=True, exist_ok=True)
    missing = [i for i in range(count) if not (directory / part_file(i)).exists()]
    for left in directory.glob(f"{SCRATCH_PREFIX}*"):
        shutil.rmtree(left, ignore_errors=True)  # a scratch a kill left behind
    if not missing:
        return []
    scratch = directory / f"{SCRATCH_PREFIX}{os.getpid()}"
    scratch.mkdir()
    try:
        init_db_dir(scratch, count)
        for index in missing:
            os.replace(scratch / part_file(index), directory / part_file(index))
        _sync(directory)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return missing


def _sync(directory: Path) -> None:
    """The renames on disk, not only in the page cache (a power cut, not a kill)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
