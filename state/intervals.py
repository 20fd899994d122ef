"""A set of half-open integer intervals, kept as sorted disjoint runs."""

from __future__ import annotations

from bisect import bisect_left, bisect_right


class IntervalSet:
    """Union of `[start, end)` intervals. Adding is idempotent and order-independent.

    Touching runs are merged, so `[0, 5) + [5, 9)` is one run `[0, 9)`.
    """

    __slots__ = ("_ends", "_starts", "total")

    def __init__(self, runs: list[tuple[int, int]] | None = None) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self.total = 0
        for start, end in runs or ():
            self.add(start, end)

    def add(self, start: int, end: int) -> int:
        """Add `[start, end)`; return how much length it newly covered."""
        if end <= start:
            return 0
        # Runs overlapping or touching [start, end) are merged into one.
        lo = bisect_left(self._ends, start)
        hi = bisect_right(self._starts, end)
        if lo == hi:
            self._starts.insert(lo, start)
            self._ends.insert(lo, end)
            self.total += end - start
            return end - start
        new_start = min(start, self._starts[lo])
        new_end = max(end, self._ends[hi - 1])
        covered = sum(self._ends[i] - self._starts[i] for i in range(lo, hi))
        self._starts[lo:hi] = [new_start]
        self._ends[lo:hi] = [new_end]
        added = (new_end - new_start) - covered
        self.total += added
        return added

    def __contains__(self, point: int) -> bool:
        i = bisect_right(self._starts, point) - 1
        return i >= 0 and point < self._ends[i]

    def runs(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends, strict=True))

    def span(self) -> tuple[int, int] | None:
        return (self._starts[0], self._ends[-1]) if self._starts else None

    def snapshot(self) -> IntervalSet:
        return IntervalSet(self.runs())

    def __len__(self) -> int:
        return len(self._starts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IntervalSet) and self.runs() == other.runs()

    def __repr__(self) -> str:
        return f"IntervalSet({self.runs()!r})"

    def parts(self) -> tuple[list[int], list[int]]:
        """The runs' starts and ends (the lists themselves: not to be changed)."""
        return self._starts, self._ends

    @classmethod
    def from_parts(cls, starts: list[int], ends: list[int]) -> IntervalSet:
        """The set whose runs are `parts()`' (sorted, disjoint, not touching)."""
        made = cls()
        made._install(starts, ends)
        return made

    def __getstate__(self) -> list[tuple[int, int]]:
        return self.runs()

    def __setstate__(self, runs: list[tuple[int, int]]) -> None:
        self._install([s for s, _ in runs], [e for _, e in runs])

    def _install(self, starts: list[int], ends: list[int]) -> None:
        self._starts, self._ends = starts, ends
        self.total = sum(ends) - sum(starts)
