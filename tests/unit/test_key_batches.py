"""`by_key`: what the flows move between steps instead of single routes. A key's
stage applies its messages in order, so grouping must keep each key's messages in
the order they were made, lose none and add none."""

from __future__ import annotations

import dataclasses
import pickle

from hypothesis import given
from hypothesis import strategies as st

from state import messages as m
from state.messages import KeyBatch, Route, Tick, by_key


def routes(pairs: list[tuple[str, int]]) -> list[Route]:
    return [Route(key, Tick(n)) for key, n in pairs]


def test_each_key_gets_one_batch_with_its_messages_in_order() -> None:
    grouped = by_key(routes([("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5)]))
    assert grouped == [
        KeyBatch("a", [Tick(1), Tick(3)]),
        KeyBatch("b", [Tick(2), Tick(5)]),
        KeyBatch("c", [Tick(4)]),
    ]


def test_no_routes_no_batches() -> None:
    assert by_key([]) == []


@given(st.lists(st.tuples(st.sampled_from("abcde"), st.integers(0, 10**6)), max_size=60))
def test_grouping_keeps_every_keys_subsequence(pairs: list[tuple[str, int]]) -> None:
    grouped = by_key(routes(pairs))
    assert len({batch.key for batch in grouped}) == len(grouped)
    for batch in grouped:
        assert batch.messages == [Tick(n) for key, n in pairs if key == batch.key]
    assert sum(len(batch.messages) for batch in grouped) == len(pairs)
    # Keys come in the order of their first message: the same input, the same items.
    assert [batch.key for batch in grouped] == list(dict.fromkeys(key for key, _ in pairs))


def _one_of_each() -> list[object]:
    from state.metering import Tariff

    tariff = Tariff.from_event(
        {"tariff_id": "t", "ts": 1, "currency": "USD", "unit_ms": 1000, "price_minor": 3}
    )
    return [
        m.LogEvent("1-0", {"type": "scan"}),
        m.BadEntry("L1", {"raw": "x"}, "not a JSON object"),
        m.Watermark(5),
        m.RawEntry("1-0", "{}", 1, "segment", "s"),
        m.RawRun(["1-0", "1-1"], ["{}", "[]"], [1, 1]),
        m.InputBatch("log", [m.Watermark(1)]),
        m.Refund({"refund_id": "f"}, "i", None, "L3", 4),
        m.Start({"session_id": "s"}, tariff, "L4"),
        m.Segment({"session_id": "s"}, "L5"),
        m.Tick(7, 2),
        m.Attributed({"order_id": "o"}, 3),
        m.Credit("USD", 5, 1, 0, "commission:approval:o:1:i"),
        m.PayoutRequest({"payout_id": "p"}, "L6", 9),
        m.Route("line:i|b|o|1", m.Tick(1)),
        m.KeyBatch("line:i|b|o|1", [m.Tick(1), m.Tick(2)]),
    ]


def test_every_message_pickles_to_an_equal_one_of_its_class() -> None:
    """Messages cross processes pickled, through `__reduce__` (state.messages)."""
    samples = _one_of_each()
    kinds = {
        obj
        for obj in vars(m).values()
        if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == m.__name__
    }
    assert {type(s) for s in samples} == kinds  # one of each, so a new kind is tested too
    for sample in samples:
        again = pickle.loads(pickle.dumps(sample, protocol=pickle.HIGHEST_PROTOCOL))
        assert type(again) is type(sample) and again == sample
