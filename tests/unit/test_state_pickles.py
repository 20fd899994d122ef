"""A session pickles as one flat tuple (`Session.__reduce__`), and an order's lines as
their records' values (`OrderLines.__reduce__`): what is restored is the same state
and goes on billing alike, and snapshots taken before, in the default form, still
load (a single `Line`, pickled as it always was, too)."""

from __future__ import annotations

import base64
import pickle
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from state.commissions import (
    RECORD_FIELDS,
    RULE_FIELDS,
    Line,
    OrderLines,
    attribute,
    rule_record,
)
from state.config import RuleSettings
from state.metering import Session, Tariff

SETTINGS = RuleSettings()
T0 = 1_700_000_000_000

# Pickled by the version before these `__reduce__`s (generated with it).
LINE = "gAWVaAEAAAAAAACMEXN0YXRlLmNvbW1pc3Npb25zlIwETGluZZSTlCmBlE59lIwGcmVjb3JklH2UKIwIb3JkZXJfaWSUjAYwLm8xMjOUjAhvcmRlcl90c5SKBgBo5c+LAYwHaXRlbV9pZJSMAmkxlIwIYnV5ZXJfaWSUjAJ1MZSMCXNoYXJlcl9pZJSMAnUylIwIc2hhcmVfaWSUjAJzaJSMB3NjYW5faWSUjAUwLmMxMpSMBHJ1bGWUfZQojAdydWxlX2lklIwCcjGUjARraW5klIwHcGVyY2VudJSMA2Jwc5RN9AGMDGFtb3VudF9taW5vcpROjAljYXBfbWlub3KUTnWMCmJhc2VfbWlub3KUTTkwjAhjdXJyZW5jeZSMA1VTRJSMCHF1YW50aXR5lEsDjAdhY2NydWVklE1pAowIcmV2ZXJzZWSUSwCMCHJlZnVuZGVklEsBjAZzdGF0dXOUjAhhcHByb3ZlZJR1c4aUYi4="
# An order's two lines (one with a flat rule, one without a rule, refunded in part and
# approved), pickled by the version before OrderLines.__reduce__.
ORDER_LINES = "gAWV6gEAAAAAAACMEXN0YXRlLmNvbW1pc3Npb25zlIwKT3JkZXJMaW5lc5STlCmBlE59lIwFbGluZXOUfZQojAJpMpRoAIwETGluZZSTlCmBlE59lIwGcmVjb3JklH2UKIwIb3JkZXJfaWSUjAQwLm85lIwIb3JkZXJfdHOUigYAaOXPiwGMB2l0ZW1faWSUaAeMCGJ1eWVyX2lklIwCdTGUjAlzaGFyZXJfaWSUjAJ1MpSMCHNoYXJlX2lklIwCc2iUjAdzY2FuX2lklIwEMC5jM5SMBHJ1bGWUfZQojAdydWxlX2lklIwCcjKUjARraW5klIwEZmxhdJSMA2Jwc5ROjAxhbW91bnRfbWlub3KUSxSMCWNhcF9taW5vcpROdYwKYmFzZV9taW5vcpRN9AGMCGN1cnJlbmN5lIwDVVNElIwIcXVhbnRpdHmUSwKMB2FjY3J1ZWSUSyiMCHJlZnVuZGVklEsAjAhyZXZlcnNlZJRLAIwGc3RhdHVzlIwHcGVuZGluZ5R1c4aUYowCaTGUaAkpgZROfZRoDH2UKGgOaA9oEIoGAGjlz4sBaBFoLWgSaBNoFGgVaBZoF2gYaBloGk5oI030AWgkaCVoJksCaCdLB2goSwFoKUsEaCqMCGFwcHJvdmVklHVzhpRidXOGlGIu"
SESSION = "gAWV6QEAAAAAAACMDnN0YXRlLm1ldGVyaW5nlIwHU2Vzc2lvbpSTlCmBlH2UKIwKc2Vzc2lvbl9pZJSMBjAuczEyM5SMCnN0YXJ0ZWRfdHOUigYAaOXPiwGMB3VzZXJfaWSUjAJ1MZSMCnNlcnZpY2VfaWSUjANzdmOUjAZ0YXJpZmaUaACMBlRhcmlmZpSTlCmBlH2UKIwJdGFyaWZmX2lklIwCdDCUjAhjdXJyZW5jeZSMA1VTRJSMB3VuaXRfbXOUTegDjAtwcmljZV9taW5vcpRLA4wHZnJlZV9tc5RNvAKMEG1pbl9jaGFyZ2VfbWlub3KUSw91YowScmVwb3J0X2ludGVydmFsX21zlE3oA4wEc2Vxc5SMD3N0YXRlLmludGVydmFsc5SMC0ludGVydmFsU2V0lJOUKYGUXZQoSwBLBYaUSwdLCIaUZWKMB2NvdmVyZWSUaB0pgZRdlIoGAGjlz4sBigaIe+XPiwGGlGFijAhzZWdtZW50c5RLBowPbGFzdF9yZWNlaXZlX3RzlIoGKIvlz4sBjA1jbG9zZWRfcmVhc29ulIwDZW5klIwJY2xvc2VkX3RzlIoGKIvlz4sBjAZlbmRfbXOUigY0ieXPiwGMB3ZlcnNpb26USweMCWJpbGxlZF9tc5RNiBN1Yi4="


def _round_trip(obj: Any) -> Any:
    return pickle.loads(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def _start() -> dict[str, Any]:
    return {
        "session_id": "s1",
        "ts": T0,
        "user_id": "u1",
        "service_id": "svc",
        "report_interval_ms": 1000,
    }


segment = st.fixed_dictionaries(
    {
        "seq": st.integers(0, 6),
        "offset": st.integers(-2000, 30_000),
        "length": st.integers(-10, 8000),
        "lag": st.integers(0, 3000),
        "end": st.booleans(),
    }
)


def _segment(step: int, s: dict[str, Any]) -> dict[str, Any]:
    start = T0 + s["offset"] + step * 1000
    return {
        "type": "segment",
        "session_id": "s1",
        "seq": s["seq"],
        "ts": start + max(s["length"], 0) + s["lag"],
        "start_ms": start,
        "end_ms": start + s["length"],
        "end": s["end"],
    }


@given(before=st.lists(segment, max_size=8), after=st.lists(segment, max_size=4))
def test_a_restored_session_is_the_same_and_bills_alike(
    before: list[dict[str, Any]], after: list[dict[str, Any]]
) -> None:
    session = Session(_start(), Tariff("t0", "USD", 250, 3, 700, 15))
    for step, s in enumerate(before):
        session.on_segment(_segment(step, s), f"p{step}", SETTINGS)
    restored = _round_trip(session)
    # Every attribute, so that one added to Session and left out of its
    # __reduce__ fails here.
    assert vars(restored) == vars(session)
    for step, s in enumerate(after, start=len(before)):
        seg = _segment(step, s)
        assert restored.on_segment(seg, "q", SETTINGS) == session.on_segment(seg, "q", SETTINGS)
    log_time = T0 + 10**7
    assert restored.advance(log_time, SETTINGS) == session.advance(log_time, SETTINGS)


def test_snapshots_in_the_earlier_form_still_load() -> None:
    line = pickle.loads(base64.b64decode(LINE))
    assert isinstance(line, Line)
    assert line.record["refunded"] == 1 and line.record["status"] == "approved"
    assert line.record["rule"]["bps"] == 500
    session = pickle.loads(base64.b64decode(SESSION))
    assert session.snapshot() == {
        "session_id": "0.s123",
        "started_ts": 1700000000000,
        "status": "closed",
        "closed_reason": "end",
        "closed_ts": 1700000009000,
        "billed_ms": 5000,
        "segments": 6,
        "seqs": [(0, 5), (7, 8)],
        "covered": [(1700000000000, 1700000005000)],
        "version": 7,
    }
    assert session.tariff == Tariff("t0", "USD", 1000, 3, 700, 15)
    assert session.end_ms == 1700000008500 and session.last_receive_ts == 1700000009000
    # And it pickles again in the new form, to the same state.
    assert _round_trip(session).snapshot() == session.snapshot()


def _records(order: OrderLines) -> list[tuple[str, dict[str, Any]]]:
    return [(item, line.record) for item, line in order.lines.items()]


def test_an_order_s_records_have_the_fields_its_flat_pickle_names_in_order() -> None:
    order = {"order_id": "o1", "ts": T0, "buyer_id": "b", "currency": "USD"}
    line = {"item_id": "i1", "quantity": 2, "unit_price_minor": 150}
    scan = {"sharer_id": "s", "share_id": "sh", "scan_id": "c1"}
    rule = {"rule_id": "r", "kind": "percent", "bps": 100, "active": True}
    assert tuple(attribute(order, line, scan, rule, 3)) == RECORD_FIELDS
    assert tuple(rule_record(rule) or {}) == RULE_FIELDS


rules = st.none() | st.fixed_dictionaries(
    {
        "rule_id": st.text(max_size=3),
        "kind": st.sampled_from(["percent", "flat"]),
        "bps": st.none() | st.integers(0, 10_000),
        "amount_minor": st.none() | st.integers(0, 2**63 - 1),
        "cap_minor": st.none() | st.integers(0, 2**63 - 1),
    }
)


def _record(item: str, rule: dict[str, Any] | None, n: int, status: str) -> dict[str, Any]:
    ids = {"order_id": f"o{n}", "buyer_id": "b", "sharer_id": "s", "share_id": "sh"}
    money = {"base_minor": n * 7, "currency": "EUR", "quantity": n + 1, "accrued": n}
    made = {
        **ids,
        **money,
        **{"order_ts": T0 + n, "item_id": item, "scan_id": f"c{n}", "rule": rule},
        **{"refunded": n // 2, "reversed": n // 3, "status": status},
    }
    return {name: made[name] for name in RECORD_FIELDS}  # in the records' order


records = st.builds(
    _record,
    st.text(min_size=1, max_size=4),
    rules,
    st.integers(0, 2**40),
    st.sampled_from(["pending", "approved"]),
)


@given(st.lists(records, max_size=6))
def test_an_order_s_lines_restored_are_the_same_in_the_same_order(
    made: list[dict[str, Any]],
) -> None:
    order = OrderLines()
    for record in made:
        order.attributed(record)
    restored = _round_trip(order)
    assert _records(restored) == _records(order)
    assert all(type(line) is Line for line in restored.lines.values())
    log_time = T0 + SETTINGS.holding_period_ms + 2**41
    assert restored.advance(log_time, SETTINGS, 1) == order.advance(log_time, SETTINGS, 1)


def test_a_record_of_another_shape_keeps_its_field_names() -> None:
    order = OrderLines()
    record = dict(zip(RECORD_FIELDS, range(len(RECORD_FIELDS)), strict=True))
    order.attributed({**record, "rule": None, "item_id": "i1"})
    order.attributed({**record, "rule": None, "item_id": "i2", "extra": 1})
    assert _records(_round_trip(order)) == _records(order)


def test_order_lines_in_the_earlier_form_still_load() -> None:
    order = pickle.loads(base64.b64decode(ORDER_LINES))
    assert list(order.lines) == ["i2", "i1"]
    assert order.lines["i2"].record["rule"]["amount_minor"] == 20
    assert order.lines["i1"].record["rule"] is None
    assert order.lines["i1"].record["status"] == "approved"
    assert _records(_round_trip(order)) == _records(order)
