"""The billing dataflow, the same for live runs and replays.

    input ("log", item) -> sequencer -+-> outputs -----------------------+-> sink
                                      +-> routed, re-keyed -> ledgers ---+

All input enters one partition and one sequencer key, so the sequencer sees the
log in order. Every routed message leaves that one worker, and bytewax keeps the
order of items between two workers, so each ledger key sees its messages in log
order too, whatever the worker count. That is what makes the final state the
same for 1, 2 or 4 workers without any reordering buffer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from flows.logic import LedgerLogic, SequencerLogic
from state.config import RuleSettings
from state.facts import Facts, MemoryFacts
from state.messages import KeyMessage, Route
from state.outputs import Output


def _rekey(item: tuple[str, Output | Route]) -> tuple[str, KeyMessage]:
    route = item[1]
    assert type(route) is Route  # the branch sent only routes this way
    return route.key, route.message


def build_flow(source: Source[Any], sink: Sink[tuple[str, Output]], settings: RuleSettings,
               facts: Callable[[], Facts] = MemoryFacts) -> Dataflow:
    """`source` yields ("log", SequencerInput) pairs; `sink` takes (key, output) pairs.

    The shapes avoid a Python call per item for keying and unkeying, which is most
    of what bytewax costs here. `settings` were validated when they were built
    (RuleSettings refuses a retention shorter than the windows it must cover),
    so a bad setting stops here, before any event is read. `facts` makes the
    sequencer's fact store: in memory by default, Redis for the live flows.
    """
    flow = Dataflow("billing")
    in_log = op.input("input", flow, source)
    sequenced = op.stateful_batch(
        "sequencer", in_log, lambda resume: SequencerLogic(settings, facts(), resume)  # type: ignore[arg-type]
    )
    split = op.branch("split", sequenced, lambda kv: type(kv[1]) is Route)
    routed = op.map("route", split.trues, _rekey)
    ledger_out = op.stateful_batch(
        "ledgers", routed, lambda resume: LedgerLogic(settings, resume)  # type: ignore[arg-type]
    )
    op.output("output", op.merge("outputs", split.falses, ledger_out), sink)  # type: ignore[misc]
    return flow
