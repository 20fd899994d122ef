"""A sequencer key's big tables, kept in Redis beside bytewax's snapshot.

bytewax pickles the whole state of every key woken in an epoch, and a session
shard is woken at every epoch (each batch brings it the log's time). Its open
sessions' clocks grow with traffic: in the snapshot they cost about 84 bytes and
1.8 us per open session at every epoch (100,000 open sessions: 8.4 MB and 182 ms
of every 1 s epoch; `bench.bench_clocks`). So the shard's snapshot holds a
`TableRef` instead, and the table lives here; so do the rule and tariff catalogs.

A table is a chain of immutable blobs: a base (the whole table, in chunks of at
most CHUNK entries, so that no Redis key grows with traffic) and the deltas after
it (the entries one snapshot changed; None for one dropped), as JSON: values
must be JSON values (a clock is a list of ints). A snapshot's ref
names exactly the blobs of the table as it was, so a resume reads that table,
whatever a crashed run wrote after it: each `SnapshotTables` names its blobs with
a nonce of its own, so a re-run never overwrites a blob that a snapshot names.
A new base is written once the deltas since the last one hold as many entries as
it does (at least MIN_BASE) or number MAX_DELTAS, so writing bases costs O(1)
amortised per change, and a snapshot costs what its epoch changed.

Garbage: a chain replaced by a new base is deleted KEPT saves later. bytewax
resumes from the last snapshot it committed, at most a snapshot or two behind the
last one taken: with recovery its probe sits on the recovery writes, and a source
emits nothing of epoch E until the probe has passed E - 1 (bytewax 0.21.1,
`src/inputs.rs`, `probe.less_than`). flows.best_scans keeps the last four
boundaries on the same ground. Every blob is listed in a set per table, and the first save of each
`SnapshotTables` deletes every listed blob its chain does not name: what a
crashed run left (its last deltas, chains it had not deleted yet).
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterable
from typing import Any, NamedTuple, cast

import orjson
import redis

from billing.keys import Keys

CHUNK = 4096
MIN_BASE = 1024
MAX_DELTAS = 256
KEPT = 4

MISSING = (
    "the recovery state names {name!r} blobs that Redis no longer holds ({missing} of "
    "{count}, e.g. {example!r}): Redis lost data the recovery store depends on. Start "
    "the flows with a new, empty recovery directory and a replay (README, 'Upgrading')"
)


class TableRef(NamedTuple):
    """What a snapshot keeps of a table: its blobs' names, base first."""

    base: tuple[str, ...]
    deltas: tuple[str, ...]
    base_entries: int
    delta_entries: int


class SnapshotTables:
    def __init__(self, conn: redis.Redis, keys: Keys, space: str) -> None:
        """`space`: the sequencer key whose tables these are (state.sharding)."""
        self.r, self.keys, self.space = conn, keys, space
        self._nonce = secrets.token_hex(6)
        self._numbers = itertools.count()
        self._saves = 0
        self._swept: set[str] = set()  # tables whose stale blobs this store deleted
        self._retired: list[tuple[int, str, tuple[str, ...]]] = []  # (save, table, names)

    def _blob(self, name: str, suffix: str) -> str:
        return f"{self.keys.snapshot_table(self.space, name)}:{suffix}"

    def _listing(self, name: str) -> str:
        return f"{self.keys.snapshot_table(self.space, name)}:blobs"

    def save(
        self,
        name: str,
        table: dict[str, Any],
        changed: Iterable[str],
        ref: TableRef | None,
    ) -> TableRef:
        """Store what changed in `table` since `ref` (None: nothing stored yet) and
        return the new ref; stored when this returns (before bytewax commits)."""
        self._saves += 1
        pipe: Any = self.r.pipeline(transaction=False)
        delta = {key: table.get(key) for key in changed}
        if ref is not None and not delta and name in self._swept:
            return ref
        written: list[tuple[str, bytes]] = []

        def write(entries: dict[str, Any]) -> str:
            suffix = f"{self._nonce}:{next(self._numbers)}"
            written.append((suffix, orjson.dumps(entries)))
            return suffix

        if (
            ref is None
            or len(ref.deltas) >= MAX_DELTAS
            or ref.delta_entries + len(delta) >= max(ref.base_entries, MIN_BASE)
        ):
            items = list(table.items())
            base = tuple(write(dict(items[i : i + CHUNK])) for i in range(0, len(items), CHUNK))
            if ref is not None:
                self._retired.append((self._saves, name, ref.base + ref.deltas))
            new = TableRef(base, (), len(items), 0)
        elif delta:
            new = ref._replace(
                deltas=(*ref.deltas, write(delta)), delta_entries=ref.delta_entries + len(delta)
            )
        else:
            new = ref
        if written:
            # Listed before written, and deleted before unlisted: a process killed
            # part-way through the pipeline leaves at most a listed blob that is
            # missing (which a sweep passes over), never a stored blob no sweep finds.
            pipe.sadd(self._listing(name), *(suffix for suffix, _blob in written))
            for suffix, blob in written:
                pipe.set(self._blob(name, suffix), blob)
        gone = self._due_for_deletion(name, new, ref)
        if gone:
            pipe.delete(*(self._blob(name, suffix) for suffix in gone))
            pipe.srem(self._listing(name), *gone)
        pipe.execute()
        return new

    def _due_for_deletion(self, name: str, chain: TableRef, before: TableRef | None) -> list[str]:
        named = set(chain.base + chain.deltas)
        if name not in self._swept:
            # This store's first save of the table: the blobs no snapshot can name.
            # The chain it resumed from stays until it is retired as usual: a crash
            # before the next commit resumes from it again.
            self._swept.add(name)
            if before is not None:
                named |= set(before.base + before.deltas)
            members = cast(Iterable[str | bytes], self.r.smembers(self._listing(name)))
            listed = {m if isinstance(m, str) else m.decode() for m in members}
            return sorted(listed - named)
        due = [r for r in self._retired if r[1] == name and r[0] <= self._saves - KEPT]
        self._retired = [r for r in self._retired if r not in due]
        return [suffix for _save, _name, names in due for suffix in names if suffix not in named]

    def load(self, name: str, ref: TableRef) -> dict[str, Any]:
        """The table as the snapshot that kept `ref` left it."""
        names = ref.base + ref.deltas
        found = self.r.mget([self._blob(name, suffix) for suffix in names]) if names else []
        missing = [suffix for suffix, blob in zip(names, found, strict=True) if blob is None]
        if missing:
            raise RuntimeError(
                MISSING.format(
                    name=name, missing=len(missing), count=len(names), example=missing[0]
                )
            )
        table: dict[str, Any] = {}
        blobs = cast(list[str | bytes], found)
        for blob in blobs[: len(ref.base)]:
            table.update(orjson.loads(blob))
        for blob in blobs[len(ref.base) :]:
            for key, value in orjson.loads(blob).items():
                if value is None:
                    table.pop(key, None)
                else:
                    table[key] = value
        return table
