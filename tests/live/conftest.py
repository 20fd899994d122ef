"""Fixtures for live tests: the programs run as real processes on this test's prefix."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from subprocess import Popen

import pytest
from fastapi.testclient import TestClient

from billing.settings import Settings
from harness.live import flows_starter
from ingest_api.app import create_app
from tests.conftest import WRITE_KEY


@pytest.fixture
def flows_factory(
    redis_url: str, prefix: str, tmp_path: Path
) -> Iterator[Callable[..., Popen[bytes]]]:
    """Start `billing flows` on this test's prefix (settings as arguments); killed after."""
    yield from flows_starter(redis_url, prefix, tmp_path / "recovery")


@pytest.fixture
def private_api(settings: Settings, api: TestClient) -> Iterator[TestClient]:
    """The API with private receivers allowed (webhook tests run their receiver on
    127.0.0.1)."""
    allowed = settings.model_copy(update={"webhook_allow_private": True})
    with TestClient(create_app(allowed)) as client:
        client.headers["Authorization"] = f"Bearer {WRITE_KEY}"
        yield client
