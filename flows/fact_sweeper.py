"""Forgets the sequencer's facts in Redis by the log's time, not by Redis's clock.

The facts (seen ids, orders for their refunds, buyers' best scans: flows.facts_redis)
once expired by a TTL of R and a margin on Redis's clock. That is the log's time only
while the flows keep up: had they stood still for longer than the margin (a long
outage, a store that needs an operator), facts an event within R still needs would
have expired, and a duplicate order would have been billed again. So facts carry no
TTL: the commission sequencer publishes, at each snapshot, the log's time where a
re-run after a crash may start at the earliest (`Keys.facts_horizon`), and this
sweeper deletes a fact once its newest use is more than R and the margin before it.
A re-run asks only from there on, where such a fact answers nothing (SPEC
"Retention"), and an event up to the margin behind the log's time still finds it.

It runs in the `billing flows` supervisor, a step per tick (more while there is more
behind the cutoff, within 50 ms a tick). Each fact written live is also a member of
the bucket of its newest use's minute (flows.facts_redis), in an index per group of
facts a script may take (one group on one node, one per fact shard on a cluster). A
step takes the buckets whose minute is behind the cutoff from each index's head and
checks and deletes their facts in one script, so that a fact the flows rewrite
meanwhile is never lost (the script reads the value it deletes; a rewritten fact is
in its new minute's bucket too). Its cost follows the facts deleted. It once was an
incremental SCAN of the deployment's facts, which examined every fact still within R
and the margin again at each pass: at 1M events, 0.93 facts examined per event to
delete 0.32, most of Redis's rise in work per event past the first R. The SCAN stays
for facts an earlier version wrote (`LegacyFactScan`), until none can be left.

The sink's applied marks (billing.sharer_view: one per commission and payout output,
so that an output given again after a crash is counted once in the balances) are
forgotten by the same horizon (`MarkSweeper`). They too once expired by a TTL of R and
the margin on Redis's clock, so a stop of the flows longer than that, followed by a
crash's re-run, would have counted outputs of the epoch before the crash twice in the
sharers' balances. An output given again has a `ts` at or after where its re-run
started (an approval or an idle close is given only once the log's time passes its
`ts`), and the input stream keeps R of log behind the horizon, so even a run started
afresh from the stream's start finds every mark it needs. Marks sit in buckets of a
minute of log time, indexed by where each ends, so that the sweeper drops whole
buckets from the index's head: a SCAN for them, as for the facts, raised Redis's CPU
per event in a 1M catch-up from 22 to 33 µs (each pass examines the whole keyspace,
three quarters of which is the read side).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

import redis

from billing import stream_ids
from billing.keys import Keys
from flows.facts_redis import MINUTE_MS

STEP_KEYS = 500
Step = tuple[int, bool]  # keys deleted, whether to go on

# A fact is a JSON list of entries whose first field is the `ts` of a use (or of a
# best scan): the newest, or nil for anything else.
_NEWEST_USE = """
local function newest_use(raw)
  local ok, entries = pcall(cjson.decode, raw)
  local newest = nil
  if ok and type(entries) == 'table' then
    for _, entry in ipairs(entries) do
      if type(entry) == 'table' and type(entry[1]) == 'number'
          and (newest == nil or entry[1] > newest) then
        newest = entry[1]
      end
    end
  end
  return newest
end
"""

# KEYS: facts of one slot; ARGV[1]: the cutoff. A fact whose newest use is before
# the cutoff goes. Anything else is kept (layout 1's touch facts, read by no
# version since, carry the TTL they were written with).
_SWEEP = (
    _NEWEST_USE
    + """
local cutoff = tonumber(ARGV[1])
local gone = 0
for i = 1, #KEYS do
  local raw = redis.pcall('GET', KEYS[i])
  if type(raw) == 'string' then
    local newest = newest_use(raw)
    if newest ~= nil and newest < cutoff then
      redis.call('DEL', KEYS[i])
      gone = gone + 1
    end
  end
end
return gone
"""
)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _steps(
    conn: redis.Redis, keys: Keys, keep_ms: int, budget_s: float, one: Callable[[int], Step]
) -> int:
    """`one(cutoff)` until it says there is no more or `budget_s` is spent: the keys
    deleted. What lies before the cutoff may go: `keep_ms` behind the horizon the
    commission sequencer published (nothing before its first snapshot)."""
    horizon = conn.get(keys.facts_horizon)
    if horizon is None:
        return 0
    cutoff = int(horizon) - keep_ms
    deadline = time.monotonic() + budget_s
    gone = 0
    while True:
        deleted, more = one(cutoff)
        gone += deleted
        if not more or time.monotonic() >= deadline:
            return gone


# KEYS: a group's index of buckets of facts, then buckets whose minute is behind the
# cutoff; ARGV: the cutoff, how many facts to examine at most. Each examined fact
# leaves its bucket; one whose newest use is before the cutoff goes (one used since is
# in a later bucket too, which keeps it), as does one with no dated entry (it answers
# nothing). An emptied bucket leaves the index. Returns {deleted, examined}.
_SWEEP_BUCKETS = (
    _NEWEST_USE
    + """
local cutoff, budget = tonumber(ARGV[1]), tonumber(ARGV[2])
local gone, examined = 0, 0
for b = 2, #KEYS do
  if examined >= budget then break end
  for _, key in ipairs(redis.call('SPOP', KEYS[b], budget - examined)) do
    examined = examined + 1
    local raw = redis.pcall('GET', key)
    if type(raw) == 'string' then
      local newest = newest_use(raw)
      if newest == nil or newest < cutoff then
        redis.call('DEL', key)
        gone = gone + 1
      end
    end
  end
  if redis.call('EXISTS', KEYS[b]) == 0 then redis.call('ZREM', KEYS[1], KEYS[b]) end
end
return {gone, examined}
"""
)


class FactSweeper:
    """Facts by the buckets of their newest use's minute (flows.facts_redis), taken
    from each index's head: a step's cost follows the facts deleted, not those held.
    Facts written before the buckets are found by SCAN (`LegacyFactScan`) until none
    can remain."""

    BUCKETS_PER_STEP = 200

    def __init__(self, conn: redis.Redis, keys: Keys, keep_ms: int) -> None:
        """`keep_ms`: R and the margin (`facts_ttl_margin_ms`)."""
        self.r, self.keys, self.keep_ms = conn, keys, keep_ms
        self._sweep = conn.register_script(_SWEEP_BUCKETS)
        self.legacy = LegacyFactScan(conn, keys, keep_ms)

    def step(self, budget_s: float = 0.0) -> int:
        """The buckets behind the cutoff, `STEP_KEYS` facts at a time while `budget_s`
        lasts, then a step of the legacy SCAN while one is needed: the facts deleted.
        Nothing before the commission sequencer has published a horizon."""
        gone = _steps(self.r, self.keys, self.keep_ms, budget_s, self._one)
        return gone + self.legacy.step(budget_s)

    def _one(self, cutoff: int) -> Step:
        # Whole minutes: a fact goes once its newest use's minute is behind the cutoff,
        # whichever bucket it is found in (one it has left holds it until it is taken).
        cutoff = cutoff // MINUTE_MS * MINUTE_MS
        indexes = [self.keys.fact_index(tag) for tag in self.keys.fact_tags()]
        pipe: Any = self.r.pipeline(transaction=False)
        for index in indexes:
            pipe.zrangebyscore(index, "-inf", cutoff - 1, 0, self.BUCKETS_PER_STEP)
        gone, more = 0, False
        for index, found in zip(indexes, pipe.execute(), strict=True):
            if not found:
                continue
            names = [_text(k) for k in found]
            deleted, examined = self._sweep(keys=[index, *names], args=[cutoff, STEP_KEYS])
            gone += int(deleted)
            more = more or examined >= STEP_KEYS or len(found) == self.BUCKETS_PER_STEP
        return gone, more

    def sweep_all(self) -> int:
        """Every fact behind the cutoff (tests), and a whole legacy SCAN pass."""
        gone = _steps(self.r, self.keys, self.keep_ms, 3600.0, self._one)
        return gone + self.legacy.sweep_all()


class LegacyFactScan:
    """Facts written before the buckets (an earlier version's), found by an incremental
    SCAN of the deployment's facts, each chunk's keys checked and deleted in one
    script, until a pass begun once the cutoff has passed where the upgrade found the
    log cannot find one (`Keys.facts_legacy_until`, set when the supervisor first
    starts: the log's time the flows may have read, or -1 where no fact was there)."""

    def __init__(self, conn: redis.Redis, keys: Keys, keep_ms: int) -> None:
        self.r, self.keys, self.keep_ms = conn, keys, keep_ms
        self._sweep = conn.register_script(_SWEEP)
        self._scan: Iterator[Any] | None = None
        self._pass_cutoff = 0  # the cutoff when the current pass began
        self._until: int | None = None

    def note_upgrade(self) -> None:
        """Where legacy facts may reach, once per deployment, before the flows run: the
        log's last entry or the flows' last read position, whichever is later, if any
        fact is there (facts are written only for entries read); -1 if none is."""
        if self.r.exists(self.keys.facts_legacy_until):
            return
        until = -1
        if next(self.r.scan_iter(match=self.keys.fact_pattern(), count=1000), None) is not None:
            last: Any = self.r.xrevrange(self.keys.events, count=1)
            read: Any = self.r.get(self.keys.flows_position)
            horizon: Any = self.r.get(self.keys.facts_horizon)
            ids = [last[0][0] if last else None, read]
            times = [stream_ids.parse(_text(i))[0] for i in ids if i is not None]
            until = max([*times, int(horizon or 0)])
        self.r.set(self.keys.facts_legacy_until, until, nx=True)

    def _needed(self) -> bool:
        if self._until is None:
            self.note_upgrade()
            self._until = int(self.r.get(self.keys.facts_legacy_until) or -1)
        return self._until >= 0

    def step(self, budget_s: float = 0.0) -> int:
        """One chunk of the SCAN, and more while the chunks are mostly facts to delete
        and `budget_s` lasts: the facts deleted. One chunk a tick (2,500 keys a second
        in the supervisor) keeps up with a few thousand facts a second at most; a
        busier deployment's chunks come back full of expired facts, and then the
        sweeper goes on within its budget."""
        if not self._needed():
            return 0
        return _steps(self.r, self.keys, self.keep_ms, budget_s, self._one)

    def _one(self, cutoff: int) -> Step:
        if self._scan is None:  # a new pass over the keyspace
            self._scan = self.r.scan_iter(match=self.keys.fact_pattern(), count=STEP_KEYS)
            self._pass_cutoff = cutoff
        examined, deleted = self._chunk(cutoff)
        if self._scan is None and self._until is not None and self._pass_cutoff > self._until:
            # A whole pass behind every legacy fact's newest use: none is left.
            self.r.set(self.keys.facts_legacy_until, -1)
            self._until = -1
            return deleted, False
        busy = examined == STEP_KEYS and 4 * deleted >= examined
        return deleted, busy and self._scan is not None

    def _chunk(self, cutoff: int) -> tuple[int, int]:
        try:
            found = list(islice(self._scan or iter(()), STEP_KEYS))
        except redis.RedisError:
            self._scan = None  # a new pass next time
            raise
        if len(found) < STEP_KEYS:
            self._scan = None
        names = [_text(k) for k in found]
        groups = self.keys.facts_by_slot(names)
        return len(found), sum(int(self._sweep(keys=g, args=[cutoff])) for g in groups)

    def sweep_all(self) -> int:
        """A whole pass (tests), while one is needed."""
        gone = self.step()
        while self._scan is not None:
            gone += self.step()
        return gone


# KEYS: the index of mark buckets, then buckets to drop; the marks dropped.
_DROP_BUCKETS = """
local gone = 0
for i = 2, #KEYS do gone = gone + redis.call('HLEN', KEYS[i]) end
redis.call('DEL', unpack(KEYS, 2))
redis.call('ZREM', KEYS[1], unpack(KEYS, 2))
return gone
"""


class MarkSweeper:
    """The sink's applied marks: whole buckets (a minute of log time each, indexed by
    where it ends) once all of it is behind the cutoff. No SCAN: a step reads the
    index's head, so its cost follows the marks deleted, not the keyspace."""

    BUCKETS_PER_STEP = 200

    def __init__(self, conn: redis.Redis, keys: Keys, keep_ms: int) -> None:
        """`keep_ms`: R and the margin (`facts_ttl_margin_ms`), as for the facts."""
        self.r, self.keys, self.keep_ms = conn, keys, keep_ms
        self._drop = conn.register_script(_DROP_BUCKETS)

    def step(self, budget_s: float = 0.0) -> int:
        """Buckets behind the cutoff, `BUCKETS_PER_STEP` at a time while `budget_s`
        lasts: the marks deleted."""
        return _steps(self.r, self.keys, self.keep_ms, budget_s, self._one)

    def _one(self, cutoff: int) -> Step:
        index = self.keys.marks_index
        found: list[Any] = self.r.zrangebyscore(index, "-inf", cutoff, 0, self.BUCKETS_PER_STEP)
        if not found:
            return 0, False
        names = [_text(k) for k in found]
        return int(self._drop(keys=[index, *names])), len(found) == self.BUCKETS_PER_STEP

    def sweep_all(self) -> int:
        """Every bucket behind the cutoff (tests)."""
        return self.step(budget_s=3600.0)
