"""`state.testing.stretched`, which the crash tests use to make a log quiet, keeps the
bill: every time and every time setting longer by one factor gives the same outputs
by kind and the same amounts, to the minor unit."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from state.engine import Engine
from state.testing import QUIET_FACTOR, SMALL_RULES, random_log, stretched


def _bill(log: list[dict[str, Any]], rules) -> Counter:
    engine = Engine(rules)
    outputs = [o for n, e in enumerate(log) for o in engine.feed(e, f"{n + 1}-0")]
    outputs += engine.finish()
    bill: Counter = Counter()
    for output in outputs:
        bill[(output["type"], output.get("kind"), output.get("reason"))] += 1
        for name, value in output.items():
            if name.endswith("_minor") and isinstance(value, int):
                bill[name] += value
    return bill


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("factor", [7, QUIET_FACTOR])
def test_a_stretched_log_bills_the_same(seed: int, factor: int) -> None:
    log = random_log(seed, 800)
    longer, rules = stretched(log, SMALL_RULES, factor)
    assert rules.retention_ms == SMALL_RULES.retention_ms * factor
    assert longer[-1]["ts"] - longer[0]["ts"] == (log[-1]["ts"] - log[0]["ts"]) * factor
    assert _bill(longer, rules) == _bill(log, SMALL_RULES)
