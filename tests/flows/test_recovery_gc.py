"""The recovery sweep's own hygiene: it runs every few seconds for months in the
supervisor, so it must not keep anything from one sweep to the next."""

from __future__ import annotations

import gc
import os
from pathlib import Path

from bytewax.recovery import init_db_dir

from flows import recovery_gc


def _open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_sweeps_leave_no_connection_open(tmp_path: Path):
    init_db_dir(tmp_path, 4)
    gc.collect()
    before = _open_files()
    gc.disable()  # a connection left open is freed only by the cyclic GC
    try:
        for _ in range(10):
            recovery_gc.sweep(tmp_path)
            recovery_gc.keep_sink_parts(tmp_path, "output", ["part-0"])
        assert _open_files() == before
    finally:
        gc.enable()


def test_a_connection_commits_and_closes(tmp_path: Path):
    part = tmp_path / "x.sqlite3"
    with recovery_gc.connect(part, timeout=1.0) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (1)")
    with recovery_gc.connect(part, timeout=1.0) as again:
        assert again.execute("SELECT x FROM t").fetchall() == [(1,)]
    before = _open_files()
    try:
        with recovery_gc.connect(part, timeout=1.0) as conn:
            conn.execute("INSERT INTO t VALUES (2)")
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass
    assert _open_files() == before
    with recovery_gc.connect(part, timeout=1.0) as again:
        assert again.execute("SELECT COUNT(*) FROM t").fetchone() == (1,)
