"""Fixtures for dataflow tests: every flow test runs at 1 and at 2 workers.

As bytewax's own `entry_point` fixture, through the same `run_in_process` that
`billing replay` uses. Two workers exercise what one cannot: keys exchanged
between workers, and items from two upstream workers interleaving within an epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from bytewax.dataflow import Dataflow

from flows.runtime import run_in_process

EntryPoint = Callable[..., None]


@pytest.fixture(params=[1, 2], ids=["1-worker", "2-workers"])
def entry_point(request: pytest.FixtureRequest) -> EntryPoint:
    workers: int = request.param

    def run(flow: Dataflow, **kwargs: Any) -> None:
        run_in_process(flow, workers, **kwargs)

    return run
