"""Small helpers shared by tests."""

from __future__ import annotations

from typing import Any

import redis

from billing.keys import Keys
from programs.export import iter_log


def logged(conn: redis.Redis, keys: Keys) -> list[dict[str, Any]]:
    return list(iter_log(conn, keys))


def no_parse(position: str, data: str, ts: int) -> Any:
    """A sequencer's entry parser for tests that feed it parsed events only."""
    raise AssertionError("no raw entries here")
