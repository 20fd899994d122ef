"""Thin bytewax adapters around the pure state: one for the sequencer, one per key.

As in bytewax's own `windowing.py`, the logic object holds the settings (from
the running process) and only the state is snapshotted: a restart with new
settings applies them to state from before the restart too. Snapshots are
pickled bytes: an immutable copy by construction, taken only at epoch ends.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from bytewax.operators import StatefulBatchLogic

from flows import stats
from flows.runtime import keep_thread_state
from flows.snapshot_tables import SnapshotTables, TableRef
from state import ledgers, sharding
from state.balances import SharerLedger
from state.commissions import Line
from state.config import RuleSettings
from state.facts import Facts
from state.messages import (
    InputBatch,
    KeyBatch,
    KeyMessage,
    RawRun,
    Route,
    SequencerInput,
    by_key,
)
from state.outputs import Output
from state.sequencer import LAYOUT, Sequencer

# Per batch, a step emits its outputs as one list (for the sink) and its messages as
# one `KeyBatch` per key of a later stage: one bytewax item each, not one per message.
SequencerItem = list[Output] | KeyBatch


def _nonempty(outputs: list[Output]) -> list[list[Output]]:
    return [outputs] if outputs else []


def _items(outputs: list[Output], routes: list[Route]) -> list[SequencerItem]:
    return [*by_key(routes), *_nonempty(outputs)]


# Turns a raw entry (its stream id, its JSON text and its `ts`) into a sequencer input.
ParseRaw = Callable[[str, str, int], SequencerInput]


def _parsed(batches: list[InputBatch], parse: ParseRaw) -> list[SequencerInput]:
    entries: list[SequencerInput] = []
    for batch in batches:
        for entry in batch.entries:
            if isinstance(entry, RawRun):
                entries += map(parse, entry.positions, entry.datas, entry.tss)
            else:
                entries.append(entry)
    return entries


# How soon a sharer key with messages waiting looks again whether their epoch
# has ended. Wall-clock time only schedules work; it never decides a result.
SHARER_POLL = timedelta(milliseconds=50)


# What `snapshot` returns in a flow run without recovery (a replay): bytewax asks each
# key woken in an epoch for its snapshot even then, and pickling them was 2.6% of a
# replay (py-spy, 300k events). Never resumed from: a run without recovery starts empty.
NOT_KEPT = b""


LAYOUT_CHANGED = (
    "the recovery state predates the session shards (state.sharding): start the flows "
    "with a new, empty recovery directory (see the README, 'Upgrading')"
)
TOUCH_STAGE_GONE = (
    "the recovery state predates matching order lines in the commission sequencer "
    "(its touch keys held scans the fact store does not): start the flows with a new, "
    "empty recovery directory (see the README, 'Upgrading')"
)
LINES_BY_ORDER = (
    "the recovery state predates keeping an order's lines under one line key (each "
    "line had its own, which this version never wakes): start the flows with a new, "
    "empty recovery directory (see the README, 'Upgrading')"
)
TABLES_OUTSIDE = (
    "the recovery state of {key!r} keeps its clocks and catalogs in Redis "
    "(flows.snapshot_tables), and this flow's fact store keeps none there: resume it "
    "with the live flows' Redis store, or start with a new, empty recovery directory"
)
# What a sequencer's snapshot of an earlier layout (state.sequencer.LAYOUT) misses.
OLD_LAYOUTS = {1: TOUCH_STAGE_GONE, 2: LINES_BY_ORDER}
SHARDS_RENAMED = (
    "the recovery state holds sequencer key {key!r}, which this version does not have "
    "(the session shards were renamed, state.sharding): start the flows with a new, "
    "empty recovery directory (see the README, 'Upgrading')"
)


def _tables(facts: Facts) -> SnapshotTables | None:
    """A store that keeps tables beside the snapshot (the Redis one), else None."""
    tables = getattr(facts, "tables", None)
    return tables if isinstance(tables, SnapshotTables) else None


class SequencerLogic(StatefulBatchLogic[InputBatch, SequencerItem, bytes]):
    """One ordered stage: the commission sequencer or a session shard (state.sharding).
    Its fact store (seen ids, orders' items, wake-ups) is not part of the snapshot: in
    memory for a replay, in Redis live, one per key (`facts(key)`), made on the first
    batch, since bytewax tells a logic its key only through what it receives (or on a
    resume, which names it). A store in Redis also keeps the open sessions' clocks
    (which grow with traffic) and the catalogs (big for some shops, seldom changed)
    beside the snapshot (flows.snapshot_tables): the snapshot holds a `TableRef` each."""

    def __init__(
        self,
        settings: RuleSettings,
        facts: Callable[[str], Facts],
        parse: ParseRaw,
        resume: bytes | None,
        recovery: bool = True,
    ) -> None:
        keep_thread_state()
        self.settings, self.recovery = settings, recovery
        self._make_facts, self._parse = facts, parse
        self.facts: Facts | None = None
        self.key: str | None = None
        self.sequencer = Sequencer()
        self._refs: dict[str, TableRef] = {}
        if resume is not None:
            saved = pickle.loads(resume)
            if not isinstance(saved, tuple):
                # A bare `Sequencer`: the one key of the layout before the shards. Its
                # rule catalog and open sessions' clocks cannot move to the new keys.
                raise RuntimeError(LAYOUT_CHANGED)
            # (key, sequencer), or (key, sequencer, refs) with tables kept outside.
            self.key, self.sequencer = saved[0], saved[1]
            if self.key not in sharding.ALL_KEYS:
                # Its sessions' clocks would sit under a key no entry is routed to.
                raise RuntimeError(SHARDS_RENAMED.format(key=self.key))
            if self.sequencer.layout != LAYOUT:
                raise RuntimeError(OLD_LAYOUTS.get(self.sequencer.layout, LAYOUT_CHANGED))
            refs = saved[2] if len(saved) > 2 else {}
            if isinstance(refs, TableRef):  # the clocks alone (0d92f44)
                refs = {"clocks": refs}
            self._open_facts(self.key, refs)

    def _open_facts(self, key: str, refs: dict[str, TableRef]) -> Facts:
        """The key's fact store; with one that keeps tables (and recovery on), the
        tables move outside the snapshot: those `refs` names, or the ones held (a
        snapshot that held them, or none), written whole at the next snapshot."""
        facts = self.facts = self._make_facts(key)
        tables = _tables(facts) if self.recovery else None
        if tables is not None:
            self._refs = dict(refs)
            loaded = {name: tables.load(name, ref) for name, ref in refs.items()}
            self.sequencer.keep_tables_outside(loaded)
        elif refs:
            raise RuntimeError(TABLES_OUTSIDE.format(key=key))
        return facts

    def on_batch(self, values: list[InputBatch]) -> tuple[Iterable[SequencerItem], bool]:
        all_outputs: list[Output] = []
        all_routes: list[Route] = []
        on_input, settings, parse = self.sequencer.on_input, self.settings, self._parse
        facts = self.facts
        if facts is None:
            self.key = values[0].key
            facts = self._open_facts(self.key, {})
        entries = _parsed(values, parse)
        facts.prepare(entries)
        for entry in entries:
            outputs, routes = on_input(entry, settings, facts)
            all_routes += routes
            all_outputs += outputs
        facts.flush()
        return _items(all_outputs, all_routes), False

    def on_eof(self) -> tuple[Iterable[SequencerItem], bool]:
        if self.facts is not None:
            self.facts.settle()
        return _items([], self.sequencer.finish()), False

    def snapshot(self) -> bytes:
        # The epoch's fact writes are stored before bytewax commits the epoch, and
        # the store learns that a re-run may start here (bytewax calls `snapshot`
        # at the end of every epoch in which this key had input).
        if self.facts is not None:
            self.facts.settle()
            self.facts.checkpoint()
        if not self.recovery:
            return NOT_KEPT
        # With its key: bytewax gives a resumed logic its state, never its key.
        sequencer = self.sequencer
        tables = None if self.facts is None else _tables(self.facts)
        if tables is not None and sequencer.clock_changes is not None:
            refs = self._refs
            for name, (table, changed) in sequencer.take_table_changes().items():
                refs[name] = tables.save(name, table, changed, refs.get(name))
            saved: tuple[object, ...] = (self.key, sequencer.without_tables(), dict(refs))
        else:
            saved = (self.key, sequencer)
        snap = pickle.dumps(saved, protocol=pickle.HIGHEST_PROTOCOL)
        stats.snapshot_taken(len(snap))
        return snap


class LedgerLogic(StatefulBatchLogic[list[KeyMessage], SequencerItem, bytes]):
    """Runs `state.ledgers.apply` for one key (a line or session key)."""

    def __init__(self, settings: RuleSettings, resume: bytes | None, recovery: bool = True) -> None:
        keep_thread_state()
        self.settings, self.recovery = settings, recovery
        try:
            self.state: ledgers.KeyState = pickle.loads(resume) if resume else None
        except AttributeError as exc:  # a touch key's `Touch`, gone with layout 1
            raise RuntimeError(TOUCH_STAGE_GONE) from exc
        if isinstance(self.state, Line):  # one line's own key, gone with layout 2
            raise RuntimeError(LINES_BY_ORDER)

    def on_batch(self, values: list[list[KeyMessage]]) -> tuple[Iterable[SequencerItem], bool]:
        outputs: list[Output] = []
        routes: list[Route] = []
        state, settings = self.state, self.settings
        for messages in values:
            for message in messages:
                state, produced = ledgers.apply(state, message, settings)
                for item in produced:
                    if isinstance(item, Route):
                        routes.append(item)
                    else:
                        outputs.append(item)
        self.state = state
        # Nothing kept: let bytewax drop the key rather than hold an empty ledger.
        return _items(outputs, routes), ledgers.is_empty(state)

    def snapshot(self) -> bytes:
        if not self.recovery:
            return NOT_KEPT
        snap = pickle.dumps(self.state, protocol=pickle.HIGHEST_PROTOCOL)
        stats.snapshot_taken(len(snap))
        return snap


class SharerLogic(StatefulBatchLogic[list[KeyMessage], list[Output], bytes]):
    """A sharer key: messages from several workers, applied in log order.

    bytewax applies epochs in order, so what a key received before its snapshot
    (taken when an epoch ends) is all there is of that epoch and the ones before:
    `snapshot` seals it, and the next call applies it, sorted (state.balances).
    What arrives after is of a later epoch, so it waits for the next seal.
    """

    def __init__(self, settings: RuleSettings, resume: bytes | None, recovery: bool = True) -> None:
        keep_thread_state()
        self.settings, self.recovery = settings, recovery
        self.ledger: SharerLedger = pickle.loads(resume) if resume else SharerLedger()

    def _release(self) -> list[Output]:
        return self.ledger.release(self.ledger.sealed)

    def on_batch(self, values: list[list[KeyMessage]]) -> tuple[Iterable[list[Output]], bool]:
        out = self._release()
        ledger, settings = self.ledger, self.settings
        for messages in values:
            for message in messages:
                _state, produced = ledgers.apply(ledger, message, settings)
                out.extend(p for p in produced if not isinstance(p, Route))
        return _nonempty(out), ledger.is_empty()

    def notify_at(self) -> datetime | None:
        return datetime.now(UTC) + SHARER_POLL if self.ledger.inbox else None

    def on_notify(self) -> tuple[Iterable[list[Output]], bool]:
        return _nonempty(self._release()), self.ledger.is_empty()

    def on_eof(self) -> tuple[Iterable[list[Output]], bool]:
        # Nothing more can come.
        return _nonempty(self.ledger.release()), self.ledger.is_empty()

    def snapshot(self) -> bytes:
        self.ledger.seal()  # what the epoch brought is applied next, in log order
        if not self.recovery:
            return NOT_KEPT
        snap = pickle.dumps(self.ledger, protocol=pickle.HIGHEST_PROTOCOL)
        stats.snapshot_taken(len(snap))
        return snap
