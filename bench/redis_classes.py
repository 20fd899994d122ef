"""Redis's memory after a run, by class of key: what a catch-up leaves behind.

A key's class is its name under the prefix with ids and numbers folded
(`billing:fact:scan:…` → `billing:fact:scan`). Every key is counted; `MEMORY USAGE`
is asked of the first `SAMPLE` keys of each class and scaled by the count, so the
megabytes are estimates (streams are single keys, measured whole).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

SAMPLE = 200
_ID = re.compile(r"[0-9a-f]{6,}|\d+")


def key_class(name: str, prefix: str) -> str:
    folded = _ID.sub("#", name.removeprefix(prefix))
    return ":".join(folded.split(":")[:3])


def by_class(conn: Any, prefix: str) -> list[tuple[str, int, float]]:
    """(class, keys, estimated MB), largest first."""
    counts: Counter[str] = Counter()
    sampled: Counter[str] = Counter()
    for raw in conn.scan_iter(match=f"{prefix}*", count=5000):
        name = raw.decode() if isinstance(raw, bytes) else raw
        cls = key_class(name, prefix)
        counts[cls] += 1
        if counts[cls] <= SAMPLE:
            sampled[cls] += conn.memory_usage(name, samples=0) or 0
    rows = [(cls, n, sampled[cls] / min(n, SAMPLE) * n / 1e6) for cls, n in counts.items()]
    return sorted(rows, key=lambda row: -row[2])


def print_by_class(conn: Any, prefix: str, top: int = 12) -> None:
    for cls, n, mb in by_class(conn, prefix)[:top]:
        print(f"    {cls:<28} {n:>10,} keys {mb:>9,.1f} MB", flush=True)
