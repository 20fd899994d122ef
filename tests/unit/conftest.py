"""Fixtures for unit tests: rules, models and clients, each in one process."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (marked `anyio`) run on asyncio, as the services do."""
    return "asyncio"
