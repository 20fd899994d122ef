"""Facts the sequencer looks up by id, kept outside its snapshot.

SPEC's duplicate rule and refunds need, for the last R of the log, every id seen
and what each order's refunds need. That grows with traffic, so it must not sit in one
snapshotted key. The sequencer asks a `Facts` store instead, passed in like the
settings. `MemoryFacts` (here) serves replays and the plain loop; live, the
flows pass a Redis store (`flows.facts_redis`) that keeps each fact with the log
position that first used it, so a re-run after a crash decides exactly as the
first run did, and lets Redis expire it.

A store also keeps wake-ups: keys to wake once the log's time passes a moment
(to forget a closed session past R; to approve an order line, then forget it),
so that those timers do not sit in the sequencer's snapshot either; and, per
buyer and item, the buyer's best scan of the item (SPEC "Last touch"), which the
sequencer matches an order line against (state.order_lines). That is one scan
per buyer and item however often the buyer scans: no fact grows with traffic.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from state.messages import Event
from state.retention import Recent

# The id field of each kind whose ids must be unique within R (SPEC's duplicate rule).
ID_FIELDS = {
    "share": "share_id",
    "scan": "scan_id",
    "order": "order_id",
    "refund": "refund_id",
    "payout": "payout_id",
}

# What the store keeps with an id's first use: a scan's attribution fields (a hint
# naming it needs them). An order keeps its buyer, time and the items that may have
# a line key (its refunds need them): `state.order_lines.order_fact`.
SCAN_FIELDS = ("ts", "item_id", "sharer_id", "share_id", "scanner_id")
PAYLOADS: dict[str, Callable[[Event], tuple[Any, ...]]] = {
    "scan": lambda e: tuple(e.get(f) for f in SCAN_FIELDS),
}


# What a store keeps of a buyer's best scan of an item: what an attribution names.
BEST_SCAN_FIELDS = ("ts", "scan_id", "sharer_id", "share_id")


def better_scan(ts: int, scan_id: str, than: tuple[int, str] | None) -> bool:
    """SPEC "Last touch" order, as `state.commissions.better` has it for events."""
    return than is None or (ts, scan_id) > than


class Facts(Protocol):
    def prepare(self, entries: Iterable[Any]) -> None:
        """Before a batch: fetch what its entries will ask (a no-op in memory)."""

    def flush(self) -> None:
        """After a batch: write what it changed (a no-op in memory)."""

    def settle(self) -> None:
        """Before a snapshot: wait until what `flush` wrote is stored (a no-op in
        memory)."""

    def first_use(
        self, kind: str, ident: str, ts: int, position: str, retention_ms: int, payload: Any = None
    ) -> bool:
        """True, and remembered, if no event of `kind` used `ident` within R
        before this one; False if one did (a duplicate)."""

    def lookup(self, kind: str, ident: str, ts: int, position: str, retention_ms: int) -> Any:
        """The payload of the first use of `ident` still within R, or None."""

    def forget_before(self, oldest_ts: int) -> None:
        """The log's time is past `oldest_ts + R`: what was first used before is gone."""

    def note_scan(self, touch: str, scan: Event, position: str) -> None:
        """`scan` is one of `touch`'s (state.messages.touch_key: its scanner's scans
        of its item, by another sharer's share)."""

    def best_scan(self, touch: str, position: str, since: int) -> Event | None:
        """The best scan (greatest ts, then scan_id) noted for `touch` before
        `position`, as a dict of BEST_SCAN_FIELDS; None if there is none, or it is
        forgotten: its ts is before `since`, the log's time less R (a store may hold
        it longer; the answer must not depend on that). Exact, also in a re-run
        after a crash. Forgetting never makes a worse scan the best: a scan worse
        than a forgotten one is no later, so forgotten too."""

    def checkpoint(self) -> None:
        """The sequencer's state is snapshotted here: a re-run after a crash may
        start after what was seen so far (a no-op in memory)."""

    def wake_at(self, due: int, key: str) -> None:
        """Ask for `key` among `due_between(a, t)` once t > due."""

    def unwake(self, due: int, key: str) -> None:
        """Withdraw the wake-up asked for `key` at `due`, if it is still to come:
        the key is gone for good (a line its refund spent). Only ever a saving: a
        wake-up that reaches nothing is harmless, so withdrawing one that was never
        asked, or has passed, does nothing."""

    def due_between(self, after: int, until: int) -> list[str]:
        """Keys whose wake-up time is in [after, until), by (time, key): the log's time just
        moved from `after` to `until` (both are the sequencer's, so a re-run after a
        crash asks again for the same span)."""


class MemoryFacts:
    """Every fact in process memory, forgotten oldest first (O(1) amortised)."""

    def __init__(self) -> None:
        # One queue for every kind: forgetting is one check per move of the log's time.
        self.recent: Recent[Any] = Recent()
        self.wakeups: list[tuple[int, str]] = []  # a heap
        # Withdrawn wake-ups, skipped when they come due; a heap of them too, so
        # that each leaves the set once its time has passed, asked or not.
        self.withdrawn: set[tuple[int, str]] = set()
        self.withdrawn_by_due: list[tuple[int, str]] = []

    def prepare(self, entries: Iterable[Any]) -> None:
        pass

    def flush(self) -> None:
        pass

    def settle(self) -> None:
        pass

    def checkpoint(self) -> None:
        pass

    def first_use(
        self, kind: str, ident: str, ts: int, position: str, retention_ms: int, payload: Any = None
    ) -> bool:
        key = f"{kind}:{ident}"
        if self._held(key, ts, retention_ms) is not None:
            return False
        self.recent.add(key, ts, payload)
        return True

    def lookup(self, kind: str, ident: str, ts: int, position: str, retention_ms: int) -> Any:
        kept = self._held(f"{kind}:{ident}", ts, retention_ms)
        return None if kept is None else kept[1]

    def _held(self, key: str, ts: int, retention_ms: int) -> tuple[int, Any] | None:
        """SPEC "Retention": `first.ts >= event.ts - R`, asked of the event's own ts.
        Held is not enough: an event whose ts lies behind the log's time may have
        been first used more than R before a later event (`Recent.add`)."""
        kept = self.recent.by_key.get(key)
        return kept if kept is not None and kept[0] >= ts - retention_ms else None

    def forget_before(self, oldest_ts: int) -> None:
        self.recent.forget_before(oldest_ts)

    def note_scan(self, touch: str, scan: Event, position: str) -> None:
        key = f"best_scan:{touch}"
        best: tuple[Any, ...] | None = self.recent.get(key)
        if better_scan(scan["ts"], scan["scan_id"], None if best is None else best[:2]):
            # Held for R from its own ts (`Recent` may hold it longer: `since` decides).
            self.recent.add(key, scan["ts"], tuple(scan[f] for f in BEST_SCAN_FIELDS))

    def best_scan(self, touch: str, position: str, since: int) -> Event | None:
        best: tuple[Any, ...] | None = self.recent.get(f"best_scan:{touch}")
        if best is None or best[0] < since:
            return None
        return dict(zip(BEST_SCAN_FIELDS, best, strict=True))

    def wake_at(self, due: int, key: str) -> None:
        self.withdrawn.discard((due, key))  # asked again after it was withdrawn
        heapq.heappush(self.wakeups, (due, key))

    def unwake(self, due: int, key: str) -> None:
        if (due, key) not in self.withdrawn:
            self.withdrawn.add((due, key))
            heapq.heappush(self.withdrawn_by_due, (due, key))

    def due_between(self, after: int, until: int) -> list[str]:
        due: list[str] = []
        wakeups, withdrawn = self.wakeups, self.withdrawn
        while wakeups and wakeups[0][0] < until:
            wake = heapq.heappop(wakeups)
            if withdrawn and wake in withdrawn:
                continue
            if not due or due[-1] != wake[1]:  # one wake per key and moment is enough
                due.append(wake[1])
        by_due = self.withdrawn_by_due
        while by_due and by_due[0][0] < until:
            withdrawn.discard(heapq.heappop(by_due))
        return due
