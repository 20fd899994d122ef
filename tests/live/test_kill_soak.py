"""A soak of SIGKILLs at random moments (slow: BILLING_SLOW_TESTS=1).

test_live_crashes.py kills at chosen points. Here each seed draws a cluster shape
(one process, two workers, two processes, or two processes of two workers), a log
(dense, or the same log made quiet: days between events), where the log is cut into four appends, and after each append a random wait and
then a kill: of the whole `billing flows`, which is started again (now and then in
another shape), or of one member of a cluster, which the supervisor restarts. The
outputs must be what a replay gives, each output id with one content.
`BILLING_KILL_SOAK_SEEDS` sets how many seeds (default 10, about a minute and a
half). A failure shows the output ids missing and the flows' stderr."""

from __future__ import annotations

import json
import os
import random
import signal
import time

import pytest

from billing.log_lines import parse_log_event
from harness.live import (
    append_positioned,
    kill,
    members,
    outputs,
    wait_for_outputs,
    with_stream_ids,
)
from state.engine import Engine
from state.testing import QUIET_FACTOR, SMALL_RULES, random_log, stretched
from tests.support.logs import final_state
from tests.support.outputs import assert_balances_as_spec

pytestmark = pytest.mark.slow

SEEDS = int(os.environ.get("BILLING_KILL_SOAK_SEEDS", "10"))
SHAPES: list[tuple[str, ...]] = [
    (),
    ("--workers", "2"),
    ("--processes", "2"),
    ("--processes", "2", "--workers", "2"),  # four workers
]
# Where `billing flows` is started again, it may come back in another shape, as an
# operator may restart it after a crash: the state then moves between workers.
RESHAPE = 0.3
# Half the logs quiet (state.testing.QUIET_FACTOR: the log two to three years), so
# that one epoch of the catch-up covers days to months of log time, more than R, and
# a re-run after a kill reads all of it again.
QUIET = 0.5


@pytest.mark.parametrize("seed", range(SEEDS))
def test_kills_at_random_moments_lose_nothing_and_bill_nothing_twice(
    redis_client, keys, flows_factory, tmp_path, seed
):
    rng = random.Random(seed)
    shape = rng.choice(SHAPES)
    log = random_log(5000 + seed, rng.choice([1500, 3000]))
    rules = SMALL_RULES
    if rng.random() < QUIET:
        log, rules = stretched(log, rules, QUIET_FACTOR)
    positioned = with_stream_ids([parse_log_event(e) for e in log])
    engine = Engine(rules)
    expected = [o for pos, ev in positioned for o in engine.feed(ev, pos)]
    # Only the log's own time closes sessions, as in a replay (see test_live_crashes).
    proc = flows_factory(rules, lag_ms=10**13, args=shape)
    cuts = sorted(rng.sample(range(1, len(positioned)), 3))
    for start, end in zip([0, *cuts], [*cuts, len(positioned)], strict=True):
        append_positioned(redis_client, keys, positioned[start:end])
        time.sleep(rng.uniform(0.05, 2.5))
        running = members(proc.pid)
        if "--processes" in shape and running and rng.random() < 0.3:
            os.kill(rng.choice(running), signal.SIGKILL)  # the supervisor restarts both
        else:
            kill(proc)
            if rng.random() < RESHAPE:
                shape = rng.choice(SHAPES)
            proc = flows_factory(rules, lag_ms=10**13, args=shape)
    wanted = {o["output_id"] for o in expected}
    try:
        wait_for_outputs(redis_client, keys, wanted, timeout=240)
    except AssertionError:
        missing = sorted(wanted - {o["output_id"] for o in outputs(redis_client, keys)})
        stderr = (tmp_path / "flows.stderr").read_text(errors="replace")[-6000:]
        raise AssertionError(f"{len(missing)} missing, e.g. {missing[:10]}\n{stderr}") from None
    got = outputs(redis_client, keys)
    assert {o["output_id"] for o in got} == {o["output_id"] for o in expected}
    by_id: dict[str, str] = {}
    for output in got:
        text = json.dumps(output, sort_keys=True)
        assert by_id.setdefault(output["output_id"], text) == text
    assert final_state(got) == final_state(expected)
    assert_balances_as_spec(redis_client, keys, got)
