"""The billing dataflow, the same for live runs and replays.

    input -> sequencer -+-> outputs ------------------------------------------+-> sink
                        +-> touch/session keys -+-> outputs --------------------+
                        |                       +-> line keys -+-> outputs -----+
                        |                                      +-> sharer keys -+
                        +-> payouts ---------------------------------^

All input enters one partition and one sequencer key, so the sequencer sees the
log in order. A touch or session key takes messages from that one worker only,
and a line key from its one touch key, and bytewax keeps the order of items
between two workers, so these keys see their messages in log order whatever the
worker count. A sharer key takes messages from many workers; it restores log
order itself, epoch by epoch (flows.logic.SharerLogic).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from flows.logic import LedgerLogic, SequencerLogic, SharerLogic
from state.config import RuleSettings
from state.facts import Facts, MemoryFacts
from state.messages import KeyBatch, KeyMessage
from state.outputs import Output

# Between steps: a `KeyBatch` (one key's messages from one batch) or a list of outputs.
Item = tuple[str, KeyBatch | list[Output]]


def _rekey(item: Item) -> tuple[str, list[KeyMessage]]:
    batch = item[1]
    assert type(batch) is KeyBatch  # the branch sent only key batches this way
    return batch.key, batch.messages


def _is_key_batch(kv: Item) -> bool:
    return type(kv[1]) is KeyBatch


def _for_sharer(kv: Item) -> bool:
    batch = kv[1]
    return type(batch) is KeyBatch and batch.key.startswith("sharer:")


def build_flow(
    source: Source[Any],
    sink: Sink[tuple[str, list[Output]]],
    settings: RuleSettings,
    facts: Callable[[], Facts] = MemoryFacts,
) -> Dataflow:
    """`source` yields ("log", SequencerInput) pairs; `sink` takes (key, [output, ...]) pairs.

    The shapes avoid a Python call per item for keying and unkeying, which is most
    of what bytewax costs here. `settings` were validated when they were built
    (RuleSettings refuses a retention shorter than the windows it must cover),
    so a bad setting stops here, before any event is read. `facts` makes the
    sequencer's fact store: in memory by default, Redis for the live flows.
    """
    flow = Dataflow("billing")
    in_log = op.input("input", flow, source)
    sequenced = op.stateful_batch(
        "sequencer",
        in_log,
        lambda resume: SequencerLogic(settings, facts(), resume),
    )
    split = op.branch("split", sequenced, _is_key_batch)
    payouts = op.branch("payouts", split.trues, _for_sharer)
    keyed = op.stateful_batch(
        "ledgers",
        op.map("route", payouts.falses, _rekey),
        lambda resume: LedgerLogic(settings, resume),
    )
    keyed_split = op.branch("keyed_split", keyed, _is_key_batch)
    lines = op.stateful_batch(
        "lines",
        op.map("to_lines", keyed_split.trues, _rekey),
        lambda resume: LedgerLogic(settings, resume),
    )
    lines_split = op.branch("lines_split", lines, _is_key_batch)
    credits = op.merge("to_sharers", payouts.trues, lines_split.trues)
    sharers = op.stateful_batch(
        "sharers",
        op.map("sharer_keys", credits, _rekey),
        lambda resume: SharerLogic(settings, resume),
    )
    outputs = op.merge("outputs", split.falses, keyed_split.falses, lines_split.falses, sharers)
    op.output("output", outputs, sink)  # type: ignore[misc]
    return flow
