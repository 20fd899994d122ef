"""The sink's script against a naive oracle: the views after any calls equal applying
each output alone, in order (billing.sharer_view, share_view, order_view,
session_view), however the outputs are split into calls and replayed.

The script writes each counter, order, statement and session once per call, after
summing; these pin that summing loses nothing: repeats inside a call and across
calls, totals past 2^53 (Lua's numbers are doubles), and a bound near 2^63 that
sends the check down its exact path without any real overflow.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import defaultdict
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing import share_view, sharer_view
from billing.keys import Keys
from billing.redis_runtime import delete_prefix
from flows.redis_sink import _RedisWriter
from harness.live import url_of

NOW = int(time.time() * 1000)  # statements keep 400 days back from Redis's clock
DAY = 86_400_000
AMOUNTS = st.one_of(
    st.integers(-1_000, 1_000),
    st.sampled_from([2**52 + 1, 2**53 - 1, 2**53, 2**53 + 3, -(2**53) - 5, 4 * 10**18]),
)


def _commission(n: int, kind: str, sharer: str, amount: int, day: int, share: str | None):
    out: dict[str, Any] = {
        "type": "commission",
        "output_id": f"commission:{kind}:o{n % 7}:{n}:i",
        "kind": kind,
        "status": "pending" if n % 2 else "payable",
        "order_id": f"o{n % 7}",
        "sharer_id": sharer,
        "currency": "USD" if n % 3 else "EUR",
        "commission_minor": amount,
        "ts": NOW - day * DAY + n,
    }
    if share is not None:
        out["share_id"] = share
    return out


@st.composite
def outputs(draw: st.DrawFn) -> list[dict[str, Any]]:
    made: list[dict[str, Any]] = []
    for n in range(draw(st.integers(1, 40))):
        what = draw(st.sampled_from(["commission", "commission", "usage", "payout", "again"]))
        if what == "again" and made:  # at-least-once: an output seen before, once more
            made.append(draw(st.sampled_from(made)))
        elif what == "usage":
            started, version = draw(st.integers(0, 3)), draw(st.integers(1, 4))
            session = draw(st.sampled_from(["s1", "s2"]))
            made.append(
                {
                    "type": "usage",
                    "output_id": f"usage:{session}:{started}:{version}",
                    "session_id": session,
                    "started_ts": started,
                    "version": version,
                }
            )
        elif what == "payout":
            made.append(
                {
                    "type": "payout",
                    "output_id": f"payout:p{n}:{NOW}",
                    "sharer_id": draw(st.sampled_from(["al", "bo"])),
                    "currency": "USD",
                    "amount_minor": draw(st.integers(0, 500)),
                    "ts": NOW + n,
                }
            )
        else:
            kind = draw(st.sampled_from(["accrual", "approval", "reversal"]))
            made.append(
                _commission(
                    n,
                    kind,
                    draw(st.sampled_from(["al", "bo"])),
                    draw(AMOUNTS),
                    draw(st.integers(0, 1)),
                    draw(st.sampled_from(["sh1", "sh2", None])),
                )
            )
    return made


LIMIT = 9.2e18  # the script's check (flows.redis_sink)


def _deltas(keys: Keys, out: dict[str, Any]) -> list[tuple[str, str, int]]:
    _head, deltas = sharer_view.write_args(keys, out, 10**12)
    return [(str(v), f, d) for v, f, d in deltas + share_view.commission_deltas(keys, out)]


class Oracle:
    """Each output alone, in order: what the views must hold after each call."""

    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self.hashes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.orders: dict[str, dict[str, str]] = defaultdict(dict)
        self.statements: dict[str, set[str]] = defaultdict(set)
        self.sessions: dict[str, tuple[int, int, str]] = {}
        self.applied: set[str] = set()
        self.rejects = 0

    def call(self, batch: list[dict[str, Any]]) -> None:
        """One writer call: first the check (a total passing the limit, counting the
        outputs not applied before the call, turns that output into a reject), then
        each output alone."""
        while True:
            running: dict[tuple[str, str], int] = {}
            bad = None
            for out in batch:
                if out["type"] in ("usage", "reject") or out["output_id"] in self.applied:
                    continue
                for view, field, delta in _deltas(self.keys, out):
                    slot = (view, field)
                    now = self.hashes.get(view, {}).get(field, 0)
                    running[slot] = running.get(slot, now) + delta
                    if bad is None and abs(running[slot]) > LIMIT:
                        bad = out["output_id"]
            if bad is None:
                break
            self.rejects += sum(1 for out in batch if out.get("output_id") == bad)
            batch = [o for o in batch if o.get("output_id") != bad]
        for out in batch:
            self.apply(out)

    def apply(self, out: dict[str, Any]) -> None:
        data = json.dumps(out, separators=(",", ":"))
        if out["type"] == "usage":
            view = self.keys.session_view(out["session_id"])
            if (out["started_ts"], out["version"]) > self.sessions.get(view, (-1, 0, ""))[:2]:
                self.sessions[view] = (out["started_ts"], out["version"], data)
            return
        if out["type"] == "commission":
            self.orders[self.keys.order_view(out["order_id"])][out["output_id"]] = data
        if out["output_id"] in self.applied:
            return
        self.applied.add(out["output_id"])
        for view, field, delta in _deltas(self.keys, out):
            self.hashes[view][field] += delta
        self.statements[self.keys.statement(out["sharer_id"], out["ts"] // DAY)].add(data)

    def views(self) -> dict[str, Any]:
        return {
            "hashes": {k: {f: str(v) for f, v in fs.items()} for k, fs in self.hashes.items()},
            "orders": dict(self.orders),
            "statements": dict(self.statements),
            "sessions": {
                v: {"started_ts": str(s), "version": str(n), "data": d}
                for v, (s, n, d) in self.sessions.items()
            },
        }


def _views(conn: Any, keys: Keys, expected: dict[str, Any]) -> dict[str, Any]:
    def read(names: Any, how: Any) -> dict[str, Any]:
        return {k: how(k) for k in names}

    return {
        "hashes": read(expected["hashes"], conn.hgetall),
        "orders": read(expected["orders"], conn.hgetall),
        "statements": read(expected["statements"], lambda k: set(conn.zrange(k, 0, -1))),
        "sessions": read(expected["sessions"], conn.hgetall),
    }


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    written=outputs(),
    cuts=st.lists(st.integers(0, 40), max_size=6),
    per_call=st.sampled_from([1, 3, 256]),
)
def test_views_equal_each_output_alone(redis_client, written, cuts, per_call):
    keys = Keys(f"test:sink:{secrets.token_hex(4)}:")
    writer = _RedisWriter(url_of(redis_client), keys, outputs_per_call=per_call)
    try:
        oracle = Oracle(keys)
        bounds = sorted({0, len(written), *(c for c in cuts if c < len(written))})
        for lo, hi in pairwise(bounds):
            writer.write(written[lo:hi])
            for first in range(lo, hi, per_call):  # the script calls the writer made
                oracle.call(written[first : min(hi, first + per_call)])
        expected = oracle.views()
        assert _views(redis_client, keys, expected) == expected
        assert redis_client.xlen(keys.rejects) == oracle.rejects
    finally:
        writer.close()
        delete_prefix(redis_client, keys.prefix)


def test_near_the_bound_an_exact_check_and_exact_sums(redis_client, keys):
    """Deltas whose sizes add past the check's bound, but whose totals never pass it:
    the exact path runs, finds no overflow, and the totals are exact to the unit,
    past 2^53 too (where the script stops summing in doubles)."""
    writer = _RedisWriter(url_of(redis_client), keys)
    big = 9_000_000_000_000_000_001
    writer.write(
        [
            _commission(1, "accrual", "al", big, 0, None),  # n picks USD, pending
            _commission(5, "approval", "al", big, 0, None),
            _commission(4, "accrual", "al", 2**53 + 1, 0, None),
            _commission(7, "accrual", "al", 2**52 + 1, 0, None),
            _commission(8, "accrual", "al", 2**52 + 1, 0, None),
        ]
    )
    assert redis_client.hgetall(keys.sharer_view("al")) == {
        "USD:pending": str(2**54 + 3),
        "USD:accrued": str(big + 2**54 + 3),
        "USD:payable": str(big),
        "USD:accruals": "4",
        "USD:approvals": "1",
    }
    assert redis_client.xlen(keys.rejects) == 0
    writer.close()


def test_a_call_bigger_than_one_command(redis_client, keys):
    """A statement or an order gets 4,500 entries in one call, 9,000 arguments, more
    than Lua's unpack takes (8,000): they go in commands of at most 1,000 arguments,
    and none is lost."""
    writer = _RedisWriter(url_of(redis_client), keys, outputs_per_call=5_000)
    many = [_commission(21 * n, "accrual", "al", 1, 0, None) for n in range(4_500)]  # o0, EUR
    writer.write(many)
    days = {o["ts"] // DAY for o in many}  # one, unless the run straddles midnight
    assert sum(redis_client.zcard(keys.statement("al", d)) for d in days) == 4_500
    assert redis_client.hlen(keys.order_view("o0")) == 4_500
    assert redis_client.hget(keys.sharer_view("al"), "EUR:accrued") == "4500"
    writer.close()


class _CountedCalls:
    """The writer's script, counting its calls and their sizes (it still runs)."""

    def __init__(self, script: Any) -> None:
        self.script = script
        self.sizes: list[int] = []

    def __call__(self, keys: list[str], args: list[Any]) -> Any:
        self.sizes.append(sum(1 for a in args if a in ("commission", "usage", "payout", "reject")))
        return self.script(keys=keys, args=args)


def test_a_batch_goes_in_calls_of_at_most_outputs_per_call(redis_client, keys):
    """Redis runs nothing else while a script runs, so a batch is cut into calls of
    at most `outputs_per_call` outputs, in order: every output lands once, and the
    stream keeps the batch's order."""
    writer = _RedisWriter(url_of(redis_client), keys, outputs_per_call=4)
    counted = _CountedCalls(writer._script)
    writer._script = counted  # type: ignore[assignment]
    batch = [_commission(n, "accrual", "al", 1, 0, None) for n in range(10)]
    writer.write(batch)
    assert counted.sizes == [4, 4, 2]
    stream = keys.output_stream("commission")
    written = [f["output_id"] for _id, f in redis_client.xrange(stream)]
    assert written == [o["output_id"] for o in batch]
    view = redis_client.hgetall(keys.sharer_view("al"))  # n % 3 == 0 is EUR: 0, 3, 6, 9
    assert (view["EUR:accruals"], view["USD:accruals"]) == ("4", "6")
    writer.close()
    with pytest.raises(ValueError):
        _RedisWriter(url_of(redis_client), keys, outputs_per_call=0)
