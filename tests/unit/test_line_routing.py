"""How the sequencer routes a line's ticks and refunds (state.sequencer, `_to_line`).

Through the line's touch key in the epoch its order line was sent (the touch key makes
the line, and two upstream workers' items interleave within an epoch); straight to the
line key after that epoch has ended. The plain loop relays always. The flow's tests
(tests/flows/test_flows.py, epochs of 7 entries) compare the flow that routes by epoch
with the plain loop that relays; here the rules are pinned without bytewax.
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from state.engine import Engine
from state.facts import MemoryFacts
from state.messages import LogEvent, Refund, Route, Tick, ToLine, line_key, touch_key
from state.sequencer import Sequencer
from state.testing import SMALL_RULES, random_log
from tests.support.logs import positioned

RULE = {"type": "commission_rule", "rule_id": "d", "ts": 1_000_000, "kind": "percent", "bps": 500}
SCAN = {
    "type": "scan",
    "scan_id": "a",
    "ts": 1_000_001,
    "share_id": "x",
    "item_id": "i",
    "sharer_id": "s1",
    "scanner_id": "b",
}
ORDER = {
    "type": "order",
    "order_id": "o",
    "ts": 1_000_002,
    "buyer_id": "b",
    "currency": "USD",
    "lines": [{"item_id": "i", "quantity": 2, "unit_price_minor": 1000}],
}
# Of one unit of two: a refund of the whole line would spend it, and withdraw its tick.
REFUND = {
    "type": "refund",
    "refund_id": "r",
    "order_id": "o",
    "ts": 1_000_003,
    "lines": [{"item_id": "i", "quantity": 1}],
}
LINE, TOUCH = line_key("i", "b", "o", 1_000_002), touch_key("i", "b")


def _line_routes(routes: list[Route]) -> list[Route]:
    """The routes that carry a line's refund or tick, relayed or not."""
    return [r for r in routes if isinstance(r.message, ToLine) or r.key == LINE]


def _run(by_epoch: bool, epoch_ends_after: set[str]) -> list[Route]:
    """RULE, SCAN, ORDER, REFUND, then a time past the holding period; the epoch
    ends after each event whose type is in `epoch_ends_after`."""
    sequencer, facts = Sequencer(), MemoryFacts()
    if by_epoch:
        sequencer.route_lines_by_epoch()
    later = {**SCAN, "scan_id": "z", "ts": 1_000_002 + 31_000}
    routes: list[Route] = []
    for n, event in enumerate([RULE, SCAN, ORDER, REFUND, later]):
        _out, got = sequencer.on_event(event, f"p{n}", SMALL_RULES, facts)
        routes += got
        if event["type"] in epoch_ends_after:
            sequencer.epoch_ended()
    return _line_routes(routes)


def _shape(route: Route) -> tuple[str, str]:
    message: Any = route.message
    inner = message.message if isinstance(message, ToLine) else message
    via = "touch" if route.key == TOUCH else "line" if route.key == LINE else route.key
    return via, inner.kind


@pytest.mark.parametrize(
    ("by_epoch", "epoch_ends_after", "expected"),
    [
        # The plain loop: always through the touch key.
        (False, set(), [("touch", "refund"), ("touch", "tick")]),
        (False, {"order", "refund"}, [("touch", "refund"), ("touch", "tick")]),
        # One epoch for everything: the line was made in it, so relay.
        (True, set(), [("touch", "refund"), ("touch", "tick")]),
        # The order's epoch ended before the refund: both go straight to the line.
        (True, {"order"}, [("line", "refund"), ("line", "tick")]),
        # An epoch that ended before the order does not count.
        (True, {"scan"}, [("touch", "refund"), ("touch", "tick")]),
        # The refund in the order's epoch, the approval's tick in a later one.
        (True, {"refund"}, [("touch", "refund"), ("line", "tick")]),
    ],
)
def test_a_lines_messages_are_relayed_only_in_the_epoch_it_was_made(
    by_epoch: bool, epoch_ends_after: set[str], expected: list[tuple[str, str]]
) -> None:
    got = _run(by_epoch, epoch_ends_after)
    assert [_shape(r) for r in got] == expected
    for route in got:
        message: Any = route.message
        inner = message.message if isinstance(message, ToLine) else message
        assert isinstance(inner, Refund | Tick)
        if isinstance(message, ToLine):
            assert message.line_key == LINE


def test_routing_by_epoch_is_the_running_flows_choice_not_the_snapshots() -> None:
    sequencer = Sequencer()
    sequencer.route_lines_by_epoch()
    sequencer.on_event(RULE, "p0", SMALL_RULES, MemoryFacts())
    restored = pickle.loads(pickle.dumps(sequencer))
    assert restored._lines_this_epoch is None  # relays until the logic turns it on
    old = Sequencer()
    del old.__dict__["_lines_this_epoch"]  # a snapshot from before the attribute
    assert pickle.loads(pickle.dumps(old))._lines_this_epoch is None


class EpochEngine(Engine):
    """The plain loop with its sequencer routing by epoch, an epoch every `size` entries."""

    def __init__(self, size: int) -> None:
        super().__init__(SMALL_RULES)
        self.sequencer.route_lines_by_epoch()
        self.size = size

    def outputs(self, events: list[dict[str, Any]]) -> list[Any]:
        out: list[Any] = []
        entries = [LogEvent(p, e) for p, e in positioned(events)]
        for start in range(0, len(entries), self.size):
            out += self.on_batch(entries[start : start + self.size])
            self.sequencer.epoch_ended()
        return out + self.finish()


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), size=st.integers(1, 40))
def test_a_relay_changes_nothing_but_the_route(seed: int, size: int) -> None:
    """Applied in log order, a message reaches its line the same through the touch key
    or not: the relay holds no state and emits nothing else."""
    events = random_log(seed, 300)
    relayed = Engine(SMALL_RULES)
    expected = [o for p, e in positioned(events) for o in relayed.feed(e, p)] + relayed.finish()
    assert EpochEngine(size).outputs(events) == expected
