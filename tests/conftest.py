"""Shared fixtures. Redis is always real: REDIS_URL, else 127.0.0.1:6379 if it
answers, else an embedded server for the session. Each test gets its own key
prefix, and its keys are deleted afterwards."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from billing.keys import Keys
from billing.redis_runtime import EmbeddedRedis, client, delete_prefix, resolve_url
from billing.settings import Settings
from ingest_api.app import create_app

WRITE_KEY = "test-write-key"
READ_KEY = "test-read-key"
SHARE_KEYS = "k2:second-secret-for-tests,k1:first-secret-for-tests"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("BILLING_SLOW_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set BILLING_SLOW_TESTS=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    embedded: list[EmbeddedRedis] = []
    url = resolve_url(embedded)
    yield url
    for server in embedded:
        server.stop()


@pytest.fixture
def prefix() -> str:
    return f"test:{secrets.token_hex(6)}:"


@pytest.fixture
def redis_client(redis_url: str, prefix: str) -> Iterator[redis.Redis]:
    conn = client(redis_url)
    yield conn
    delete_prefix(conn, prefix)
    conn.close()


@pytest.fixture
def keys(prefix: str) -> Keys:
    return Keys(prefix)


def api_settings(redis_url: str, prefix: str, **more: Any) -> Settings:
    """The API's settings in tests: the test keys, and the test client as a proxy."""
    return Settings(
        redis_url=redis_url,
        key_prefix=prefix,
        api_keys=WRITE_KEY,
        read_keys=READ_KEY,
        share_keys=SHARE_KEYS,
        public_base_url="http://testserver",
        trusted_proxies="127.0.0.1/32",  # the test client stands for a trusted proxy
        max_body_bytes=64_000,
        _env_file=None,
        **more,
    )


@pytest.fixture
def settings(redis_url: str, prefix: str, redis_client: redis.Redis) -> Settings:
    return api_settings(redis_url, prefix)


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient]:
    with TestClient(
        create_app(settings), follow_redirects=False, client=("127.0.0.1", 50000)
    ) as test_client:
        test_client.headers["Authorization"] = f"Bearer {WRITE_KEY}"
        yield test_client
