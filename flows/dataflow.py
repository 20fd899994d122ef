"""The billing dataflow, the same for live runs and replays.

    input -> route -> sequencers -+-> outputs ------------------------------+-> sink
                                   +-> line/session keys -+-> outputs -------+
                                   |                      +-> sharer keys ---+
                                   +-> payouts ---------------------^

All input enters one partition, and the route step (on that partition's worker)
sends each entry to its sequencer key: the commission sequencer, or one of the
session shards (state.sharding), each of which sees its part of the log in order.
The commission sequencer matches and attributes order lines itself (the fact
store keeps each buyer's best scan of an item), so a line key takes every
message, from its attribution to its last tick, from that sequencer's one
worker, and a session key from its shard's one worker: bytewax keeps the order
of items between two workers, so these keys see their messages in log order
whatever the worker count. A sharer key takes messages from many workers; it
restores log order itself, epoch by epoch (flows.logic.SharerLogic).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from flows.logic import LedgerLogic, ParseRaw, SequencerLogic, SharerLogic
from state import sharding
from state.config import RuleSettings
from state.facts import Facts, MemoryFacts
from state.messages import InputBatch, KeyBatch, KeyMessage, RawEntry, SequencerInput
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


def _memory_facts(key: str) -> Facts:
    return MemoryFacts()


def _no_raw_entries(position: str, data: str, ts: int) -> SequencerInput:
    raise TypeError(f"{position}: this flow was built without a parser for raw entries")


def _router(
    parse: ParseRaw,
) -> Callable[[list[tuple[str, SequencerInput | RawEntry]]], list[tuple[str, InputBatch]]]:
    def route(items: list[tuple[str, SequencerInput | RawEntry]]) -> list[tuple[str, InputBatch]]:
        # Tariffs go to every shard: parsed here (they are rare), so that a bad one
        # is one reject, not one per shard.
        entries = [
            parse(v.position, v.data, v.ts)
            if isinstance(v, RawEntry) and v.kind_hint == "tariff"
            else v
            for _key, v in items
        ]
        return [(batch.key, batch) for batch in sharding.route(entries)]

    return route


def build_flow(
    source: Source[Any],
    sink: Sink[tuple[str, list[Output]]],
    settings: RuleSettings,
    facts: Callable[[str], Facts] = _memory_facts,
    parse: ParseRaw = _no_raw_entries,
    recovery: bool = True,
) -> Dataflow:
    """`source` yields ("log", SequencerInput | RawEntry) pairs; `sink` takes
    (key, [output, ...]) pairs.

    The shapes avoid a Python call per item for keying and unkeying, which is most
    of what bytewax costs here. `settings` were validated when they were built
    (RuleSettings refuses a retention shorter than the windows it must cover),
    so a bad setting stops here, before any event is read. `facts(key)` makes a
    sequencer key's fact store: in memory by default, Redis for the live flows.
    `parse(position, data, ts)` turns a live raw entry into a `LogEvent` or a
    `BadEntry`, at its key. `recovery=False` (a run with no recovery store) skips
    pickling the snapshots bytewax asks for; a run that resumes needs them.
    """
    flow = Dataflow("billing")
    in_log = op.input("input", flow, source)
    routed = op.flat_map_batch("route_log", in_log, _router(parse))
    sequenced = op.stateful_batch(
        "sequencer",
        routed,
        lambda resume: SequencerLogic(settings, facts, parse, resume, recovery),
    )
    split = op.branch("split", sequenced, _is_key_batch)
    payouts = op.branch("payouts", split.trues, _for_sharer)
    keyed = op.stateful_batch(
        "ledgers",
        op.map("route", payouts.falses, _rekey),
        lambda resume: LedgerLogic(settings, resume, recovery),
    )
    keyed_split = op.branch("keyed_split", keyed, _is_key_batch)
    credits = op.merge("to_sharers", payouts.trues, keyed_split.trues)
    sharers = op.stateful_batch(
        "sharers",
        op.map("sharer_keys", credits, _rekey),
        lambda resume: SharerLogic(settings, resume, recovery),
    )
    outputs = op.merge("outputs", split.falses, keyed_split.falses, sharers)
    op.output("output", outputs, sink)  # type: ignore[misc]
    return flow
