"""state.sharding: which sequencer key each log entry goes to, and that sequencing
sessions apart from commissions changes no output.

The property runs the shards as the flow does (a batch routed, each key's
`Sequencer` on its own part, watermarks after each batch) in a plain loop, and
compares with state.engine, which keeps one sequencer for the whole log."""

from __future__ import annotations

import json
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from state.config import RuleSettings
from state.engine import Engine
from state.facts import MemoryFacts
from state.messages import BadEntry, InputBatch, LogEvent, RawEntry, Watermark
from state.outputs import Output
from state.sequencer import Sequencer
from state.sharding import (
    ALL_KEYS,
    COMMISSIONS,
    SESSION_SHARDS,
    SHARD_KEYS,
    route,
    session_shard,
)
from state.testing import SMALL_RULES, random_log
from tests.support.logs import engine_outputs, positioned

EVENTS: list[tuple[str, dict[str, Any], str | tuple[str, ...]]] = [
    ("a scan", {"type": "scan", "scan_id": "c", "ts": 5}, COMMISSIONS),
    ("an order", {"type": "order", "order_id": "o", "ts": 5}, COMMISSIONS),
    ("a refund", {"type": "refund", "refund_id": "f", "ts": 5}, COMMISSIONS),
    ("a share", {"type": "share", "share_id": "h", "ts": 5}, COMMISSIONS),
    ("a rule", {"type": "commission_rule", "rule_id": "r", "ts": 5}, COMMISSIONS),
    ("a payout", {"type": "payout", "payout_id": "p", "ts": 5}, COMMISSIONS),
    ("a start", {"type": "session_start", "session_id": "s1", "ts": 5}, session_shard("s1")),
    ("a segment", {"type": "segment", "session_id": "s1", "ts": 5}, session_shard("s1")),
    ("a tariff", {"type": "tariff", "tariff_id": "t", "ts": 5}, SHARD_KEYS),
]


@pytest.mark.parametrize(("what", "event", "goes_to"), EVENTS, ids=[e[0] for e in EVENTS])
def test_each_entry_goes_to_its_sequencer_and_every_key_gets_the_time(
    what: str, event: dict[str, Any], goes_to: str | tuple[str, ...]
) -> None:
    batches = {b.key: b.entries for b in route([LogEvent("L1", event)])}
    wanted = {goes_to} if isinstance(goes_to, str) else set(goes_to)
    assert set(batches) == set(ALL_KEYS)  # each key hears of the batch's time
    for key, entries in batches.items():
        expected = [LogEvent("L1", event)] if key in wanted else []
        assert entries == [*expected, Watermark(5)]


def test_a_watermark_goes_to_every_key_and_a_bad_entry_to_the_commission_sequencer() -> None:
    bad = BadEntry("L1", {"raw": "x"}, "not a JSON object")
    batches = {b.key: b.entries for b in route([bad, Watermark(9)])}
    assert batches[COMMISSIONS] == [bad, Watermark(9)]
    assert all(batches[key] == [Watermark(9)] for key in SHARD_KEYS)


def test_raw_entries_go_by_what_the_source_read_off_them() -> None:
    seg = RawEntry("1-0", '{"type":"segment"}', 7, "segment", "s1")
    odd = RawEntry("2-0", '{"type":"segment","session_id":3}', 7, "segment", None)
    batches = {b.key: b.entries for b in route([seg, odd])}
    assert batches[session_shard("s1")][0] == seg
    assert batches[COMMISSIONS] == [odd, Watermark(7)]  # parsed there, into its reject
    with pytest.raises(ValueError, match="parsed before routing"):
        route([RawEntry("3-0", "{}", 7, "tariff", None)])


def test_the_batch_watermark_is_its_greatest_ts_and_keys_keep_log_order() -> None:
    events = [{"type": "segment", "session_id": f"s{n}", "ts": n} for n in range(40)]
    batches = route([LogEvent(f"L{e['ts']}", e) for e in events])
    for batch in batches:
        *entries, mark = batch.entries
        assert mark == Watermark(39)
        stamps = [e.event["ts"] for e in entries if isinstance(e, LogEvent)]
        assert len(stamps) == len(entries) and stamps == sorted(stamps)


def test_shards_are_stable_across_processes_and_spread() -> None:
    # CRC-32, not Python's per-process salted hash: a restart finds each session's clock.
    assert session_shard("s1") == SHARD_KEYS[zlib.crc32(b"s1") % SESSION_SHARDS]
    used = {session_shard(f"session-{n}") for n in range(1000)}
    assert used == set(SHARD_KEYS)


def test_no_entries_no_batches() -> None:
    assert route([]) == []


class ShardedLoop(Engine):
    """The flow's arrangement without bytewax: each batch routed, one `Sequencer` (and
    fact store) per sequencer key; the keyed ledgers applied depth first, as the
    plain loop applies them (its `_route`)."""

    def __init__(self, rules: RuleSettings) -> None:
        super().__init__(rules)
        self.sequencers: dict[str, tuple[Sequencer, MemoryFacts]] = {}

    def batch(self, batch: InputBatch) -> list[Output]:
        sequencer, facts = self.sequencers.setdefault(batch.key, (Sequencer(), MemoryFacts()))
        out: list[Output] = []
        for entry in batch.entries:
            assert not isinstance(entry, RawEntry)
            outputs, routes = sequencer.on_input(entry, self.settings, facts)
            out += self._route(routes) + outputs
        return out

    def run(self, entries: list[LogEvent], size: int, order: list[int]) -> list[Output]:
        out: list[Output] = []
        for start in range(0, len(entries), size):
            batches = route(entries[start : start + size])
            # Keys of one batch may run in any order (they are on different workers).
            for n in sorted(range(len(batches)), key=lambda i: order[i % len(order)]):
                out += self.batch(batches[n])
        for sequencer, _facts in self.sequencers.values():
            out += self._route(sequencer.finish())
        return out


def canonical(outputs: list[Output]) -> list[str]:
    return sorted(json.dumps(o, sort_keys=True) for o in outputs)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 10**6),
    st.integers(1, 400),
    st.lists(st.integers(0, 20), min_size=1, max_size=9),
)
def test_sequencing_sessions_apart_changes_no_output(
    seed: int, size: int, order: list[int]
) -> None:
    events = random_log(seed, 600)
    entries = [LogEvent(p, e) for p, e in positioned(events)]
    got = ShardedLoop(SMALL_RULES).run(entries, size, order)
    assert canonical(got) == canonical(engine_outputs(events, SMALL_RULES))
