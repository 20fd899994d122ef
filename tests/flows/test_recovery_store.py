"""Creating the recovery store: a kill part-way must not leave a store that bytewax
refuses at every later start (flows.recovery_store)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from flows import recovery_store
from flows.recovery_store import create_partitions, has_run, part_file


def _parts(directory: Path) -> dict[str, tuple[int, int]]:
    """Each partition file's (part_index, part_count), as bytewax wrote them."""
    found = {}
    for path in sorted(directory.glob("part-*.sqlite3")):
        conn = sqlite3.connect(path)
        try:
            found[path.name] = conn.execute("SELECT part_index, part_count FROM parts").fetchone()
        finally:
            conn.close()
    return found


WHOLE = {part_file(i): (i, 4) for i in range(4)}


def test_an_empty_directory_gets_every_partition(tmp_path: Path):
    directory = tmp_path / "rec"
    assert create_partitions(directory, 4) == [0, 1, 2, 3]
    assert _parts(directory) == WHOLE
    assert sorted(p.name for p in directory.iterdir()) == sorted(WHOLE)


def test_a_whole_store_is_left_as_it_is(tmp_path: Path):
    create_partitions(tmp_path, 4)
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in tmp_path.iterdir()}
    assert create_partitions(tmp_path, 4) == []
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in tmp_path.iterdir()} == before


def test_only_the_missing_partitions_are_made(tmp_path: Path):
    create_partitions(tmp_path, 4)
    kept = (tmp_path / part_file(0)).stat().st_ino
    for index in (2, 3):
        (tmp_path / part_file(index)).unlink()
    assert create_partitions(tmp_path, 4) == [2, 3]
    assert _parts(tmp_path) == WHOLE
    assert (tmp_path / part_file(0)).stat().st_ino == kept


@pytest.mark.parametrize("renames_before_the_kill", [0, 1, 3])
def test_a_kill_between_renames_is_finished_by_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, renames_before_the_kill: int
):
    done: list[Path] = []

    def replace_then_die(src: Path, dst: Path) -> None:
        if len(done) == renames_before_the_kill:
            raise KeyboardInterrupt  # stands in for the kill: nothing after it runs
        os.rename(src, dst)
        done.append(dst)

    monkeypatch.setattr(os, "replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        create_partitions(tmp_path, 4)
    monkeypatch.undo()
    # What exists is whole; the rest is missing, not half made.
    assert _parts(tmp_path) == {name: WHOLE[name] for name in map(os.path.basename, done)}
    assert create_partitions(tmp_path, 4) == list(range(renames_before_the_kill, 4))
    assert _parts(tmp_path) == WHOLE


def test_a_scratch_left_by_a_kill_is_removed(tmp_path: Path):
    left = tmp_path / f"{recovery_store.SCRATCH_PREFIX}12345"
    left.mkdir()
    (left / part_file(0)).write_bytes(b"half")
    create_partitions(tmp_path, 4)
    assert not left.exists()
    assert _parts(tmp_path) == WHOLE


@pytest.mark.parametrize("half", [b"", None])
def test_a_file_an_earlier_version_left_half_made_is_mended(tmp_path: Path, half):
    """Made in place (before this module), killed while bytewax made its tables."""
    create_partitions(tmp_path, 4)
    target = tmp_path / part_file(3)
    target.unlink()
    if half is None:
        conn = sqlite3.connect(target)  # its first table, no partition row
        conn.execute("CREATE TABLE parts (part_index INTEGER, part_count INTEGER)")
        conn.commit()
        conn.close()
    else:
        target.write_bytes(half)
    assert create_partitions(tmp_path, 4) == [3]
    assert _parts(tmp_path) == WHOLE


def _run_once(directory: Path) -> None:
    """What a run leaves: here, the execution row bytewax writes as it starts."""
    conn = sqlite3.connect(directory / part_file(1))
    conn.execute("INSERT INTO exs (ex_num, worker_count, resume_epoch) VALUES (0, 1, 1)")
    conn.commit()
    conn.close()


@pytest.mark.parametrize("damage", ["missing", "not a database"])
def test_a_store_that_ran_is_never_mended_silently(tmp_path: Path, damage: str):
    create_partitions(tmp_path, 4)
    _run_once(tmp_path)
    target = tmp_path / part_file(2)
    if damage == "missing":
        target.unlink()
    else:
        target.write_bytes(b"x" * 4096)
    with pytest.raises(recovery_store.StoreDamaged, match=r"part-2\.sqlite3.*missing or damaged"):
        create_partitions(tmp_path, 4)
    assert not (damage == "missing" and target.exists())


def test_a_store_that_ran_and_is_whole_starts(tmp_path: Path):
    create_partitions(tmp_path, 4)
    _run_once(tmp_path)
    assert create_partitions(tmp_path, 4) == []


def test_a_store_has_run_once_a_run_wrote_to_any_of_its_files(tmp_path: Path):
    directory = tmp_path / "rec"
    assert not has_run(directory)  # no directory at all
    create_partitions(directory, 4)
    assert not has_run(directory)  # made, never run
    conn = sqlite3.connect(directory / part_file(2))
    conn.execute("INSERT INTO exs (ex_num, worker_count, resume_epoch) VALUES (0, 1, 1)")
    conn.commit()
    conn.close()
    assert has_run(directory)
