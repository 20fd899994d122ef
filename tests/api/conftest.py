"""Fixtures for API tests: the app against real Redis, with outputs staged by the
flows' own sink writer (no dataflow runs here)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from billing.keys import Keys
from flows.redis_sink import _RedisWriter


@pytest.fixture
def writer(
    redis_url: str, keys: Keys, redis_client: redis.Redis
) -> Iterator[Callable[[list[dict[str, Any]]], None]]:
    """Writes outputs as the live sink does: views, streams and statements."""
    w = _RedisWriter(redis_url, keys)
    yield lambda outputs: w.write(outputs)
    w.close()
