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
from state.messages import (
    BadEntry,
    InputBatch,
    LogEvent,
    RawEntry,
    RawRun,
    SequencerInput,
    Watermark,
)
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
    assert batches[session_shard("s1")][0] == RawRun(["1-0"], ['{"type":"segment"}'], [7])
    # Parsed there, into its reject.
    assert batches[COMMISSIONS] == [RawRun(["2-0"], [odd.data], [7]), Watermark(7)]
    with pytest.raises(ValueError, match="parsed before routing"):
        route([RawEntry("3-0", "{}", 7, "tariff", None)])


def test_a_key_s_consecutive_raw_entries_travel_as_one_run_in_log_order() -> None:
    def raw(n: int, kind: str, session: str | None = None) -> RawEntry:
        return RawEntry(f"{n}-0", f'{{"n":{n}}}', n, kind, session)

    bad = BadEntry("3-0", {"raw": "x"}, "not a JSON object")
    parsed = LogEvent("5-0", {"type": "scan", "ts": 5})
    log: list[SequencerInput | RawEntry] = [
        raw(1, "order"),
        raw(2, "segment", "s1"),
        raw(2, "scan"),
    ]
    log += [bad, raw(4, "order"), parsed, raw(6, "refund")]
    batches = {b.key: b.entries for b in route(log)}
    # Another key's entries between two of this key's do not split a run; what the
    # source parsed (a reject, an event) does, so that the key keeps the log's order.
    assert batches[COMMISSIONS] == [
        RawRun(["1-0", "2-0"], ['{"n":1}', '{"n":2}'], [1, 2]),
        bad,
        RawRun(["4-0"], ['{"n":4}'], [4]),
        parsed,
        RawRun(["6-0"], ['{"n":6}'], [6]),
        Watermark(6),
    ]
    assert batches[session_shard("s1")] == [RawRun(["2-0"], ['{"n":2}'], [2]), Watermark(6)]


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
            assert not isinstance(entry, RawRun)
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
