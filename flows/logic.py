"""Thin bytewax adapters around the pure state: one for the sequencer, one per key.

Snapshots are pickled bytes: an immutable copy by construction, taken only at
epoch ends, and cheap to hand to the recovery store.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from typing import Any

from bytewax.operators import StatefulBatchLogic

from state import ledgers
from state.commissions import ItemLedger
from state.config import RuleSettings
from state.outputs import Output, reject
from state.sequencer import Sequencer

# The sequencer emits an output (a dict) for the sink, or ("route", key, message) for a ledger.
Item = Output | tuple[Any, ...]


class SequencerLogic(StatefulBatchLogic[tuple[Any, ...], Item, bytes]):
    def __init__(self, rules: RuleSettings, resume: bytes | None) -> None:
        self.sequencer: Sequencer = pickle.loads(resume) if resume else Sequencer(rules)

    def on_batch(self, values: list[tuple[Any, ...]]) -> tuple[Iterable[Item], bool]:
        emitted: list[Item] = []
        sequencer = self.sequencer
        for value in values:
            if value[0] == "tick":
                routed = sequencer.advance(value[1])
                outputs: list[Output] = []
            elif value[0] == "bad":
                # An entry that is not a valid SPEC event: reported, never billed.
                emitted.append(reject("invalid_event", value[2], value[1]))
                continue
            else:
                outputs, routed = sequencer.on_event(value[2], value[1])
            emitted.extend(("route", key, message) for key, message in routed)
            emitted.extend(outputs)
        return emitted, False

    def on_eof(self) -> tuple[Iterable[Item], bool]:
        return [("route", key, message) for key, message in self.sequencer.finish()], False

    def snapshot(self) -> bytes:
        return pickle.dumps(self.sequencer, protocol=pickle.HIGHEST_PROTOCOL)


class LedgerLogic(StatefulBatchLogic[tuple[Any, ...], Output, bytes]):
    """Runs `state.ledgers.apply` for one key (an item or a session)."""

    def __init__(self, rules: RuleSettings, resume: bytes | None) -> None:
        self.rules = rules
        self.state: ledgers.KeyState = pickle.loads(resume) if resume else None

    def on_batch(self, values: list[tuple[Any, ...]]) -> tuple[Iterable[Output], bool]:
        out: list[Output] = []
        state = self.state
        for message in values:
            state, produced = ledgers.apply(state, message, self.rules)
            out.extend(produced)
        self.state = state
        return out, self._empty()

    def _empty(self) -> bool:
        # Nothing kept: let bytewax drop the key rather than hold an empty ledger.
        state = self.state
        if state is None:
            return True
        return isinstance(state, ItemLedger) and not state.lines and not state.scans.in_order

    def snapshot(self) -> bytes:
        return pickle.dumps(self.state, protocol=pickle.HIGHEST_PROTOCOL)
