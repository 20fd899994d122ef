"""`billing export`: the live input stream as a SPEC log file (JSON Lines, log order)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import redis

from billing.keys import Keys
from billing.log_lines import entry_object
from billing.stream_ids import ts_of


def stream_entry_to_event(entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    """A stream entry as a log event: `ts` from the entry id, `log_id` to keep its place."""
    # One written around the API is kept too, so that the replay rejects it as live did.
    event = entry_object(fields.get("data", ""))
    event["ts"] = ts_of(entry_id)
    event["log_id"] = entry_id
    return event


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_time_ms(text: str) -> int:
    """A CLI time: integer ms since the epoch, or an ISO 8601 time with its zone."""
    if text.isdigit():
        return int(text)
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone (add Z or +hh:mm)")
    return (when - _EPOCH) // timedelta(milliseconds=1)  # exact: no float


def iter_log(
    client: redis.Redis,
    keys: Keys,
    chunk: int = 5000,
    since_ms: int | None = None,
    until_ms: int | None = None,
) -> Iterator[dict[str, Any]]:
    """The stream's events with `since_ms <= ts < until_ms`, in log order."""
    start = "-" if since_ms is None else f"{since_ms}-0"
    end = "+" if until_ms is None else f"({until_ms}-0"
    while True:
        entries: list[tuple[str, dict[str, str]]] = client.xrange(  # type: ignore[assignment]
            keys.events, min=start, max=end, count=chunk
        )
        for entry_id, fields in entries:
            yield stream_entry_to_event(entry_id, fields)
        if len(entries) < chunk:
            return
        start = "(" + entries[-1][0]


def export(
    client: redis.Redis,
    keys: Keys,
    out: IO[str],
    since_ms: int | None = None,
    until_ms: int | None = None,
) -> int:
    count = 0
    for event in iter_log(client, keys, since_ms=since_ms, until_ms=until_ms):
        out.write(json.dumps(event, separators=(",", ":")) + "\n")
        count += 1
    return count
