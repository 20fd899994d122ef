"""A recovery directory that has never run, on a deployment whose flows have read
input before (a lost volume, say), is refused with a clear message until the
operator allows that one start (BILLING_ALLOW_FRESH_START): such a start reads the
input stream again from its start and may bill a duplicate again."""

from __future__ import annotations

import signal
import time

from billing.log_lines import parse_log_event
from flows.recovery_store import has_run
from harness.live import (
    append_positioned,
    flows_env,
    kill,
    outputs,
    start_flows,
    wait_for,
    wait_for_outputs,
    with_stream_ids,
)
from state.engine import Engine
from state.testing import SMALL_RULES, random_log
from tests.support.logs import final_state


def test_a_new_recovery_directory_where_the_flows_ran_is_refused_until_allowed(
    redis_client, keys, redis_url, prefix, tmp_path
):
    positioned = with_stream_ids([parse_log_event(e) for e in random_log(41, 500)])
    engine = Engine(SMALL_RULES)
    expected = [o for pos, ev in positioned for o in engine.feed(ev, pos)]
    wanted = {o["output_id"] for o in expected}
    # The first start of a deployment, with nothing read before: it runs.
    first = start_flows(flows_env(redis_url, prefix, tmp_path / "rec", SMALL_RULES, 10**13))
    try:
        append_positioned(redis_client, keys, positioned)
        wait_for_outputs(redis_client, keys, wanted, timeout=60)
        wait_for(lambda: redis_client.get(keys.flows_position) == positioned[-1][0], timeout=30)
    finally:
        kill(first, signal.SIGTERM)
    written = len(outputs(redis_client, keys))

    fresh = tmp_path / "lost"
    env = flows_env(redis_url, prefix, fresh, SMALL_RULES, 10**13)
    refused = start_flows(env, stderr_to=tmp_path / "stderr")
    assert refused.wait(60) == 2
    message = (tmp_path / "stderr").read_text()
    assert "has never run, but the flows have read this deployment's input" in message
    assert "BILLING_ALLOW_FRESH_START=true" in message
    assert not fresh.exists()  # nothing made, nothing read, nothing written
    assert len(outputs(redis_client, keys)) == written

    # Allowed once: it reads the log again and bills what the first run billed.
    env["BILLING_ALLOW_FRESH_START"] = "true"
    allowed = start_flows(env)
    try:
        wait_for(lambda: len(outputs(redis_client, keys)) >= 2 * written, timeout=60)
        wait_for(lambda: has_run(fresh), timeout=30)
    finally:
        kill(allowed, signal.SIGTERM)
    assert final_state(outputs(redis_client, keys)) == final_state(expected)

    # That directory has run now: a start without the flag goes ahead.
    del env["BILLING_ALLOW_FRESH_START"]
    again = start_flows(env)
    try:
        time.sleep(3)
        assert again.poll() is None
    finally:
        kill(again, signal.SIGTERM)
