"""The sequencer's fact store for the live flows: one Redis key per fact.

Seen ids and what an order's refunds need (state.facts) grow with the traffic of the last
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

Each buyer's best scan of an item (`note_scan`, `best_scan`) is a fact too, kept
exact for a re-run by flows.best_scans: the sequencer matches order lines
against it.

Work per batch: one MGET before it, one write after it, answered later (the
facts' SETs in one script call: packing tens of thousands of SET commands in Python
cost more than Redis took to run them).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Iterable
from functools import lru_cache
from typing import Any, cast

import orjson
import redis

from billing import stream_ids
from billing.keys import Keys
from flows import best_scans
from flows.deferred_writes import Command, DeferredWrites, run_now
from state.facts import ID_FIELDS
from state.messages import BadEntry, Event, LogEvent, touch_key

WAKE_BUCKET_MS = 60_000
DAY_OF_BUCKETS = 86_400_000 // WAKE_BUCKET_MS
# How far ahead of the log's time wake-ups are loaded: an hour at least, a day at
# most, doubled while a load brings fewer than `wakeups_per_load` and halved when
# one brings more than four times that. A catch-up moves through hours of log time
# per batch, and each load is a wait on Redis (the writes sent before it, then two
# round trips): with an hour it loaded ten times a batch. Live traffic that fills
# an hour with more wake-ups keeps the hour, so memory stays bounded either way.
LOAD_AHEAD_BUCKETS = 60
MAX_LOAD_AHEAD_BUCKETS = DAY_OF_BUCKETS
WAKEUPS_PER_LOAD = 10_000
_NEVER = (2**63, 0)


@lru_cache(maxsize=1 << 16)  # a position is asked about several times in its batch
def stream_position(position: str) -> tuple[int, int]:
    """A log position in log order (positions that are no stream id sort last)."""
    try:
        return stream_ids.parse(position)
    except ValueError:
        return _NEVER


# The fact kind of best scans. ("touch" was a running max of layout 1, read by
# no version since: those facts expire.)
BEST_SCAN = "best_scan"


def _touch_ident(touch: str) -> str:
    """A best-scan fact is named by the touch key's `<item>|<person>` (state.messages)."""
    return touch.removeprefix("touch:")


# KEYS: the facts; ARGV: ttl_ms, then their values in the same order.
_SET_ALL = """
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i + 1], 'PX', ARGV[1])
end
return #KEYS
"""


class RedisFacts:
    def __init__(
        self,
        conn: redis.Redis,
        keys: Keys,
        ttl_ms: int,
        space: str,
        wakeups_per_load: int = WAKEUPS_PER_LOAD,
    ) -> None:
        """`space`: the sequencer key this store serves (state.sharding). Seen ids are
        the commission sequencer's alone; wake-ups are kept apart per sequencer key,
        since each reads back only its own. `wakeups_per_load` steers how far ahead
        wake-ups are loaded (LOAD_AHEAD_BUCKETS above)."""
        self.r, self.keys, self.ttl_ms, self.space = conn, keys, ttl_ms, space
        self._set_all = conn.register_script(_SET_ALL)
        # On a cluster each slot's writes go their own way, answered at once.
        self._writes = None if keys.cluster else DeferredWrites(conn)
        self._facts: dict[str, list[list[Any]]] = {}
        self._dirty: set[str] = set()
        self._buckets: dict[int, list[tuple[int, str]]] = {}  # wake-ups by bucket, sorted
        self._bucket_ids: list[int] = []  # the keys of _buckets, ascending
        self._loaded_upto = -1  # every bucket up to this one is in _buckets, if not empty
        self._ahead = LOAD_AHEAD_BUCKETS  # buckets loaded past the one asked for
        self._wakeups_per_load = wakeups_per_load
        self._new_wakes: list[tuple[int, str]] = []
        # Withdrawn in this batch (`unwake`): a ZREM at its flush, and kept out of
        # any bucket loaded meanwhile.
        self._withdrawn: set[tuple[int, str]] = set()
        # Nothing loaded is due in [_quiet_from, _quiet_until): the log's time moves
        # by small steps between wake-ups, and each step would otherwise cost a walk
        # of the buckets (`due_between`).
        self._quiet_from = self._quiet_until = 0
        # Where a re-run after a crash may start (flows.best_scans): where this
        # process began reading, then after each of the last snapshots.
        self._boundaries: deque[tuple[int, int]] = deque(maxlen=best_scans.BOUNDARIES_KEPT)
        self._last_seen: tuple[int, int] | None = None

    # -- a batch ---------------------------------------------------------------

    def prepare(self, entries: Iterable[Any]) -> None:
        wanted: list[str] = []
        # Entries come in log order: the first and the last position are enough.
        first: str | None = None
        last: str | None = None
        for entry in entries:
            if isinstance(entry, BadEntry):
                first, last = first or entry.position, entry.position
            if not isinstance(entry, LogEvent):
                continue
            first, last = first or entry.position, entry.position
            event = entry.event
            field = ID_FIELDS.get(event["type"])
            if field is not None:
                wanted.append(self.keys.fact(event["type"], event[field]))
            if event["type"] == "refund":
                wanted.append(self.keys.fact("order", event["order_id"]))
            elif event["type"] == "order":
                if event.get("scan_id") is not None:
                    wanted.append(self.keys.fact("scan", event["scan_id"]))
                buyer = event["buyer_id"]
                wanted += [
                    self.keys.fact(BEST_SCAN, _touch_ident(touch_key(ln["item_id"], buyer)))
                    for ln in event["lines"]
                ]
            elif event["type"] == "scan" and event.get("scanner_id") not in (
                None,
                event["sharer_id"],
            ):  # the scans the sequencer notes as a buyer's (`Sequencer._on_scan`)
                touch = touch_key(event["item_id"], event["scanner_id"])
                wanted.append(self.keys.fact(BEST_SCAN, _touch_ident(touch)))
        if first is not None and last is not None:
            self._seen(first)
            self._seen(last)
        wanted = [k for k in dict.fromkeys(wanted) if k not in self._facts]
        if wanted:
            found = self._mget(wanted)
            for key, raw in zip(wanted, found, strict=True):
                self._facts[key] = orjson.loads(raw) if raw else []

    def flush(self) -> None:
        # (keys, args) of one _SET_ALL call per slot (one call in all on one node).
        sets: list[tuple[list[str], list[int | bytes]]] = [
            (group, [self.ttl_ms, *(orjson.dumps(self._facts[key]) for key in group)])
            for group in self._by_slot(self._dirty)
        ]
        wakes = self._wake_commands()
        if self._writes is not None:
            # Answered later (flows.deferred_writes): before the next read, and
            # before the sequencer's snapshot. EVAL, not the registered script: in a
            # pipeline redis-py checks those with SCRIPT EXISTS first, one more round
            # trip per batch (4% of the commission sequencer's time); Redis caches
            # the body by its digest.
            evals = [("EVAL", _SET_ALL, len(keys), *keys, *args) for keys, args in sets]
            self._writes.send(evals + wakes)
        else:
            for keys, args in sets:  # one call per slot, routed by its keys
                self._set_all(keys=keys, args=args)
            run_now(self.r, wakes)
        self._facts.clear()
        self._dirty.clear()
        self._new_wakes.clear()
        self._withdrawn.clear()

    def settle(self) -> None:
        if self._writes is not None:
            self._writes.settle()

    def close(self) -> None:
        """Store what was sent, and close the writes' own connection (the client
        passed in is the caller's to close)."""
        if self._writes is not None:
            self._writes.close()

    def _wake_commands(self) -> list[Command]:
        by_bucket: dict[int, dict[str, int]] = {}
        for due, key in self._new_wakes:
            by_bucket.setdefault(due // WAKE_BUCKET_MS, {})[key] = due
        commands: list[Command] = []
        for due, key in sorted(self._withdrawn):
            b = due // WAKE_BUCKET_MS
            asked = by_bucket.get(b)
            if asked is not None and asked.get(key) == due:
                del asked[key]  # asked in this batch, then withdrawn: not sent
            # Asked in an earlier batch, or never (then a no-op).
            commands.append(("ZREM", self.keys.wakeups(b, self.space), key))
        by_bucket = {b: members for b, members in by_bucket.items() if members}
        for b, members in by_bucket.items():
            bucket = self.keys.wakeups(b, self.space)
            pairs = [x for member, due in members.items() for x in (due, member)]
            commands += [("ZADD", bucket, *pairs), ("PEXPIRE", bucket, self.ttl_ms)]
        if by_bucket:
            index = self.keys.wakeups_index(self.space)
            pairs = [x for b in by_bucket for x in (b, str(b))]
            commands += [("ZADD", index, *pairs), ("PEXPIRE", index, self.ttl_ms)]
        return commands

    def _mget(self, keys: list[str]) -> list[Any]:
        self.settle()
        if self.keys.cluster:  # facts of many slots: redis-py sends one MGET per slot
            return list(cast(Any, self.r).mget_nonatomic(keys))
        return list(self.r.mget(keys))

    def _by_slot(self, keys: set[str]) -> list[list[str]]:
        """One group on one node; on a cluster, one per fact shard (billing.keys: a
        fact key starts with its shard's hash tag)."""
        if not self.keys.cluster:
            return [list(keys)] if keys else []
        groups: dict[str, list[str]] = {}
        for key in keys:
            groups.setdefault(key.partition("}")[0], []).append(key)
        return list(groups.values())

    # -- questions ---------------------------------------------------------------

    def _uses(self, kind: str, ident: str) -> tuple[str, list[list[Any]]]:
        key = self.keys.fact(kind, ident)
        uses = self._facts.get(key)
        if uses is None:  # not prepared: ask now
            self.settle()
            raw: Any = self.r.get(key)
            uses = self._facts[key] = orjson.loads(raw) if raw else []
        return key, uses

    @staticmethod
    def _latest_before(uses: list[list[Any]], at: tuple[int, int]) -> list[Any] | None:
        earlier = [u for u in uses if stream_position(u[1]) < at]
        return max(earlier, key=lambda u: stream_position(u[1])) if earlier else None

    def first_use(
        self, kind: str, ident: str, ts: int, position: str, retention_ms: int, payload: Any = None
    ) -> bool:
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

    # -- buyers' best scans -------------------------------------------------------

    def _seen(self, position: str) -> None:
        at = stream_position(position)
        if at == _NEVER:
            return  # not a stream id (tests): no place a re-run starts
        if self._last_seen is None:
            self._boundaries.append(at)  # a re-run of this process starts here
        if self._last_seen is None or at > self._last_seen:
            self._last_seen = at

    def checkpoint(self) -> None:
        if self._last_seen is not None:
            ms, seq = self._last_seen
            self._boundaries.append((ms, seq + 1))  # before it: all seen so far

    def note_scan(self, touch: str, scan: Event, position: str) -> None:
        key, entries = self._uses(BEST_SCAN, _touch_ident(touch))
        if not self._boundaries:
            self._seen(position)  # asked without a prepared batch (tests)
        after = best_scans.noted(entries, scan, position, self._boundaries, stream_position)
        if after is not None:
            entries[:] = after
            self._dirty.add(key)

    def best_scan(self, touch: str, position: str, since: int) -> Event | None:
        _key, entries = self._uses(BEST_SCAN, _touch_ident(touch))
        return best_scans.best_before(entries, stream_position(position), since, stream_position)

    # -- wake-ups ----------------------------------------------------------------

    def wake_at(self, due: int, key: str) -> None:
        self._withdrawn.discard((due, key))  # asked again after it was withdrawn
        self._new_wakes.append((due, key))
        b = due // WAKE_BUCKET_MS
        if b <= self._loaded_upto:
            insort(self._bucket(b), (due, key))
            if due < self._quiet_until:
                self._quiet_until = due

    def unwake(self, due: int, key: str) -> None:
        """Out of the loaded bucket at once, out of Redis at the flush. A re-run after
        a crash that finds it still there is no worse off: it comes due only after
        the log's time passes the entry that withdrew it, which withdraws it again
        (the sequencer withdraws only wake-ups still to come)."""
        self._withdrawn.add((due, key))
        bucket = self._buckets.get(due // WAKE_BUCKET_MS)
        if bucket is not None:
            i = bisect_left(bucket, (due, key))
            if i < len(bucket) and bucket[i] == (due, key):
                del bucket[i]

    def _bucket(self, b: int) -> list[tuple[int, str]]:
        bucket = self._buckets.get(b)
        if bucket is None:
            bucket = self._buckets[b] = []
            insort(self._bucket_ids, b)
        return bucket

    def due_between(self, after: int, until: int) -> list[str]:
        """Buckets are loaded once each, as lists sorted by due (only this process
        adds to them, and it adds to its copy too). The log's time only moves
        forward, so loading goes forward too, and only non-empty buckets (from an
        index) are read: a jump over a quiet month costs one round trip."""
        if after <= 0 or until <= after:
            return []  # before the first event nothing can be due
        if after == self._quiet_from and until <= self._quiet_until:
            self._quiet_from = until
            return []
        first, last = after // WAKE_BUCKET_MS, (until - 1) // WAKE_BUCKET_MS
        if self._loaded_upto < first - 1:
            self._loaded_upto = first - 1  # a fresh process: start where the time is
        if last > self._loaded_upto:
            # Ahead by an hour or more: wake-ups added later to loaded buckets are
            # this process's own, and it adds them to its copy.
            self._load(self._loaded_upto + 1, last + self._ahead)
        ids, buckets = self._bucket_ids, self._buckets
        # The log's time has passed the buckets before `first`: nothing in them is due.
        passed = bisect_left(ids, first)
        for b in ids[:passed]:
            del buckets[b]
        del ids[:passed]
        # Only the buckets the span covers, in order: an hour is loaded ahead, and
        # walking all of it at every move of the time showed in profiles of catch-up.
        due_now: list[str] = []
        for b in ids[: bisect_right(ids, last)]:
            bucket = buckets[b]
            lo = bisect_left(bucket, (after, ""))
            hi = bisect_left(bucket, (until, ""))
            due_now += [s for _d, s in bucket[lo:hi]]
        self._quiet_from, self._quiet_until = until, self._next_due(until, last)
        return due_now

    def _next_due(self, until: int, last: int) -> int:
        """The first loaded wake-up due at or after `until` (in bucket `last` or a
        later one), or the end of what is loaded; `until` itself if not found soon."""
        ids, buckets = self._bucket_ids, self._buckets
        k = bisect_left(ids, last)
        for b in ids[k : k + 4]:  # buckets read from the index are rarely empty
            bucket = buckets[b]
            i = bisect_left(bucket, (until, ""))
            if i < len(bucket):
                return bucket[i][0]
        if k + 4 < len(ids):
            return until
        return (self._loaded_upto + 1) * WAKE_BUCKET_MS

    def _load(self, lo: int, hi: int) -> None:
        index = self.keys.wakeups_index(self.space)
        self.settle()
        found: Any = self.r.zrangebyscore(index, lo, hi)
        pipe = self.r.pipeline(transaction=False)
        for b in found:
            pipe.zrange(self.keys.wakeups(int(b), self.space), 0, -1, withscores=True)
        # A re-run after a crash starts a little back: keep a day of the index.
        pipe.zremrangebyscore(index, "-inf", lo - 1 - DAY_OF_BUCKETS)
        replies = pipe.execute()
        loaded = 0
        withdrawn = self._withdrawn
        for b, members in zip(found, replies, strict=False):
            wakes = sorted((int(score), m) for m, score in members)
            self._bucket(int(b))[:] = (
                [w for w in wakes if w not in withdrawn] if withdrawn else wakes
            )
            loaded += len(members)
        if loaded < self._wakeups_per_load:
            self._ahead = min(2 * self._ahead, MAX_LOAD_AHEAD_BUCKETS)
        elif loaded > 4 * self._wakeups_per_load:
            self._ahead = max(self._ahead // 2, LOAD_AHEAD_BUCKETS)
        for due, key in self._new_wakes:
            if lo <= due // WAKE_BUCKET_MS <= hi and (due, key) not in withdrawn:
                insort(self._bucket(due // WAKE_BUCKET_MS), (due, key))
        self._loaded_upto = hi
