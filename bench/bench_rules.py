"""What a big rule catalog costs: one order line's rule, and one rule event.

    .venv/bin/python -m bench.bench_rules [--sizes 10,1000,10000,100000]

A catalog of N rules, nearly all of them one sharer's own rate (the shape that
grows: a shop that gives each sharer a rate), plus a general rule and an item's.
Prints microseconds per order line for the index the engine resolves with
(state.rule_index) and for SPEC's walk over every rule (state.commissions
.resolve_rule, the tests' oracle), and per rule event for the index's update and
for copying the catalog (what each rule event cost before the index); and what the
catalog adds to the commission sequencer's snapshot at each epoch.
"""

from __future__ import annotations

import argparse
import pickle
import random
import time
from typing import Any

from state.commissions import resolve_rule
from state.rule_index import RuleCatalog, RuleIndex


def catalog(size: int) -> dict[str, dict[str, Any]]:
    rules: dict[str, dict[str, Any]] = {
        "general": {"rule_id": "general", "kind": "percent", "bps": 500},
        "item": {"rule_id": "item", "kind": "percent", "bps": 700, "item_id": "i1"},
    }
    for n in range(max(0, size - 2)):
        rules[f"s{n}"] = {"rule_id": f"s{n}", "kind": "percent", "bps": 900, "sharer_id": f"s{n}"}
    return rules


def per_call_us(calls: int, fn: Any) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - started) / calls * 1e6


def measure(size: int, rng: random.Random) -> str:
    rules = catalog(size)
    index = RuleIndex(rules)
    sharers = [f"s{rng.randrange(max(1, size - 2))}" for _ in range(1000)]
    items = [rng.choice(["i1", "i2"]) for _ in range(1000)]
    queries = iter(list(zip(sharers, items, strict=True)) * 1000)
    indexed = per_call_us(100_000, lambda: index.resolve(*next(queries), "USD"))
    walk_rules = list(rules.values())
    walked = per_call_us(
        max(10, 100_000 // size), lambda: resolve_rule(walk_rules, *next(queries), "USD")
    )
    ids = iter([f"s{rng.randrange(max(1, size - 2))}" for _ in range(20_000)])

    def update() -> None:
        rule_id = next(ids)
        new = {**rules[rule_id], "bps": rng.randrange(10_000)}
        index.replaced(rule_id, rules.get(rule_id), new)
        rules[rule_id] = new

    updated = per_call_us(20_000, update)
    copied = per_call_us(max(10, 100_000 // size), lambda: {**rules, "general": rules["general"]})
    book = RuleCatalog(rules)
    started = time.perf_counter()
    blob = pickle.dumps(book)  # the first snapshot after a rule event
    fresh = (time.perf_counter() - started) * 1e3
    cached = per_call_us(20, lambda: pickle.dumps(book)) / 1e3  # every other epoch's
    return (
        f"{size:>7,} rules: an order line's rule {indexed:6.2f} us (index) against "
        f"{walked:9.1f} us (walk over every rule); a rule event {updated:5.2f} us "
        f"(index update) against {copied:8.1f} us (catalog copy); the catalog in a "
        f"snapshot {len(blob) / 1e6:.2f} MB, {fresh:.2f} ms after a rule event, "
        f"{cached:.3f} ms at any other epoch"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10,1000,10000,100000")
    args = parser.parse_args()
    rng = random.Random(7)
    for size in (int(s) for s in args.sizes.split(",")):
        print(measure(size, rng), flush=True)


if __name__ == "__main__":
    main()
