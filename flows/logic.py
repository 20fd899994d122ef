"""Thin bytewax adapters around the pure state: one for the sequencer, one per key.

As in bytewax's own `windowing.py`, the logic object holds the settings (from
the running process) and only the state is snapshotted: a restart with new
settings applies them to state from before the restart too. Snapshots are
pickled bytes: an immutable copy by construction, taken only at epoch ends.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable

from bytewax.operators import StatefulBatchLogic

from flows import stats
from state import ledgers
from state.config import RuleSettings
from state.facts import Facts
from state.messages import KeyMessage, Route, SequencerInput
from state.outputs import Output
from state.sequencer import Sequencer

# The sequencer emits an output (a dict) for the sink, or a `Route` for a ledger key.
SequencerItem = Output | Route


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


class LedgerLogic(StatefulBatchLogic[KeyMessage, Output, bytes]):
    """Runs `state.ledgers.apply` for one key (an item or a session)."""

    def __init__(self, settings: RuleSettings, resume: bytes | None) -> None:
        self.settings = settings
        self.state: ledgers.KeyState = pickle.loads(resume) if resume else None

    def on_batch(self, values: list[KeyMessage]) -> tuple[Iterable[Output], bool]:
        out: list[Output] = []
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
