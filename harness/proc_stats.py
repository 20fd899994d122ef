"""What a process group uses, read from /proc: resident memory and CPU time.

The flows run as one process group (`start_flows` starts a new session), one
process per `--processes`, so summing over the group counts every worker and
every sink thread.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import redis

_TICKS = os.sysconf("SC_CLK_TCK")


def _group(root: int) -> Iterator[tuple[str, list[str]]]:
    """(pid, the stat fields after the command's name) for each process of the group."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            # The name, in parentheses, may hold spaces: split after its last ')'.
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(entry) == root or int(fields[2]) == root:  # fields[2]: the pgid
            yield entry, fields


def rss_mb(root: int) -> float:
    """Resident memory of a process group, MB."""
    total = 0
    for pid, _fields in _group(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1024


def cpu_seconds(root: int) -> float:
    """User and system CPU time of a process group's live processes, seconds."""
    # fields[11] and [12]: utime and stime, in clock ticks (proc(5), fields 14 and 15).
    return sum(int(f[11]) + int(f[12]) for _pid, f in _group(root)) / _TICKS


def redis_cpu_seconds(conn: redis.Redis) -> float:
    """The Redis server's user and system CPU time, seconds (INFO cpu)."""
    info = conn.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
