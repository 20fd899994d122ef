"""Facts the sequencer looks up by id, kept outside its snapshot.

SPEC's duplicate rule and refunds need, for the last R of the log, every id seen
and each order's items. That grows with traffic, so it must not sit in one
snapshotted key. The sequencer asks a `Facts` store instead, passed in like the
settings. `MemoryFacts` (here) serves replays and the plain loop; live, the
flows pass a Redis store (`flows.facts_redis`) that keeps each fact with the log
position that first used it, so a re-run after a crash decides exactly as the
first run did, and lets Redis expire it.

A store also keeps *due* session ids: sessions to wake once the log's time
passes a moment (to forget a closed session past R), so that those timers do not sit
in the sequencer's snapshot either.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any, Protocol

from state.retention import Recent


class Facts(Protocol):
    def prepare(self, entries: Iterable[Any]) -> None:
        """Before a batch: fetch what its entries will ask (a no-op in memory)."""

    def flush(self) -> None:
        """After a batch: write what it changed (a no-op in memory)."""

    def first_use(self, kind: str, ident: str, ts: int, position: str,
                  retention_ms: int, payload: Any = None) -> bool:
        """True, and remembered, if no event of `kind` used `ident` within R
        before this one; False if one did (a duplicate)."""

    def lookup(self, kind: str, ident: str, ts: int, position: str,
               retention_ms: int) -> Any:
        """The payload of the first use of `ident` still within R, or None."""

    def forget_before(self, oldest_ts: int) -> None:
        """The log's time is past `oldest_ts + R`: what was first used before is gone."""

    def wake_at(self, due: int, session_id: str) -> None:
        """Ask for `session_id` among `due_between(a, t)` once t > due."""

    def due_between(self, after: int, until: int) -> list[str]:
        """Session ids whose wake-up time is in [after, until): the log's time just
        moved from `after` to `until` (both are the sequencer's, so a re-run after a
        crash asks again for the same span)."""


class MemoryFacts:
    """Every fact in process memory, forgotten oldest first (O(1) amortised)."""

    def __init__(self) -> None:
        # One queue for every kind: forgetting is one check per move of the log's time.
        self.recent: Recent[Any] = Recent()
        self.wakeups: deque[tuple[int, str]] = deque()

    def prepare(self, entries: Iterable[Any]) -> None:
        pass

    def flush(self) -> None:
        pass

    def first_use(self, kind: str, ident: str, ts: int, position: str,
                  retention_ms: int, payload: Any = None) -> bool:
        key = f"{kind}:{ident}"
        if key in self.recent:
            return False
        self.recent.add(key, ts, payload)
        return True

    def lookup(self, kind: str, ident: str, ts: int, position: str, retention_ms: int) -> Any:
        return self.recent.get(f"{kind}:{ident}")

    def forget_before(self, oldest_ts: int) -> None:
        self.recent.forget_before(oldest_ts)

    def wake_at(self, due: int, session_id: str) -> None:
        # Asked in the order of their due times (each is a close time + R, and
        # closes are handled in time order), so a deque stays sorted.
        self.wakeups.append((due, session_id))

    def due_between(self, after: int, until: int) -> list[str]:
        due: list[str] = []
        wakeups = self.wakeups
        while wakeups and wakeups[0][0] < until:
            due.append(wakeups.popleft()[1])
        return due
