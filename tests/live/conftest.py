"""Fixtures for live tests: the programs run as real processes on this test's prefix."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from subprocess import Popen

import pytest

from harness.live import flows_starter


@pytest.fixture
def flows_factory(
    redis_url: str, prefix: str, tmp_path: Path
) -> Iterator[Callable[..., Popen[bytes]]]:
    """Start `billing flows` on this test's prefix (settings as arguments); killed after."""
    yield from flows_starter(redis_url, prefix, tmp_path / "recovery")
