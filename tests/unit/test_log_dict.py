"""`to_log_dict` reads the validated fields straight (billing.events): it must equal
pydantic's own dump with None-valued fields dropped, the kept nulls put back."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from billing.events import OrderBody, RefundBody, ScanBody, to_log_dict
from billing.log_lines import LOG_EVENT
from state.testing import random_log


def dumped(model: BaseModel) -> dict[str, Any]:
    """The reference: what `to_log_dict` did with `model_dump` before."""
    data = model.model_dump(exclude_none=True)
    if "scanner_id" in type(model).model_fields:
        data.setdefault("scanner_id", None)
    return data


EDGE_CASES = [
    {"type": "scan", "scan_id": "c", "ts": 1, "share_id": "s", "item_id": "i", "sharer_id": "u",
     "scanner_id": "b"},
    {"type": "scan", "scan_id": "c", "ts": 1, "share_id": "s", "item_id": "i", "sharer_id": "u",
     "scanner_id": None, "log_id": None},
    {"type": "refund", "refund_id": "f", "order_id": "o", "ts": 2},
    {"type": "refund", "refund_id": "f", "order_id": "o", "ts": 2, "lines": None},
    {"type": "order", "order_id": "o", "ts": 3, "buyer_id": "b", "currency": "EUR",
     "scan_id": None, "lines": [{"item_id": "i", "quantity": 1, "unit_price_minor": 0}],
     "unknown": {"nested": [1, None]}},
    {"type": "commission_rule", "rule_id": "r", "ts": 4, "kind": "percent", "bps": 100,
     "sharer_id": None, "item_id": "i", "cap_minor": None},
    {"type": "tariff", "tariff_id": "t", "ts": 5, "currency": "EUR", "unit_ms": 1000,
     "price_minor": 3},
    {"type": "segment", "session_id": "s", "seq": 0, "ts": 6, "start_ms": 0, "end_ms": 5,
     "end": True, "log_id": "1-0"},
]  # fmt: skip


@pytest.mark.parametrize("seed", range(4))
def test_every_event_of_a_random_log_dumps_as_pydantic_does(seed):
    for event in random_log(seed, 400):
        model = LOG_EVENT.validate_json(json.dumps(event))
        assert to_log_dict(model) == dumped(model)
        assert list(to_log_dict(model)) == list(dumped(model))  # the same field order


@pytest.mark.parametrize("event", EDGE_CASES, ids=lambda e: e["type"])
def test_nulls_defaults_and_nested_lines_dump_as_pydantic_does(event):
    model = LOG_EVENT.validate_python(event)
    got = to_log_dict(model)
    assert got == dumped(model)
    assert "unknown" not in got
    assert ("log_id" in got) == (event.get("log_id") is not None)


def test_request_bodies_dump_as_pydantic_does():
    bodies: list[BaseModel] = [
        OrderBody(
            order_id="o",
            buyer_id="b",
            currency="EUR",
            lines=[{"item_id": "i", "quantity": 2, "unit_price_minor": 5}],
        ),
        RefundBody(order_id="o", refund_id="f"),
        ScanBody(token="x" * 20),
        ScanBody(token="x", scanner_id="u"),
    ]
    for body in bodies:
        assert to_log_dict(body) == dumped(body)
