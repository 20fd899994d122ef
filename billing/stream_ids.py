"""Redis stream ids (`<ms>-<seq>`, each part an unsigned 64-bit integer): the one
place they are parsed. An entry's id is its place in the log, and its `ms` is
the event's `ts`."""

from __future__ import annotations

U64 = 2**64


def parse(entry_id: str) -> tuple[int, int]:
    """(ms, seq); `ms` alone means seq 0. ValueError for anything Redis would refuse."""
    ms, sep, seq = entry_id.partition("-")
    if not ms.isdigit() or (sep and not seq.isdigit()):
        raise ValueError(f"not a stream id: {entry_id[:40]!r}")
    parts = int(ms), int(seq or 0)
    if parts[0] >= U64 or parts[1] >= U64:
        raise ValueError(f"stream id out of range: {entry_id[:40]!r}")
    return parts


def ts_of(entry_id: str) -> int:
    """The `ts` of the event stored at `entry_id`."""
    return parse(entry_id)[0]
