"""The sequencer's fact store for the live flows: one Redis key per fact.

Seen ids and each order's items (state.facts) grow with the traffic of the last
R, so they live here rather than in the sequencer's snapshot: the snapshot stays
small, and Redis forgets each fact by itself (a TTL of R plus a margin; the log's
time is Redis's clock, so a fact outlives its R unless the flows lag behind the
stream by more than the margin).

Crash safety: bytewax re-runs the input since the last snapshot, and this store
then already holds what that input wrote. So each fact keeps the log position of
its first uses (the last two, when Retention lets an id come back), and a
question asked at position p looks only at uses before p: a re-run that starts
less than R before the crash (it starts at the last snapshot, an epoch back)
decides exactly as the first run did. Wake-ups are sorted sets, one
per time bucket, read by the span of log time the sequencer moves over, and
never deleted (they expire): a re-run reads the same span again.

Work per batch: one MGET before it, one pipeline after it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import redis

from billing.keys import Keys
from state.messages import LogEvent
from state.sequencer import ID_FIELDS

WAKE_BUCKET_MS = 60_000
_NEVER = (2**63, 0)


def stream_position(position: str) -> tuple[int, int]:
    """Stream ids (`ms-seq`) in log order."""
    ms, _, seq = position.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return _NEVER


class RedisFacts:
    def __init__(self, conn: redis.Redis, keys: Keys, ttl_ms: int) -> None:
        self.r, self.keys, self.ttl_ms = conn, keys, ttl_ms
        self._facts: dict[str, list[list[Any]]] = {}
        self._dirty: set[str] = set()
        self._wakes: dict[int, dict[str, int]] = {}  # buckets read this batch, and new ones
        self._new_wakes: list[tuple[int, str]] = []

    # -- a batch ---------------------------------------------------------------

    def prepare(self, entries: Iterable[Any]) -> None:
        wanted: list[str] = []
        for entry in entries:
            if not isinstance(entry, LogEvent):
                continue
            event = entry.event
            field = ID_FIELDS.get(event["type"])
            if field is not None:
                wanted.append(self.keys.fact(event["type"], event[field]))
            if event["type"] == "refund":
                wanted.append(self.keys.fact("order", event["order_id"]))
        wanted = [k for k in dict.fromkeys(wanted) if k not in self._facts]
        if wanted:
            found: list[Any] = self.r.mget(wanted)
            for key, raw in zip(wanted, found, strict=True):
                self._facts[key] = json.loads(raw) if raw else []

    def flush(self) -> None:
        pipe = self.r.pipeline(transaction=False)
        for key in self._dirty:
            pipe.set(key, json.dumps(self._facts[key], separators=(",", ":")), px=self.ttl_ms)
        for due, session_id in self._new_wakes:
            bucket = self.keys.wakeups(due // WAKE_BUCKET_MS)
            pipe.zadd(bucket, {session_id: due})
            pipe.pexpire(bucket, self.ttl_ms)
        if self._dirty or self._new_wakes:
            pipe.execute()
        self._facts.clear()
        self._dirty.clear()
        self._new_wakes.clear()
        self._wakes.clear()

    # -- questions ---------------------------------------------------------------

    def _uses(self, kind: str, ident: str) -> tuple[str, list[list[Any]]]:
        key = self.keys.fact(kind, ident)
        uses = self._facts.get(key)
        if uses is None:  # not prepared: ask now
            raw: Any = self.r.get(key)
            uses = self._facts[key] = json.loads(raw) if raw else []
        return key, uses

    @staticmethod
    def _latest_before(uses: list[list[Any]], at: tuple[int, int]) -> list[Any] | None:
        earlier = [u for u in uses if stream_position(u[1]) < at]
        return max(earlier, key=lambda u: stream_position(u[1])) if earlier else None

    def first_use(self, kind: str, ident: str, ts: int, position: str,
                  retention_ms: int, payload: Any = None) -> bool:
        key, uses = self._uses(kind, ident)
        at = stream_position(position)
        latest = self._latest_before(uses, at)
        if latest is not None and latest[0] >= ts - retention_ms:
            return False
        if not any(u[1] == position for u in uses):
            # Keep the use this one supersedes (a re-run that starts before this
            # position needs it) and any later ones (a crashed run's); older uses
            # matter only to a re-run reaching back more than R, which cannot be.
            later = [u for u in uses if stream_position(u[1]) > at]
            uses[:] = [*([latest] if latest is not None else []), [ts, position, payload], *later]
            self._dirty.add(key)
        return True

    def lookup(self, kind: str, ident: str, ts: int, position: str, retention_ms: int) -> Any:
        _key, uses = self._uses(kind, ident)
        latest = self._latest_before(uses, stream_position(position))
        if latest is None or latest[0] < ts - retention_ms:
            return None
        payload = latest[2]
        return tuple(payload) if isinstance(payload, list) else payload

    def forget_before(self, oldest_ts: int) -> None:
        pass  # Redis expires each fact

    # -- wake-ups ----------------------------------------------------------------

    def wake_at(self, due: int, session_id: str) -> None:
        self._new_wakes.append((due, session_id))
        bucket = self._wakes.get(due // WAKE_BUCKET_MS)
        if bucket is not None:
            bucket[session_id] = due

    def due_between(self, after: int, until: int) -> list[str]:
        if after <= 0 or until <= after:
            return []  # before the first event nothing can be due
        first, last = after // WAKE_BUCKET_MS, (until - 1) // WAKE_BUCKET_MS
        missing = [b for b in range(first, last + 1) if b not in self._wakes]
        if missing:
            pipe = self.r.pipeline(transaction=False)  # one round trip for all buckets
            for b in missing:
                pipe.zrange(self.keys.wakeups(b), 0, -1, withscores=True)
            for b, members in zip(missing, pipe.execute(), strict=True):
                self._wakes[b] = {m: int(score) for m, score in members}
            for due, session_id in self._new_wakes:
                if due // WAKE_BUCKET_MS in missing:
                    self._wakes[due // WAKE_BUCKET_MS][session_id] = due
        due_now = []
        for b in range(first, last + 1):
            due_now += [(d, s) for s, d in self._wakes[b].items() if after <= d < until]
        return [s for _d, s in sorted(due_now)]
