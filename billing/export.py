"""`billing export`: the live input stream as a SPEC log file (JSON Lines, log order)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO, Any

import redis

from billing.keys import Keys


def stream_entry_to_event(entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    """A stream entry as a log event: `ts` from the entry id, `log_id` to keep its place."""
    data = fields.get("data", "")
    try:
        event = json.loads(data)
    except ValueError:
        event = None
    if not isinstance(event, dict):
        # Written around the API: kept, so that the replay rejects it as live did.
        event = {"raw": data}
    event["ts"] = int(entry_id.split("-", 1)[0])
    event["log_id"] = entry_id
    return event


def iter_log(client: redis.Redis, keys: Keys, chunk: int = 5000) -> Iterator[dict[str, Any]]:
    start = "-"
    while True:
        entries: list[tuple[str, dict[str, str]]] = client.xrange(  # type: ignore[assignment]
            keys.events, min=start, max="+", count=chunk
        )
        for entry_id, fields in entries:
            yield stream_entry_to_event(entry_id, fields)
        if len(entries) < chunk:
            return
        start = "(" + entries[-1][0]


def export(client: redis.Redis, keys: Keys, out: IO[str]) -> int:
    count = 0
    for event in iter_log(client, keys):
        out.write(json.dumps(event, separators=(",", ":")) + "\n")
        count += 1
    return count
