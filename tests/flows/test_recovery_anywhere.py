"""Resumed after one to three aborts at any points, the flow with the live fact store
bills exactly what the plain loop bills, under two sets of settings, on dense logs
and on the same logs made quiet (days between events): a hypothesis property over
random logs (test_flows.py aborts one log at four fixed points).

A script doing the same over 1,500 logs (2026-12-07, README "Reliability") found no
difference. One trap it met is bytewax's, not ours: `TestingSource` resumes by
counting the items it emitted but fast-forwards over its list with the sentinels in
it, so in one list a second `ABORT` resumes one item early, and that item is then
applied twice (a session key that already holds its start rejects the start again as
a duplicate). So each run gets a list holding only its own abort."""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from datetime import timedelta

from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSource, run_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.keys import Keys
from flows.facts_redis import RedisFacts
from harness.live import with_stream_ids
from state.config import RuleSettings
from state.engine import Engine
from state.messages import LogEvent
from state.testing import QUIET_FACTOR, SMALL_RULES, random_log, stretched
from tests.flows.test_flows import canonical, flow_outputs
from tests.support.logs import final_state

# SMALL_RULES and a variant on the same scale: a shorter window and holding period, a
# retention close to them, no grace, and idle closes sooner.
RULES = [
    SMALL_RULES,
    replace(
        SMALL_RULES,
        attribution_window_ms=30_000,
        idle_timeout_factor=2,
        late_grace_ms=0,
        holding_period_ms=10_000,
        retention_ms=60_000,
    ),
]


@st.composite
def runs(draw: st.DrawFn) -> tuple[int, int, list[int], RuleSettings, int]:
    n = draw(st.sampled_from([200, 400]))
    aborts = draw(st.lists(st.integers(1, n), min_size=1, max_size=3, unique=True))
    # QUIET_FACTOR: an epoch of 20 ms covers days of log time, more than R at times,
    # and a resume re-runs all of it.
    factor = draw(st.sampled_from([1, QUIET_FACTOR]))
    return draw(st.integers(0, 10**6)), n, sorted(aborts), draw(st.sampled_from(RULES)), factor


_example = iter(range(10**6))


def run_in_short_epochs(flow: Dataflow, **kwargs: object) -> None:
    """Epochs of 20 ms, not one per batch: an abort then lands inside an epoch, and
    the resume re-runs the batches the epoch had applied (and written to Redis), as
    after a real crash. With an epoch per batch, bytewax's source waits for each epoch
    to finish before the next batch, so nothing is ever re-run (measured: 0 outputs
    given twice over five logs aborted twice each, against 283 with 20 ms epochs)."""
    run_main(flow, **{**kwargs, "epoch_interval": timedelta(milliseconds=20)})


@settings(
    max_examples=16, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(run=runs())
def test_resumes_after_aborts_anywhere_bill_what_the_plain_loop_bills(run, redis_client, keys):
    seed, n, aborts, rules, factor = run
    events, rules = stretched(random_log(seed, n), rules, factor)
    items = [LogEvent(pos, ev) for pos, ev in with_stream_ids(events)]
    # Each example its own keys: the random logs reuse ids (o1, s2, ...).
    example_keys = Keys(f"{keys.prefix}e{next(_example)}:")

    def facts(key: str) -> RedisFacts:
        return RedisFacts(redis_client, example_keys, 10**12, key)

    combined = []
    with tempfile.TemporaryDirectory() as recovery_dir:
        init_db_dir(recovery_dir, 1)
        recovery = RecoveryConfig(recovery_dir)
        lists = [[*items[:at], TestingSource.ABORT(), *items[at:]] for at in aborts]
        for source in [*lists, items]:
            combined += flow_outputs(
                run_in_short_epochs, source, rules, recovery=recovery, facts=facts
            )
    engine = Engine(rules)
    expected = [o for item in items for o in engine.on_input(item)] + engine.finish()
    # At-least-once: an output given again is the same output; none is missing or extra.
    by_id: dict[str, str] = {}
    for output in combined:
        text = json.dumps(output, sort_keys=True)
        assert by_id.setdefault(output["output_id"], text) == text
    assert canonical(json.loads(text) for text in by_id.values()) == canonical(expected)
    assert final_state(combined) == final_state(expected)
