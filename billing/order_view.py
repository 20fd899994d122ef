"""The order view: an order's commission outputs, one owner for its layout, write plan
and read decoding.

Key layout (billing.keys): `view:order:<order_id>` is a hash of `output_id` -> the
commission output as JSON (accruals, approvals and reversals of the order's lines).

Write plan: the sink's script (flows.redis_sink) calls `apply_order` (in `LUA`) for each
commission output, with `write_arg` ('' for a payout, which has no order), and
`write_orders` once at its end: one HSET per order per call, not one per output.
Keyed by output_id, so an output replayed by at-least-once recovery writes the same
field again. It expires R and a margin after the order's last output.

Read decoding: `decode`, for `GET /v1/orders/{id}/commissions`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from billing.keys import Keys

LUA = """
local order_fields = {}
local function apply_order(view, output_id, data)
  if view == '' then return end
  local fields = slot_of(order_fields, view)
  local n = #fields
  fields[n + 1], fields[n + 2] = output_id, data
end
local function write_orders()
  for view, fields in pairs(order_fields) do call_in_chunks('HSET', view, fields) end
end
"""


def write_arg(keys: Keys, out: dict[str, Any]) -> str:
    return keys.order_view(out["order_id"]) if out["type"] == "commission" else ""


def decode(values: Sequence[str | bytes]) -> list[dict[str, Any]]:
    """The order's outputs in `ts` order, accruals first on a tie."""
    outputs = [json.loads(v) for v in values]
    return sorted(outputs, key=lambda o: (o["ts"], o["kind"] != "accrual", o["output_id"]))
