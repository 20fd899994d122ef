"""A buyer's best scan of an item in Redis, exact for a re-run after a crash.

The commission sequencer matches an order line against the buyer's best scan of
the item (state.order_lines), so the live fact store must answer "the best scan
noted before position p" exactly, also when bytewax re-runs the input since its
last committed snapshot and the store already holds what the lost run noted after
it. A running max alone cannot: a re-run would find a scan noted later.

So a fact is a short list of entries `[ts, scan_id, sharer_id, share_id, position]`,
sorted by position, each the best scan as of its position, and the answer at p is
the last entry before p. A re-run starts where a snapshot was taken (a
`boundary`: the first position after it), and re-notes every scan after it, so
the list needs only the last entry before each boundary a re-run may still start
at, and the newest. Noting at p drops any entry after p (a lost run's, redone by
the re-run as it goes on) and keeps, besides the new best, the last entry before
each boundary: a list of at most `len(boundaries) + 1` entries, however often the
buyer scans the item.

Which boundaries: bytewax resumes at the last snapshot it committed, at most one
behind the last one taken (flows.redis_source trims the input on the same
ground), so two would do; the store keeps the last four (`BOUNDARIES_KEPT`), the
first of them where its process began reading, which is where a re-run of a
re-run begins until the process has taken snapshots of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from state.facts import BEST_SCAN_FIELDS, better_scan

Position = tuple[int, int]
Entry = list[Any]  # [ts, scan_id, sharer_id, share_id, position]

BOUNDARIES_KEPT = 4


def best_before(
    entries: list[Entry], at: Position, since: int, position_of: Any
) -> dict[str, Any] | None:
    """The best scan noted before `at`, as a dict of BEST_SCAN_FIELDS; None if
    there is none or it is forgotten (its ts before `since`)."""
    for entry in reversed(entries):
        if position_of(entry[4]) < at:
            return None if entry[0] < since else dict(zip(BEST_SCAN_FIELDS, entry[:4], strict=True))
    return None


def noted(
    entries: list[Entry],
    scan: dict[str, Any],
    position: str,
    boundaries: Iterable[Position],
    position_of: Any,
) -> list[Entry] | None:
    """`entries` after noting `scan` at `position`, or None if they stay as they are."""
    at = position_of(position)
    earlier = [e for e in entries if position_of(e[4]) < at]
    base = earlier[-1] if earlier else None
    better = base is None or better_scan(scan["ts"], scan["scan_id"], (base[0], base[1]))
    if not better and len(earlier) == len(entries):
        return None  # the common case for a scan that is not the best: nothing to write
    if better:
        earlier.append([scan["ts"], scan["scan_id"], scan["sharer_id"], scan["share_id"], position])
    keep = {len(earlier) - 1}
    for boundary in boundaries:
        for i in range(len(earlier) - 1, -1, -1):
            if position_of(earlier[i][4]) < boundary:
                keep.add(i)
                break
    return [earlier[i] for i in sorted(keep)]
