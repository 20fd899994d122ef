"""Thin bytewax adapters around the pure state: one for the sequencer, one per key.

As in bytewax's own `windowing.py`, the logic object holds the settings (from
the running process) and only the state is snapshotted: a restart with new
settings applies them to state from before the restart too. Snapshots are
pickled bytes: an immutable copy by construction, taken only at epoch ends.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from bytewax.operators import StatefulBatchLogic

from flows import stats
from state import ledgers
from state.balances import SharerLedger
from state.config import RuleSettings
from state.facts import Facts
from state.messages import KeyMessage, Route, SequencerInput
from state.outputs import Output
from state.sequencer import Sequencer

# Steps emit an output (a dict) for the sink, or a `Route` for a key of a later stage.
SequencerItem = Output | Route

# How soon a sharer key with messages waiting looks again whether their epoch
# has ended. Wall-clock time only schedules work; it never decides a result.
SHARER_POLL = timedelta(milliseconds=50)


class SequencerLogic(StatefulBatchLogic[SequencerInput, SequencerItem, bytes]):
    """The one ordered stage. Its fact store (seen ids, orders' items, wake-ups)
    is not part of the snapshot: in memory for a replay, in Redis live."""

    def __init__(self, settings: RuleSettings, facts: Facts, resume: bytes | None) -> None:
        self.settings = settings
        self.facts = facts
        self.sequencer: Sequencer = pickle.loads(resume) if resume else Sequencer()

    def on_batch(self, values: list[SequencerInput]) -> tuple[Iterable[SequencerItem], bool]:
        emitted: list[SequencerItem] = []
        on_input, settings, facts = self.sequencer.on_input, self.settings, self.facts
        facts.prepare(values)
        for value in values:
            outputs, routes = on_input(value, settings, facts)
            emitted.extend(routes)
            emitted.extend(outputs)
        facts.flush()
        return emitted, False

    def on_eof(self) -> tuple[Iterable[SequencerItem], bool]:
        return self.sequencer.finish(), False

    def snapshot(self) -> bytes:
        snap = pickle.dumps(self.sequencer, protocol=pickle.HIGHEST_PROTOCOL)
        stats.snapshot_taken(len(snap))
        return snap


class LedgerLogic(StatefulBatchLogic[KeyMessage, SequencerItem, bytes]):
    """Runs `state.ledgers.apply` for one key (a touch, line or session key)."""

    def __init__(self, settings: RuleSettings, resume: bytes | None) -> None:
        self.settings = settings
        self.state: ledgers.KeyState = pickle.loads(resume) if resume else None

    def on_batch(self, values: list[KeyMessage]) -> tuple[Iterable[SequencerItem], bool]:
        out: list[SequencerItem] = []
        state, settings = self.state, self.settings
        for message in values:
            state, produced = ledgers.apply(state, message, settings)
            out.extend(produced)
        self.state = state
        # Nothing kept: let bytewax drop the key rather than hold an empty ledger.
        return out, ledgers.is_empty(state)

    def snapshot(self) -> bytes:
        snap = pickle.dumps(self.state, protocol=pickle.HIGHEST_PROTOCOL)
        stats.snapshot_taken(len(snap))
        return snap


class SharerLogic(StatefulBatchLogic[KeyMessage, Output, bytes]):
    """A sharer key: messages from several workers, applied in log order.

    bytewax applies epochs in order, so what a key received before its snapshot
    (taken when an epoch ends) is all there is of that epoch and the ones before:
    `snapshot` seals it, and the next call applies it, sorted (state.balances).
    What arrives after is of a later epoch, so it waits for the next seal.
    """

    def __init__(self, settings: RuleSettings, resume: bytes | None) -> None:
        self.settings = settings
        self.ledger: SharerLedger = pickle.loads(resume) if resume else SharerLedger()

    def _release(self) -> list[Output]:
        return self.ledger.release(self.ledger.sealed)

    def on_batch(self, values: list[KeyMessage]) -> tuple[Iterable[Output], bool]:
        out = self._release()
        for message in values:
            _state, produced = ledgers.apply(self.ledger, message, self.settings)
            out.extend(p for p in produced if not isinstance(p, Route))
        return out, self.ledger.is_empty()

    def notify_at(self) -> datetime | None:
        return datetime.now(UTC) + SHARER_POLL if self.ledger.inbox else None

    def on_notify(self) -> tuple[Iterable[Output], bool]:
        return self._release(), self.ledger.is_empty()

    def on_eof(self) -> tuple[Iterable[Output], bool]:
        return self.ledger.release(), self.ledger.is_empty()  # nothing more can come

    def snapshot(self) -> bytes:
        self.ledger.seal()
        snap = pickle.dumps(self.ledger, protocol=pickle.HIGHEST_PROTOCOL)
        stats.snapshot_taken(len(snap))
        return snap
