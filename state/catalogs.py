"""Catalogs a sequencer keeps in its snapshot: the last version of each id.

Every sequencer key (the commission sequencer and each session shard) is
snapshotted at every epoch, and its catalogs (commission rules, tariffs) with it,
though they change only with a rule or tariff event. So a catalog pickles as one
blob of its versions, made again only after a change, and every other epoch copies
bytes: measured for 100,000 rules, 179 ms to pickle against 0.3 ms to copy.

Live, a catalog is kept beside the snapshot instead (flows.snapshot_tables), and
written only when it changed: `track_changes` makes it collect the ids `put` since
the last `take_changes`.
"""

from __future__ import annotations

import pickle
from typing import Any, Generic, TypeVar

V = TypeVar("V")


class Catalog(Generic[V]):
    __slots__ = ("_blob", "_changed", "_versions")

    def __init__(self, versions: dict[str, V] | None = None) -> None:
        self._versions: dict[str, V] = dict(versions or {})
        self._blob: bytes | None = None
        self._changed: set[str] | None = None

    def get(self, ident: str) -> V | None:
        return self._versions.get(ident)

    def put(self, ident: str, version: V) -> V | None:
        """`version` replaces `ident`'s; returns the one it replaced, if any."""
        old = self._versions.get(ident)
        self._versions[ident] = version
        self._blob = None
        if self._changed is not None:
            self._changed.add(ident)
        return old

    def track_changes(self) -> None:
        self._changed = set()

    def take_changes(self) -> set[str]:
        """The ids put since the last call (`track_changes` was called)."""
        changed = self._changed
        assert changed is not None, "track_changes was not called"
        self._changed = set()
        return changed

    def table(self) -> dict[str, V]:
        """The versions themselves, to store beside a snapshot: not to be changed."""
        return self._versions

    def versions(self) -> dict[str, V]:
        """A copy of the catalog, for tests and debugging."""
        return dict(self._versions)

    def __len__(self) -> int:
        return len(self._versions)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._versions == self._versions

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, tuple[type[Catalog[V]], bytes]]:
        if self._blob is None:
            self._blob = pickle.dumps(self._versions, protocol=pickle.HIGHEST_PROTOCOL)
        return _load, (type(self), self._blob)


def _load(cls: type[Catalog[Any]], blob: bytes) -> Catalog[Any]:
    catalog = cls(pickle.loads(blob))
    catalog._blob = blob
    return catalog
