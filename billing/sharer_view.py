"""The sharer view: balances per currency and a statement, one owner for both.

Key layout (billing.keys): `view:sharer:<id>` is a hash of `<currency>:<field>`
counters; `view:statement:<id>:<day>` a sorted set of that UTC day's commission
and payout outputs by `ts`, kept for `statement_retention_ms`; `view:marks:<minute>`
marks the outputs counted (at-least-once recovery replays outputs): a hash of the
`output_id`s whose `ts` falls in that minute of log time, with no TTL, indexed in
`view:marks:index` by where the minute ends, so that flows.fact_sweeper deletes whole
buckets by the log's time. (`view:applied:<output_id>`, a key per output with a TTL,
is where versions before 2026-12-07's eleventh session marked them; the sink still
honours such a mark.)

Write plan (`balance_deltas`), from SPEC "Balances":
- accrual: pending += c;  approval: pending -= c, payable += c;
- reversal (c < 0): pending += c if its status is pending, else payable += c;
- payout: payable -= a, paid += a.
The sink's Lua script applies these with the output, atomically (flows.redis_sink),
beside the share funnel's (billing.share_view), under one applied mark.

Read decoding: `earnings` and `statement` below, used by the read API.
"""

from __future__ import annotations

from typing import Any

from billing.keys import Keys

DAY_MS = 86_400_000
MARK_BUCKET_MS = 60_000  # a minute of log time per bucket of applied marks
BALANCES = ("pending", "payable", "paid")
TOTALS = ("accrued", "reversed")
COUNTS = ("accruals", "approvals", "reversals", "payouts")


def day_of(ts: int) -> int:
    return ts // DAY_MS


def balance_deltas(out: dict[str, Any]) -> list[tuple[str, int]]:
    """(hash field, increment) pairs for one commission or payout output."""
    cur = out["currency"]
    if out["type"] == "payout":
        amount = out["amount_minor"]
        return [(f"{cur}:payable", -amount), (f"{cur}:paid", amount), (f"{cur}:payouts", 1)]
    c = out["commission_minor"]
    kind = out["kind"]
    if kind == "accrual":
        return [(f"{cur}:pending", c), (f"{cur}:accrued", c), (f"{cur}:accruals", 1)]
    if kind == "approval":
        return [(f"{cur}:pending", -c), (f"{cur}:payable", c), (f"{cur}:approvals", 1)]
    where = "pending" if out["status"] == "pending" else "payable"
    return [(f"{cur}:{where}", c), (f"{cur}:reversed", c), (f"{cur}:reversals", 1)]


def write_args(
    keys: Keys, out: dict[str, Any], statement_ttl_ms: int
) -> tuple[list[str | int], list[tuple[str, str, int]]]:
    """The sink script's arguments for one output: its bucket of applied marks, the
    mark an earlier version would have set, statement key, statement TTL and ts; and
    the (key, field, increment) triples for its balances."""
    sharer = out["sharer_id"]
    view = keys.sharer_view(sharer)
    head: list[str | int] = [
        keys.marks(out["ts"] // MARK_BUCKET_MS),
        keys.applied(out["output_id"]),
        keys.statement(sharer, day_of(out["ts"])),
        statement_ttl_ms,
        out["ts"],
    ]
    return head, [(view, field, delta) for field, delta in balance_deltas(out)]


def decode(totals: dict[str, str]) -> dict[str, dict[str, int]]:
    per: dict[str, dict[str, int]] = {}
    for field, value in totals.items():
        currency, _, name = field.partition(":")
        slot = per.setdefault(currency, dict.fromkeys(BALANCES + TOTALS + COUNTS, 0))
        if name in slot:
            slot[name] = int(value)
    return per


def earnings(totals: dict[str, str]) -> dict[str, Any]:
    """Per currency: SPEC's balances (minor units), the totals and the counts."""
    return {
        cur: {**v, "net": v["accrued"] + v["reversed"]} for cur, v in sorted(decode(totals).items())
    }


def balances_after(outputs: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """What `outputs` add to each currency's balances."""
    per: dict[str, dict[str, int]] = {}
    for out in outputs:
        for field, delta in balance_deltas(out):
            currency, _, name = field.partition(":")
            if name in BALANCES:
                slot = per.setdefault(currency, dict.fromkeys(BALANCES, 0))
                slot[name] += delta
    return per


def statement(
    totals: dict[str, str], window: list[dict[str, Any]], later: list[dict[str, Any]]
) -> dict[str, Any]:
    """Opening and closing balances per currency around `window` (the outputs with
    from <= ts < to), from today's balances minus what came at or after `to`."""
    now = {cur: {b: v[b] for b in BALANCES} for cur, v in decode(totals).items()}
    after_to = balances_after(later)
    inside = balances_after(window)
    currencies: dict[str, Any] = {}
    for cur in sorted(set(now) | set(inside)):
        closing = {
            b: now.get(cur, {}).get(b, 0) - after_to.get(cur, {}).get(b, 0) for b in BALANCES
        }
        opening = {b: closing[b] - inside.get(cur, {}).get(b, 0) for b in BALANCES}
        currencies[cur] = {"opening": opening, "closing": closing}
    return {"currencies": currencies, "entries": window}


# One consistent read of a statement: the balances (KEYS[1]) and the entries from
# ARGV[1] of each day's statement (KEYS[2..]), in one script call (atomic on a Redis
# Cluster too: every key carries the deployment's hash tag).
READ_STATEMENT = """
local out = {redis.call('HGETALL', KEYS[1])}
for i = 2, #KEYS do out[i] = redis.call('ZRANGEBYSCORE', KEYS[i], ARGV[1], '+inf') end
return out
"""


def read_statement_keys(keys: Keys, sharer_id: str, first_day: int, last_day: int) -> list[str]:
    days = range(first_day, last_day + 1)
    return [keys.sharer_view(sharer_id), *(keys.statement(sharer_id, d) for d in days)]


def decode_read(reply: list[list[str]]) -> tuple[dict[str, str], list[list[str]]]:
    """READ_STATEMENT's answer: the balances as a dict, and each day's entries."""
    flat, *days = reply
    return dict(zip(flat[::2], flat[1::2], strict=True)), days
