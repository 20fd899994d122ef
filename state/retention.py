"""SPEC "Retention": facts remembered while they are at most R old in the log.

`Recent` keeps keys with the `ts` of the event that first used them, forgetting
each once the log's time passes `ts + R`. Keys arrive in log order, so the
oldest is always at the front of a deque: forgetting is O(1) amortised, and
memory follows the traffic of the last R, not all history.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

V = TypeVar("V")


class Recent(Generic[V]):
    __slots__ = ("_order", "by_key")

    def __init__(self) -> None:
        self.by_key: dict[str, tuple[int, V]] = {}
        self._order: deque[tuple[int, str]] = deque()

    def forget_before(self, oldest_ts: int) -> None:
        """Forget every key first used before `oldest_ts` (`first.ts < oldest_ts`)."""
        order = self._order
        if not order or order[0][0] >= oldest_ts:
            return  # the common case: nothing is old enough yet
        by_key = self.by_key
        while order and order[0][0] < oldest_ts:
            ts, key = order.popleft()
            kept = by_key.get(key)
            if kept is not None and kept[0] == ts:
                del by_key[key]

    def get(self, key: str) -> V | None:
        kept = self.by_key.get(key)
        return None if kept is None else kept[1]

    def __contains__(self, key: str) -> bool:
        return key in self.by_key

    def add(self, key: str, ts: int, value: V) -> None:
        """Remember `key` as first used at `ts`. In log order ts seldom decreases
        between calls; where it does (an event behind the log's time), the key is
        forgotten late, once the keys before it are: callers compare its ts."""
        self.by_key[key] = (ts, value)
        self._order.append((ts, key))

    def __len__(self) -> int:
        return len(self.by_key)
