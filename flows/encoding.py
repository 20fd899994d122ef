"""Outputs to JSON, for both sinks: an output that cannot be encoded (an integer
past 64 bits, say) becomes an `invalid_event` reject instead of stopping the flow."""

from __future__ import annotations

import orjson

from state.outputs import Output


def encode(out: Output) -> tuple[Output, bytes]:
    """(the output as written, its JSON)."""
    try:
        return out, orjson.dumps(out)
    except (TypeError, orjson.JSONEncodeError) as exc:
        replaced = unwritable(out, f"output not encodable: {exc}")
        return replaced, orjson.dumps(replaced)


def unwritable(out: Output, error: str) -> Output:
    """The reject that stands for an output that could not be written; its id
    follows from the output's, so a replay of it is a repeat like any other."""
    return {
        "type": "reject",
        "output_id": f"reject:output:{out.get('output_id')}",
        "reason": "invalid_event",
        "event": {"output_id": str(out.get("output_id")), "type": str(out.get("type"))},
        "error": error[:500],
    }
