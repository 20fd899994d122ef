"""Issue 10, item 1: no value a client can send stops billing.

Every integer field, at 2^63, 2^64 and -2^63: the API answers 422 with the field
named; written straight into the stream (around the API), the entry becomes an
`invalid_event` reject and the events after it are still billed, live and on a
replay of the export. A rule step that fails is a reject too, never a crash.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from billing.stream_ids import ts_of
from harness.live import outputs, wait_for
from state import ledgers
from state.config import RuleSettings
from state.sequencer import Sequencer
from tests.support.logs import engine_outputs, final_state, order, rule, scan, usage_for
from tests.support.streams import logged

HUGE = [2**63, 2**64, -(2**63)]

ORDER = {
    "order_id": "o",
    "buyer_id": "b",
    "currency": "USD",
    "lines": [{"item_id": "i", "quantity": 1, "unit_price_minor": 1}],
}
FLAT = {"kind": "flat", "amount_minor": 1, "currency": "USD", "cap_minor": 5}
TARIFF = {"currency": "USD", "unit_ms": 1000, "price_minor": 1, "free_ms": 0, "min_charge_minor": 0}
SEGMENT = {"seq": 0, "start_ms": 1, "end_ms": 2}
SHARE = {
    "item_id": "i",
    "sharer_id": "al",
    "activity_url": "https://shop.example/p",
    "expires_at": 2**40,
}

# (method, path, body, field path inside the body)
FIELDS: list[tuple[str, str, dict[str, Any], tuple[Any, ...]]] = [
    ("PUT", "/v1/commission-rules/r", {"kind": "percent", "bps": 1}, ("bps",)),
    ("PUT", "/v1/commission-rules/r", FLAT, ("amount_minor",)),
    ("PUT", "/v1/commission-rules/r", FLAT, ("cap_minor",)),
    *[("PUT", "/v1/tariffs/t", TARIFF, (f,)) for f in TARIFF if f != "currency"],
    ("POST", "/v1/orders", ORDER, ("lines", 0, "quantity")),
    ("POST", "/v1/orders", ORDER, ("lines", 0, "unit_price_minor")),
    (
        "POST",
        "/v1/refunds",
        {"refund_id": "f", "order_id": "o", "lines": [{"item_id": "i", "quantity": 1}]},
        ("lines", 0, "quantity"),
    ),
    *[("POST", "/v1/sessions/ghost/segments", SEGMENT, (f,)) for f in SEGMENT],
    ("POST", "/v1/shares", SHARE, ("expires_at",)),
]


def with_value(body: dict[str, Any], path: tuple[Any, ...], value: int) -> dict[str, Any]:
    copy = json.loads(json.dumps(body))
    target = copy
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return copy


@pytest.mark.parametrize("value", HUGE)
@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    FIELDS,
    ids=[f"{p}:{'.'.join(map(str, f))}" for _m, p, _b, f in FIELDS],
)
def test_api_refuses_integers_past_the_bounds(
    api: TestClient, redis_client, keys, method, path, body, field, value
):
    resp = api.request(method, path, json=with_value(body, field, value))
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    named = {e["field"] for e in resp.json()["errors"]}
    assert "body." + ".".join(map(str, field)) in named
    assert logged(redis_client, keys) == []


@pytest.mark.parametrize("value", HUGE)
def test_batch_refuses_them_too_and_writes_nothing(api: TestClient, redis_client, keys, value):
    events = [
        {"type": "tariff", "tariff_id": "t", **TARIFF},
        {"type": "segment", "session_id": "s", **SEGMENT, "seq": value},
    ]
    resp = api.post("/v1/events", json={"events": events})
    assert resp.status_code == 422
    assert "body.events.1.segment.seq" in {e["field"] for e in resp.json()["errors"]}
    assert logged(redis_client, keys) == []


@pytest.mark.parametrize(
    ("path", "body", "why"),
    [
        # A fee could pass int64: 2^62 per unit, billing 5 units.
        ("/v1/tariffs/t", {**TARIFF, "price_minor": 2**62}, "price_minor"),
        ("/v1/tariffs/t", {**TARIFF, "unit_ms": 1, "price_minor": 65536}, "at most 65535"),
        # quantity x unit_price past 10^14.
        (
            "/v1/orders",
            {
                **ORDER,
                "lines": [{"item_id": "i", "quantity": 1_000_000, "unit_price_minor": 10**9}],
            },
            "quantity x",
        ),
    ],
)
def test_products_are_bounded_too(api: TestClient, path, body, why):
    resp = api.request("PUT" if "tariffs" in path else "POST", path, json=body)
    assert resp.status_code == 422
    assert why in json.dumps(resp.json())


def _poison_entries() -> list[dict[str, Any]]:
    """Each integer field out of bounds, as a stream entry's body (no `ts`)."""
    entries: list[dict[str, Any]] = []
    for value in HUGE:
        entries += [
            {
                "type": "segment",
                "session_id": "ghost",
                "seq": value,
                "start_ms": 1,
                "end_ms": 2,
                "end": False,
            },
            {
                "type": "order",
                **ORDER,
                "order_id": f"o{value}",
                "lines": [{"item_id": "i", "quantity": 1, "unit_price_minor": value}],
            },
            {
                "type": "commission_rule",
                "rule_id": "r",
                "kind": "flat",
                "amount_minor": value,
                "currency": "USD",
            },
            {
                "type": "commission_rule",
                "rule_id": "r",
                "kind": "percent",
                "bps": 1,
                "cap_minor": value,
            },
            {"type": "tariff", "tariff_id": "t", **TARIFF, "price_minor": value},
            {
                "type": "refund",
                "refund_id": f"f{value}",
                "order_id": "o",
                "lines": [{"item_id": "i", "quantity": value}],
            },
        ]
    # A tariff whose fee would overflow, then a session on it: the tariff is the reject.
    entries.append({"type": "tariff", "tariff_id": "huge", **TARIFF, "price_minor": 2**62})
    return entries


GOOD = [
    {"type": "tariff", "tariff_id": "t", **TARIFF},
    {
        "type": "session_start",
        "session_id": "s",
        "user_id": "u",
        "service_id": "v",
        "tariff_id": "t",
        "report_interval_ms": 1000,
    },
    {
        "type": "session_start",
        "session_id": "h",
        "user_id": "u",
        "service_id": "v",
        "tariff_id": "huge",
        "report_interval_ms": 1000,
    },
]


def test_stream_entries_past_the_bounds_never_stop_billing(
    redis_client, keys, flows_factory, tmp_path: Path
):
    poison = _poison_entries()
    ids = [redis_client.xadd(keys.events, {"data": json.dumps(body)}) for body in [*poison, *GOOD]]
    # A segment covering session s's first 1.5 s, with the end flag, after all that.
    started = ts_of(ids[len(poison) + 1])
    redis_client.xadd(
        keys.events,
        {
            "data": json.dumps(
                {
                    "type": "segment",
                    "session_id": "s",
                    "seq": 0,
                    "start_ms": started - 10_000,
                    "end_ms": started + 1500,
                    "end": True,
                }
            )
        },
    )
    flows_factory(RuleSettings())

    def billed() -> bool:
        return any(
            o["type"] == "usage" and o["session_id"] == "s" and o["status"] == "closed"
            for o in outputs(redis_client, keys)
        )

    wait_for(billed)
    got = outputs(redis_client, keys)
    rejects = [o for o in got if o["type"] == "reject"]
    invalid = [o for o in rejects if o["reason"] == "invalid_event"]
    assert len(invalid) == len(poison)
    assert all(o["error"] for o in invalid)
    assert [o["reason"] for o in rejects if o["reason"] != "invalid_event"] == ["unknown_tariff"]
    usage = usage_for(final_state(got), "s")
    assert usage is not None and usage["billed_ms"] == 1500

    # The export of that stream replays to the same final state.
    log = tmp_path / "log.jsonl"
    env_out = subprocess.run(
        [sys.executable, "-m", "programs.cli", "export", "-o", str(log)],
        env=_env(redis_client, keys),
        capture_output=True,
        text=True,
    )
    assert env_out.returncode == 0, env_out.stderr
    replayed = subprocess.run(
        [sys.executable, "-m", "programs.cli", "replay", str(log)], capture_output=True, text=True
    )
    assert replayed.returncode == 0, replayed.stderr
    outs = [json.loads(line) for line in replayed.stdout.splitlines()]
    assert final_state(outs) == final_state(got)


def _env(conn, keys) -> dict[str, str]:
    import os

    kw = conn.connection_pool.connection_kwargs
    url = f"redis://{kw.get('host', '127.0.0.1')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"
    return {**os.environ, "REDIS_URL": url, "BILLING_KEY_PREFIX": keys.prefix}


def test_a_failing_rule_step_is_a_reject_and_billing_goes_on(monkeypatch):
    """Engine-side defence, in both stages: whatever goes wrong in a rule becomes an
    `invalid_event` reject with the error, and the next events are billed."""
    events = [
        rule("ten", 0),
        scan("c", 1, "al", "b"),
        order("o1", 2),
        order("o2", 3),
        order("o3", 4),
    ]

    def broken_line(state, msg, settings):
        if msg.record["order_id"] == "o1":
            raise ArithmeticError("boom in a ledger")
        return real_line(state, msg, settings)

    def broken_order(seq, event, position, settings, facts, routes, plan):
        if event["order_id"] == "o2":
            raise ArithmeticError("boom in the sequencer")
        return real_order(seq, event, position, settings, facts, routes, plan)

    real_line = ledgers.HANDLERS["attributed"]
    real_order = Sequencer._on_order
    monkeypatch.setitem(ledgers.HANDLERS, "attributed", broken_line)
    monkeypatch.setattr(Sequencer, "_on_order", broken_order)
    outs = engine_outputs(events, RuleSettings())
    errors = sorted(o["error"] for o in outs if o["type"] == "reject")
    assert errors == ["ArithmeticError: boom in a ledger", "ArithmeticError: boom in the sequencer"]
    # o1's accrual is the sequencer's; its line key failed to take the record.
    assert [o["order_id"] for o in outs if o["type"] == "commission"] == ["o1", "o3"]
