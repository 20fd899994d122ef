"""`by_key`: what the flows move between steps instead of single routes. A key's
stage applies its messages in order, so grouping must keep each key's messages in
the order they were made, lose none and add none."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

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
