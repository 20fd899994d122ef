"""The sequencer's fact store for the live flows: one Redis key per fact.

Seen ids and what an order's refunds need (state.facts) grow with the traffic of the last
R, so they live here rather than in the sequencer's snapshot: the snapshot stays
small. Live they carry no TTL: Redis's clock is not the log's (the flows may stand
still for days), so they are forgotten by the log's time, by flows.fact_sweeper,
behind the horizon this store publishes at each snapshot (`checkpoint`).

Crash safety: bytewax re-runs the input since the last snapshot, and this store
then already holds what that input wrote. So each fact keeps the log position of
its uses (the last before each place a re-run may start, the newest, and any
later ones), and a question asked at position p looks only at uses before p: a
re-run, which starts at the last snapshot or the one before, decides exactly as the
first run did, even when that epoch covered more than R (a quiet log's catch-up).
Wake-ups are sorted sets, one per minute of log time, read by the span of log time
the sequencer moves over (flows.wake_buckets): a re-run reads the same span again.

Each buyer's best scan of an item (`note_scan`, `best_scan`) is a fact too, kept
exact for a re-run by flows.best_scans: the sequencer matches order lines
against it. And a store keeps its sequencer's open sessions' clocks and its rule
and tariff catalogs beside the snapshot (`tables`, flows.snapshot_tables).

Work per batch: one MGET before it, one write after it, answered later (the
facts' SETs in one script call: packing tens of thousands of SET commands in Python
cost more than Redis took to run them).
"""

from __future__ import annotations

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
from flows.snapshot_tables import SnapshotTables
from flows.wake_buckets import WAKEUPS_PER_LOAD, WakeBuckets
from state.facts import ID_FIELDS
from state.messages import BadEntry, Event, LogEvent, touch_key
from state.sharding import COMMISSIONS

_NEVER = (2**63, 0)  # where positions that are no stream id sort


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


# KEYS: the group's index of buckets (flows.fact_sweeper), then per bucket its key and
# its facts; ARGV: ttl_ms (0: none), the number of buckets, per bucket the number of
# its facts and where its minute ends, then the facts' values in KEYS's order. With
# a TTL no bucket is written (Redis forgets the facts), and KEYS[2..] are the facts.
_SET_ALL = """
local ttl, buckets = ARGV[1], tonumber(ARGV[2])
local k, v = 2, 3 + 2 * buckets
local function set(key)
  if ttl == '0' then
    redis.call('SET', key, ARGV[v])
  else
    redis.call('SET', key, ARGV[v], 'PX', ttl)
  end
  v = v + 1
end
if buckets == 0 then
  for i = 2, #KEYS do set(KEYS[i]) end
  return #KEYS - 1
end
for b = 1, buckets do
  local count, bucket = tonumber(ARGV[1 + 2 * b]), KEYS[k]
  redis.call('ZADD', KEYS[1], ARGV[2 + 2 * b], bucket)
  for i = k + 1, k + count do
    set(KEYS[i])
    redis.call('SADD', bucket, KEYS[i])
  end
  k = k + count + 1
end
return v - 3 - 2 * buckets
"""
MINUTE_MS = 60_000


def newest_use(entries: list[list[Any]]) -> int | None:
    """The `ts` of a fact's newest use or best scan: its entries' first field."""
    tss = [e[0] for e in entries if e and type(e[0]) is int]
    return max(tss) if tss else None


class RedisFacts:
    def __init__(
        self,
        conn: redis.Redis,
        keys: Keys,
        ttl_ms: int | None,
        space: str,
        wakeups_per_load: int = WAKEUPS_PER_LOAD,
    ) -> None:
        """`ttl_ms`: how long Redis keeps a fact or a wake-up, or None: until the log's
        time has passed it (live: flows.fact_sweeper deletes facts behind the horizon
        this store publishes, and the wake-ups' buckets go as the log's time passes
        them). `space`: the sequencer key this store serves (state.sharding). Seen ids
        are the commission sequencer's alone; wake-ups are kept apart per sequencer
        key, since each reads back only its own. `wakeups_per_load` steers how far
        ahead wake-ups are loaded (flows.wake_buckets)."""
        self.r, self.keys, self.ttl_ms, self.space = conn, keys, ttl_ms, space
        self._set_all = conn.register_script(_SET_ALL)
        # On a cluster each slot's writes go their own way, answered at once.
        self._writes = None if keys.cluster else DeferredWrites(conn)
        self._facts: dict[str, list[list[Any]]] = {}
        self._dirty: set[str] = set()
        self.wakes = WakeBuckets(conn, keys, ttl_ms, space, self.settle, wakeups_per_load)
        # Its sequencer's clocks and catalogs, beside the snapshot.
        self.tables = SnapshotTables(conn, keys, space)
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
            if isinstance(entry, LogEvent | BadEntry):
                first, last = first or entry.position, entry.position
            if not isinstance(entry, LogEvent):
                continue
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
        sets = [self._set_all_args(group) for group in self.keys.facts_by_slot(self._dirty)]
        wakes = self.wakes.commands()
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

    def _set_all_args(self, group: list[str]) -> tuple[list[str], list[int | bytes]]:
        """(keys, args) of one _SET_ALL call for one slot's facts (one call in all on one
        node). Live (no TTL) each fact goes into the bucket of its newest use's minute,
        so that the sweeper finds it there once that minute is behind its cutoff."""
        tag = self.keys.fact_tag(group[0])
        if self.ttl_ms:
            values = [orjson.dumps(self._facts[key]) for key in group]
            return [self.keys.fact_index(tag), *group], [self.ttl_ms, 0, *values]
        by_minute: dict[int, list[str]] = {}
        for key in group:
            newest = newest_use(self._facts[key])
            # (None: an empty fact, which answers what no fact does: the first
            # minute's bucket, and the sweeper deletes it.)
            by_minute.setdefault((newest or 0) // MINUTE_MS, []).append(key)
        keys, counts, facts = [self.keys.fact_index(tag)], [], []
        for minute, names in by_minute.items():
            keys += [self.keys.fact_bucket(tag, minute), *names]
            counts += [len(names), (minute + 1) * MINUTE_MS - 1]
            facts += names
        values = [orjson.dumps(self._facts[key]) for key in facts]
        return keys, [0, len(by_minute), *counts, *values]

    def settle(self) -> None:
        if self._writes is not None:
            self._writes.settle()

    def close(self) -> None:
        """Store what was sent, and close the writes' own connection (the client
        passed in is the caller's to close)."""
        if self._writes is not None:
            self._writes.close()

    def _mget(self, keys: list[str]) -> list[Any]:
        self.settle()
        if self.keys.cluster:  # facts of many slots: redis-py sends one MGET per slot
            return list(cast(Any, self.r).mget_nonatomic(keys))
        return list(self.r.mget(keys))

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
            # Keep the use this one supersedes and the last use before each place a
            # re-run after a crash may start (it asks again from there), and any
            # later ones (a crashed run's). A re-run reaches back an epoch or two,
            # and a catch-up of a quiet log can cover more than R in one epoch, so
            # the use before the superseded one may still be asked about.
            earlier = {latest[1]: latest} if latest is not None else {}
            for boundary in self._boundaries:
                if boundary < at and (use := self._latest_before(uses, boundary)) is not None:
                    earlier[use[1]] = use
            later = [u for u in uses if stream_position(u[1]) > at]
            kept = sorted(earlier.values(), key=lambda u: stream_position(u[1]))
            uses[:] = [*kept, [ts, position, payload], *later]
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
        self.wakes.checkpoint()
        if self._last_seen is not None:
            ms, seq = self._last_seen
            self._boundaries.append((ms, seq + 1))  # before it: all seen so far
        horizon = self.wakes.earliest_restart()
        if self.space == COMMISSIONS and horizon is not None:
            # No re-run starts before it: the sweeper may forget facts R and the
            # margin behind (the facts are the commission sequencer's alone).
            command: Command = ("SET", self.keys.facts_horizon, horizon)
            if self._writes is not None:
                self._writes.send([command])
            else:
                run_now(self.r, [command])

    def note_scan(self, touch: str, scan: Event, position: str) -> None:
        key, entries = self._uses(BEST_SCAN, _touch_ident(touch))
        after = best_scans.noted(entries, scan, position, self._boundaries, stream_position)
        if after is not None:
            entries[:] = after
            self._dirty.add(key)

    def best_scan(self, touch: str, position: str, since: int) -> Event | None:
        _key, entries = self._uses(BEST_SCAN, _touch_ident(touch))
        return best_scans.best_before(entries, stream_position(position), since, stream_position)

    # -- wake-ups (flows.wake_buckets) --------------------------------------------

    def wake_at(self, due: int, key: str) -> None:
        self.wakes.wake_at(due, key)

    def unwake(self, due: int, key: str) -> None:
        self.wakes.unwake(due, key)

    def due_between(self, after: int, until: int) -> list[str]:
        return self.wakes.due_between(after, until)
