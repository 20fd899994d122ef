"""Issue 10, item 2: a restart with new settings applies them to all state.

Settings live in the running process, never in snapshots. So when the flows are
restarted (from their recovery snapshot) with another late grace, idle factor
and attribution window, every decision made after the restart follows the new
values, for state from before the restart too: the live result equals `billing
replay` under the new settings.
"""

from __future__ import annotations

import time

from harness.live import append_positioned, kill, outputs, wait_for, with_stream_ids
from state.config import RuleSettings
from state.engine import Engine
from state.messages import LogEvent
from tests.support.logs import final_state, order, rule, scan, seg, start, tariff

T = 1_700_000_000_000
R = 10**9
OLD = RuleSettings(
    attribution_window_ms=1000,
    late_grace_ms=1000,
    idle_timeout_factor=2,
    holding_period_ms=1000,
    retention_ms=R,
)
NEW = RuleSettings(
    attribution_window_ms=100_000,
    late_grace_ms=100_000,
    idle_timeout_factor=50,
    holding_period_ms=1000,
    retention_ms=R,
)

BEFORE = [
    tariff(ts=T),
    rule("r", T, bps=1000),
    scan("c1", T, "al", "bob"),  # attributable under NEW's window only, by an order after
    start("s0", T),
    start("s1", T),
    seg(0, T + 1000, T + 500, T + 1000, end=True, session_id="s0"),  # closed at T+1000
    *[
        seg(n, T + 1000 * (n + 1), T + 1000 * n, T + 1000 * (n + 1), session_id="s1")
        for n in range(3)
    ],  # last receive T+3000
]
AFTER = [
    order("o1", T + 5000, buyer="bob"),  # 5 s after the scan: NEW attributes it, OLD does not
    # s0 ended at T+1000: late under OLD's 1 s grace, within NEW's: adds its 500 ms.
    seg(1, T + 6000, T, T + 500, session_id="s0"),
    # s1: OLD would have closed it as idle at T+5000; NEW keeps it open to T+53000.
    seg(3, T + 20_000, T + 3000, T + 4000, session_id="s1"),
    tariff("later", ts=T + 10**7),  # moves the log's time past every deadline
]


def test_live_after_a_restart_with_new_settings_equals_a_replay_under_them(
    redis_client, keys, flows_factory
):
    before = with_stream_ids(BEFORE)
    append_positioned(redis_client, keys, before)
    flows = flows_factory(OLD, lag_ms=10**13)  # no watermark: time comes from events only
    wait_for(lambda: redis_client.get(keys.flows_position) == before[-1][0])
    time.sleep(1.0)  # a few epochs (100 ms each): the snapshot covers all of it
    kill(flows)

    after = with_stream_ids(BEFORE + AFTER)[len(BEFORE) :]
    append_positioned(redis_client, keys, after)
    flows_factory(NEW, lag_ms=10**13)
    engine = Engine(NEW)
    expected = [o for p, e in before + after for o in engine.on_input(LogEvent(p, e))]
    wanted = {o["output_id"] for o in expected}
    wait_for(lambda: {o["output_id"] for o in outputs(redis_client, keys)} >= wanted)
    got = final_state(outputs(redis_client, keys))
    assert got == final_state(expected)

    # And it differs from what the old settings give: the test can fail.
    old = Engine(OLD)
    assert final_state([o for p, e in before + after for o in old.on_input(LogEvent(p, e))]) != got
    accruals = [c for c in got["commissions"] if '"accrual"' in c]
    assert len(accruals) == 1
    s0 = next(u for u in got["usage"].values() if u["session_id"] == "s0")
    assert s0["billed_ms"] == 1000
