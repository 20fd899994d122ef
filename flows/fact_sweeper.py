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

It runs in the `billing flows` supervisor, a chunk of 500 facts per tick (more while
chunks are mostly facts to delete, within 50 ms a tick): an incremental SCAN of the
deployment's facts, each chunk's keys checked and deleted in one script, so that a
fact the flows rewrite meanwhile is never lost (the script reads the value it
deletes). Its cost is off the flows' path and amortised over the keys held, which R
bounds.

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

from billing.keys import Keys

STEP_KEYS = 500
Step = tuple[int, bool]  # keys deleted, whether to go on

# KEYS: facts of one slot; ARGV[1]: the cutoff. A fact is a JSON list of entries
# whose first field is the `ts` of a use (or of a best scan); one whose newest is
# before the cutoff goes. Anything else is kept (layout 1's touch facts, read by no
# version since, carry the TTL they were written with).
_SWEEP = """
local cutoff = tonumber(ARGV[1])
local gone = 0
for i = 1, #KEYS do
  local raw = redis.pcall('GET', KEYS[i])
  if type(raw) == 'string' then
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
    if newest ~= nil and newest < cutoff then
      redis.call('DEL', KEYS[i])
      gone = gone + 1
    end
  end
end
return gone
"""


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


class FactSweeper:
    def __init__(self, conn: redis.Redis, keys: Keys, keep_ms: int) -> None:
        """`keep_ms`: R and the margin (`facts_ttl_margin_ms`)."""
        self.r, self.keys, self.keep_ms = conn, keys, keep_ms
        self._sweep = conn.register_script(_SWEEP)
        self._scan: Iterator[Any] | None = None

    def step(self, budget_s: float = 0.0) -> int:
        """One chunk of the SCAN, and more while the chunks are mostly facts to delete
        and `budget_s` lasts: the facts deleted. One chunk a tick (2,500 keys a second
        in the supervisor) keeps up with a few thousand facts a second at most; a
        busier deployment's chunks come back full of expired facts, and then the
        sweeper goes on within its budget. Nothing before the commission sequencer has
        published a horizon (no snapshot yet)."""
        return _steps(self.r, self.keys, self.keep_ms, budget_s, self._one)

    def _one(self, cutoff: int) -> Step:
        examined, deleted = self._chunk(cutoff)
        busy = examined == STEP_KEYS and 4 * deleted >= examined
        return deleted, busy and self._scan is not None

    def _chunk(self, cutoff: int) -> tuple[int, int]:
        if self._scan is None:  # a new pass over the keyspace
            self._scan = self.r.scan_iter(match=self.keys.fact_pattern(), count=STEP_KEYS)
        try:
            found = list(islice(self._scan, STEP_KEYS))
        except redis.RedisError:
            self._scan = None  # a new pass next time
            raise
        if len(found) < STEP_KEYS:
            self._scan = None
        names = [k.decode() if isinstance(k, bytes) else k for k in found]
        groups = self.keys.facts_by_slot(names)
        return len(found), sum(int(self._sweep(keys=g, args=[cutoff])) for g in groups)

    def sweep_all(self) -> int:
        """Every fact once (tests): steps until a pass ends."""
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
        names = [str(k.decode() if isinstance(k, bytes) else k) for k in found]
        return int(self._drop(keys=[index, *names])), len(found) == self.BUCKETS_PER_STEP

    def sweep_all(self) -> int:
        """Every bucket behind the cutoff (tests)."""
        return self.step(budget_s=3600.0)
