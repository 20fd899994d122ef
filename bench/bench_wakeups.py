"""Where the sequencer's wake-ups go: how many reach a key with something to do.

    .venv/bin/python -m bench.bench_wakeups [--events 1000000] [--attributed 0.05] [--live]

The sequencer asks two wake-ups for each order line with a line key (approve it,
then forget it past R), and withdraws those a whole refund leaves with nothing to
reach. A wake-up that reaches no line still costs a Redis entry and a line key
built and dropped. This counts,
with the rules alone (state.engine, default settings, no bytewax, no Redis), the
ticks each kind of key gets per event, and those that reach no line, over two logs:

- the mixed bench log (bench.bench_replay.make_log: 4 items and 5 people, so nearly
  every order line has a recent scan of its item by its buyer);
- a shop log: many buyers and items, where only `--attributed` of the orders come
  from a share (the buyer scanned the item within the attribution window).

`--live` also runs the live catch-up (bench.live_run's, recovery on, one process)
over the shop log. Figures printed, nothing asserted.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson

from bench.bench_replay import make_log
from bench.common import scratch_redis
from bench.live_run import run_live
from billing.log_lines import parse_log_event
from flows.file_io import parse_line
from state import ledgers
from state.config import RuleSettings
from state.engine import Engine
from state.messages import KeyMessage, LogEvent

DEFAULTS = RuleSettings()
DAY = 86_400_000


def shop_log(events: int, attributed: float, seed: int = 7) -> Iterator[dict[str, Any]]:
    """A shop: 20% scans, 70% orders, 10% refunds, over 100k buyers and 5k items, one
    5% rule for everything; an order comes from a recent scan with `attributed`."""
    rng = random.Random(seed)
    ts = 1_767_225_600_000
    step = 90 * DAY // events  # the log spans 90 days: past the holding period and R
    yield {"type": "commission_rule", "rule_id": "all", "ts": ts, "kind": "percent", "bps": 500}
    scans: list[tuple[str, str]] = []  # (buyer, item) of recent scans
    orders: list[str] = []
    for n in range(events - 1):
        ts += rng.randint(0, 2 * step)
        roll = rng.random()
        if roll < 0.2:
            buyer, item = f"b{rng.randrange(100_000)}", f"i{rng.randrange(5_000)}"
            scans = [*scans[-999:], (buyer, item)]
            yield {
                "type": "scan",
                "scan_id": f"c{n}",
                "ts": ts,
                "share_id": "sh",
                "item_id": item,
                "sharer_id": f"s{rng.randrange(200)}",
                "scanner_id": buyer,
            }
        elif roll < 0.9:
            if scans and rng.random() < attributed:
                buyer, item = rng.choice(scans[-100:])
            else:
                buyer, item = f"b{rng.randrange(100_000)}", f"i{rng.randrange(5_000)}"
            orders.append(f"o{n}")
            yield {
                "type": "order",
                "order_id": f"o{n}",
                "ts": ts,
                "buyer_id": buyer,
                "currency": "USD",
                "lines": [{"item_id": item, "quantity": 1, "unit_price_minor": 2_000}],
            }
        elif orders:
            yield {"type": "refund", "refund_id": f"f{n}", "order_id": rng.choice(orders), "ts": ts}


def count_ticks(entries: list[LogEvent]) -> tuple[Counter[str], float]:
    """Ticks by the kind of key they reach, and the rules' events/s with the
    counting on."""
    counts: Counter[str] = Counter()
    apply = ledgers.apply

    def counting(state: ledgers.KeyState, message: KeyMessage, settings: RuleSettings) -> Any:
        if message.kind == "tick":
            counts[type(state).__name__ if state is not None else "nothing"] += 1
        return apply(state, message, settings)

    ledgers.apply = counting
    try:
        engine = Engine(DEFAULTS)
        started = time.perf_counter()
        for i in range(0, len(entries), 2000):
            engine.on_batch(entries[i : i + 2000])
        engine.finish()
        rate = len(entries) / (time.perf_counter() - started)
    finally:
        ledgers.apply = apply
    return counts, rate


def report(name: str, entries: list[LogEvent]) -> None:
    counts, rate = count_ticks(entries)
    n = len(entries)
    ticks = sum(counts.values())
    print(f"{name}: {n:,} events, {rate:,.0f} events/s (rules alone, counting)")
    print(f"  ticks per event {ticks / n:.3f}")
    for kind in ("Line", "Session", "nothing"):
        share = counts[kind] / max(1, ticks)
        print(f"  reaching {kind:8} {counts[kind] / n:.3f} per event ({share:.0%} of ticks)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--attributed", type=float, default=0.05)
    parser.add_argument("--live", action="store_true", help="also the live catch-up, shop log")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "log.jsonl")
        make_log(log, args.events)
        with open(log, "rb") as lines:
            mixed = [
                p
                for i, line in enumerate(lines, 1)
                if isinstance(p := parse_line(line, i), LogEvent)
            ]
    report("mixed bench log", mixed)
    made = shop_log(args.events, args.attributed)
    shop = [LogEvent(f"L{i}", parse_log_event(e)) for i, e in enumerate(made, 1)]
    report(f"shop log, {args.attributed:.0%} of orders from a share", shop)
    if args.live:
        live(shop)


def live(shop: list[LogEvent]) -> None:
    with scratch_redis() as (url, prefix), tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "shop.jsonl")
        with open(log, "wb") as out:
            out.writelines(orjson.dumps(entry.event) + b"\n" for entry in shop)
        r = run_live(url, prefix, tmp, log, DEFAULTS)
    print(
        f"live catch-up, shop log: {r['rate']:,.0f} events/s ({r['elapsed']:.1f} s); "
        f"snapshot {r['snap_bytes_per_epoch'] / 1e3:,.1f} kB per epoch; RSS {r['rss_mb']:,.0f} MB"
    )


if __name__ == "__main__":
    main()
