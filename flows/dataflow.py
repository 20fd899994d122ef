"""The billing dataflow, the same for live runs and replays.

    input -> key "log" -> sequencer -+-> outputs ----------------------+-> sink
                                     +-> routed, keyed -> ledgers -----+

All input enters one partition and one sequencer key, so the sequencer sees the
log in order. Every routed message leaves that one worker, and bytewax keeps the
order of items between two workers, so each ledger key sees its messages in log
order too, whatever the worker count. That is what makes the final state the
same for 1, 2 or 4 workers without any reordering buffer.
"""

from __future__ import annotations

from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from flows.logic import Item, LedgerLogic, SequencerLogic
from state.config import RuleSettings
from state.outputs import Output


def _split_route(item: tuple[str, Item]) -> tuple[str, tuple[Any, ...]] | None:
    value = item[1]
    return (value[1], value[2]) if value[0] == "route" else None


def _split_out(item: tuple[str, Item]) -> Output | None:
    value = item[1]
    return value[1] if value[0] == "out" else None  # type: ignore[no-any-return]


def build_flow(source: Source[Any], sink: Sink[Output], rules: RuleSettings) -> Dataflow:
    flow = Dataflow("billing")
    events = op.input("input", flow, source)
    in_log = op.key_on("log", events, lambda _item: "log")
    sequenced = op.stateful_batch(
        "sequencer", in_log, lambda resume: SequencerLogic(rules, resume)
    )
    routed = op.filter_map("routed", sequenced, _split_route)
    direct = op.filter_map("direct_outputs", sequenced, _split_out)

    keyed_outputs = op.stateful_batch(
        "ledgers", routed, lambda resume: LedgerLogic(rules, resume)
    )
    ledger_out = op.map("ledger_outputs", keyed_outputs, lambda kv: kv[1])
    op.output("output", op.merge("outputs", direct, ledger_out), sink)
    return flow
