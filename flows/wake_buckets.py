"""The sequencer's wake-ups in Redis: sorted sets per minute of log time, read ahead.

A wake-up asks for a key to be woken once the log's time passes a moment
(state.facts, `Facts.wake_at`). They grow with the traffic of the last R, so they
live in Redis rather than in a snapshot: one sorted set per minute of log time
(`…:wake:<sequencer key>:<minute>`, score the moment, member `<moment>:<key>`) and an
index of the minutes that have any, kept apart per sequencer key, since each reads
back only its own. The member names the moment as well as the key because a key may
be asked again within a minute (a line's forgetting, asked from the tick that
approved it, when R is within a minute of the holding period): a member of the key
alone would move to the later moment, and a re-run after a crash from before the
first would find it gone. A member is deleted only by a withdrawal (`unwake`), and a
bucket once the log's time has passed it, a day, and every place a re-run after a
crash may start: a re-run reads the same span of log time again. (With a `ttl_ms`
they also expire by Redis's clock; live they do not, since the flows may stand still
for longer than any margin.)

`flows.facts_redis.RedisFacts` owns one and sends its commands with the facts' own
writes, once per batch (`commands`).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Callable
from typing import Any

import redis

from billing.keys import Keys
from flows.best_scans import BOUNDARIES_KEPT
from flows.deferred_writes import Command

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


def _member(due: int, key: str) -> str:
    return f"{due}:{key}"


def _key_of(member: str) -> str:
    """The key of a bucket's member; before members named the moment (2026-12-06),
    the member was the key itself, and keys start with a letter."""
    return member.split(":", 1)[1] if member[:1].isdigit() else member


def _insert(bucket: list[tuple[int, str]], wake: tuple[int, str]) -> None:
    """Into a sorted bucket once, as a sorted set keeps a member once."""
    i = bisect_left(bucket, wake)
    if i == len(bucket) or bucket[i] != wake:
        bucket.insert(i, wake)


class WakeBuckets:
    def __init__(
        self,
        conn: redis.Redis,
        keys: Keys,
        ttl_ms: int | None,
        space: str,
        settle: Callable[[], None],
        wakeups_per_load: int = WAKEUPS_PER_LOAD,
    ) -> None:
        """`settle`: waits until the writes sent so far are stored (a load must see them)."""
        self.r, self.keys, self.ttl_ms, self.space = conn, keys, ttl_ms, space
        self.settle = settle
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
        # The log's time where a re-run after a crash may start (where this process
        # began, then at each of the last snapshots, as flows.best_scans keeps
        # positions): the index is trimmed only behind the oldest. A catch-up can
        # move days of log time in one epoch, so "a day back" was not enough.
        self._time = 0
        self._restarts: deque[int] = deque(maxlen=BOUNDARIES_KEPT)
        self._passed: list[str] = []  # index members of buckets to delete with the next writes

    def earliest_restart(self) -> int | None:
        """The log's time no re-run of this process starts before (None: no time yet)."""
        return min(self._restarts, default=None)

    def checkpoint(self) -> None:
        """A snapshot was taken: a re-run may start at the log's time now."""
        if self._time:
            self._restarts.append(self._time)

    def commands(self) -> list[Command]:
        """This batch's writes: the wake-ups asked and withdrawn since the last call."""
        # The buckets passed first, so that a wake-up asked behind the log's time
        # into one of them is kept; and the buckets before their index entries, so
        # that a crash between the two leaves entries the next load finds and
        # deletes again, never a bucket that nothing names (they carry no TTL).
        commands: list[Command] = []
        if self._passed:
            buckets = [self.keys.wakeups(int(b), self.space) for b in self._passed]
            index = self.keys.wakeups_index(self.space)
            commands += [("DEL", *buckets), ("ZREM", index, *self._passed)]
            self._passed = []
        commands += self._wake_commands()
        self._new_wakes.clear()
        self._withdrawn.clear()
        return commands

    def _wake_commands(self) -> list[Command]:
        by_bucket: dict[int, dict[str, int]] = {}  # bucket -> member -> due
        for due, key in self._new_wakes:
            by_bucket.setdefault(due // WAKE_BUCKET_MS, {})[_member(due, key)] = due
        commands: list[Command] = []
        for due, key in sorted(self._withdrawn):
            b, member = due // WAKE_BUCKET_MS, _member(due, key)
            asked = by_bucket.get(b)
            if asked is not None:
                asked.pop(member, None)  # asked in this batch, then withdrawn: not sent
            # Asked in an earlier batch, or never (then a no-op).
            commands.append(("ZREM", self.keys.wakeups(b, self.space), member))
        by_bucket = {b: members for b, members in by_bucket.items() if members}
        for b, members in by_bucket.items():
            bucket = self.keys.wakeups(b, self.space)
            pairs = [x for member, due in members.items() for x in (due, member)]
            commands.append(("ZADD", bucket, *pairs))
            if self.ttl_ms:
                commands.append(("PEXPIRE", bucket, self.ttl_ms))
        if by_bucket:
            index = self.keys.wakeups_index(self.space)
            pairs = [x for b in by_bucket for x in (b, str(b))]
            commands.append(("ZADD", index, *pairs))
            if self.ttl_ms:
                commands.append(("PEXPIRE", index, self.ttl_ms))
        return commands

    def wake_at(self, due: int, key: str) -> None:
        self._withdrawn.discard((due, key))  # asked again after it was withdrawn
        self._new_wakes.append((due, key))
        b = due // WAKE_BUCKET_MS
        if b <= self._loaded_upto:
            _insert(self._bucket(b), (due, key))
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
        if not self._time:
            self._restarts.append(after)  # a re-run of this process starts here
        self._time = until
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
            for _d, key in bucket[lo:hi]:
                # One wake per key and moment is enough, and a key due twice in a
                # row wakes once, as in the memory store (state.facts.MemoryFacts).
                if not due_now or due_now[-1] != key:
                    due_now.append(key)
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
        # Keep what a re-run after a crash may read again: a day of the index, and
        # all of it from where a re-run may start. The buckets passed go with the
        # next writes (`commands`), and their index entries after them.
        earliest = self.earliest_restart()
        oldest = lo if earliest is None else earliest // WAKE_BUCKET_MS
        pipe.zrangebyscore(index, "-inf", min(lo - 1 - DAY_OF_BUCKETS, oldest - 1))
        replies = pipe.execute()
        self._passed = list(dict.fromkeys([*self._passed, *replies[len(found)]]))
        loaded = 0
        withdrawn = self._withdrawn
        for b, members in zip(found, replies, strict=False):
            wakes = sorted((int(score), _key_of(m)) for m, score in members)
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
                _insert(self._bucket(due // WAKE_BUCKET_MS), (due, key))
        self._loaded_upto = hi
