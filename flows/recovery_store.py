"""Creating bytewax's recovery store so that a kill part-way leaves no half-made store.

bytewax's `init_db_dir` writes the partition files one after another in place, in
about 10 ms. `billing flows` used to create them when it found none: killed
between two files, it found some at the next start, created nothing, and bytewax
refused to resume ("Missing recovery partitions ... can't resume") at every
restart, for ever. The kill soak (tests/live/test_kill_soak.py) met this as flows
that never came back. Here each file is made in a scratch directory and renamed
into place (a rename is atomic), so a partition file that exists is whole, and the
next start makes only the ones still missing. A store an earlier version left half
made (a file without its partition row) is mended the same way.

Only a store that never ran is mended. Once a run has written to it, a missing or
damaged file held state (snapshots, progress) that a fresh file would silently
drop, so the start is refused with `StoreDamaged` instead.

Only the supervisor calls this, before it starts any member: a file renamed over
one that a running member had open would split the store in two. `init_db_dir`
runs bytewax's own SQLite in the supervisor, but on the scratch files, and it has
closed them before the renames (measured), so Python's SQLite never meets a file
bytewax's holds open in this process (flows.live._sweep says why that matters).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

from bytewax.recovery import init_db_dir

from flows.recovery_gc import connect

SCRATCH_PREFIX = ".creating-"


class StoreDamaged(RuntimeError):
    pass


def part_file(index: int) -> str:
    return f"part-{index}.sqlite3"  # bytewax's name (src/recovery.rs, init_db_dir)


def create_partitions(directory: Path, count: int) -> list[int]:
    """Make whichever of the `count` partition files `directory` lacks or holds half
    made; returns their indexes (none for a whole store, the usual case)."""
    directory.mkdir(parents=True, exist_ok=True)
    for left in directory.glob(f"{SCRATCH_PREFIX}*"):
        shutil.rmtree(left, ignore_errors=True)  # a scratch a kill left behind
    need, ran = [], False
    for index in range(count):
        path = directory / part_file(index)
        if not path.exists():
            need.append(index)
            continue
        rows, used = _inspect(path)
        ran |= used
        if rows != [(index, count)]:
            need.append(index)
    if not need:
        return []
    if ran:
        raise StoreDamaged(
            f"the recovery store in {directory} has run, but its partition files "
            f"{[part_file(i) for i in need]} are missing or damaged: resuming without "
            "them would drop the state they held. Restore them, or start the flows "
            "with a new, empty recovery directory and a replay (README, 'Upgrading')"
        )
    scratch = directory / f"{SCRATCH_PREFIX}{os.getpid()}"
    scratch.mkdir()
    try:
        init_db_dir(scratch, count)
        for index in need:
            target = directory / part_file(index)
            for side in ("-wal", "-shm"):  # a half-made file's, never to meet the new one
                Path(f"{target}{side}").unlink(missing_ok=True)
            os.replace(scratch / part_file(index), target)
        _sync(directory)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return need


def has_run(directory: Path) -> bool:
    """Whether a run has written to any partition file of the store in `directory`
    (False for a directory that does not exist, or holds a store never run)."""
    return any(_inspect(path)[1] for path in sorted(directory.glob("part-*.sqlite3")))


def _inspect(path: Path) -> tuple[list[tuple[int, int]] | None, bool]:
    """(its partition rows, None where it has no tables yet; used: a run has written
    to it)."""
    try:
        with connect(path, timeout=10.0) as conn:
            rows = conn.execute("SELECT part_index, part_count FROM parts").fetchall()
            used = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM exs) OR EXISTS (SELECT 1 FROM fronts) "
                "OR EXISTS (SELECT 1 FROM snaps) OR EXISTS (SELECT 1 FROM commits)"
            ).fetchone()[0]
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None, False  # killed while bytewax made its tables
        raise  # busy, say: another process has it open, so it is not ours to mend
    except sqlite3.DatabaseError:
        return None, True  # not a database: what it held cannot be known
    return rows, bool(used)


def _sync(directory: Path) -> None:
    """The renames on disk, not only in the page cache (a power cut, not a kill)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
