"""Issue 10, item 3 (first part): the flows ride out Redis outages by themselves.

A private redis-server (append-only file, fsync always) is paused for 8 s, then
killed and restarted, while `billing flows` (one process) runs against it. The
flows retry with bounded back-off and go on; a flows process that dies anyway
is restarted by the supervisor, for one process as for several. Nothing is lost
and nothing is billed twice: the final state equals the plain loop's.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from billing.keys import Keys
from billing.redis_runtime import EmbeddedRedis, client
from harness.live import (
    append_positioned,
    flows_env,
    kill,
    members,
    outputs,
    start_flows,
    wait_for,
    with_stream_ids,
)
from state.config import RuleSettings
from state.engine import Engine
from state.messages import LogEvent
from state.testing import SMALL_RULES, random_log
from tests.support.logs import final_state


@pytest.fixture
def private_redis() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(persist=True)
    yield server
    server.stop()


def test_flows_ride_out_a_pause_and_a_restart_of_redis(
    private_redis: EmbeddedRedis, tmp_path: Path
):
    keys = Keys("outage:")
    conn = client(private_redis.url)
    events = with_stream_ids(random_log(31, 900))
    thirds = [events[:300], events[300:600], events[600:]]
    env = flows_env(private_redis.url, keys.prefix, tmp_path / "rec", SMALL_RULES, 10**13)
    flows = start_flows(env)
    engine = Engine(SMALL_RULES)
    expected: list[dict] = []
    try:

        def deliver(part: list) -> None:
            append_positioned(conn, keys, part)
            expected.extend(o for p, e in part for o in engine.on_input(LogEvent(p, e)))
            wanted = {o["output_id"] for o in expected}
            wait_for(lambda: {o["output_id"] for o in outputs(conn, keys)} >= wanted, 90)

        deliver(thirds[0])
        private_redis.proc.send_signal(signal.SIGSTOP)  # a blip: Redis stops answering
        time.sleep(8)
        private_redis.proc.send_signal(signal.SIGCONT)
        deliver(thirds[1])
        assert flows.poll() is None, "the flows must not stop on a blip"

        private_redis.restart(down_s=3)  # killed, then back with its append-only file
        conn = client(private_redis.url)
        deliver(thirds[2])
        assert flows.poll() is None

        # A flows process that dies anyway is started again by the supervisor.
        (child,) = members(flows.pid)
        os.kill(child, signal.SIGKILL)
        extra = with_stream_ids(
            [{**e, "ts": e["ts"] + 10**6} for e in random_log(32, 200, t0=events[-1][1]["ts"])]
        )
        deliver(extra)
        assert flows.poll() is None
    finally:
        kill(flows)
    # Live has no end of input (and no watermark here): compared without finish().
    assert final_state(outputs(conn, keys)) == final_state(expected)


def test_an_outage_past_the_idle_timeout_is_reported_never_lost(
    private_redis: EmbeddedRedis, tmp_path: Path
):
    """Issue 10, item 3 (second part). Redis is paused, then killed and restarted,
    for longer than a session's idle timeout plus the late grace. The engine closes
    the SDK's session as idle and rejects the held segments `late`, as SPEC says; the
    segment answers tell the SDK the session is closed, so it goes on in a new
    session, and its report accounts for every metered millisecond: billed in one
    of its sessions, or counted as unbilled."""
    from billing.settings import Settings
    from harness.server import running_api
    from sdk import BillingClient
    from tests.conftest import READ_KEY, SHARE_KEYS, WRITE_KEY

    keys = Keys("outage2:")
    rules = RuleSettings(
        idle_timeout_factor=2, late_grace_ms=1_000, clock_skew_ms=500, max_segment_ms=5_000
    )
    flows = start_flows(flows_env(private_redis.url, keys.prefix, tmp_path / "rec", rules, 200))
    settings = Settings(
        redis_url=private_redis.url,
        key_prefix=keys.prefix,
        api_keys=WRITE_KEY,
        read_keys=READ_KEY,
        share_keys=SHARE_KEYS,
        report_interval_ms=500,
        _env_file=None,
    )
    try:
        with running_api(settings) as base:
            client = BillingClient(base, WRITE_KEY)
            client.put_tariff("t", currency="EUR", unit_ms=100, price_minor=1)
            session = client.start_session("u", "svc", "t", session_id="long-run")
            assert session.wait_started(10)
            time.sleep(2)
            private_redis.proc.send_signal(signal.SIGSTOP)
            time.sleep(4)
            private_redis.proc.send_signal(signal.SIGCONT)
            time.sleep(2)
            private_redis.restart(down_s=3)
            time.sleep(4)
            session.stop()
            assert session.join(30)
            assert flows.poll() is None
            conn = client_for(private_redis)

            def settled() -> bool:
                views = [conn.hget(keys.session_view(s), "data") for s in session.session_ids]
                return all(v is not None and '"status":"closed"' in v for v in views)

            wait_for(settled, timeout=30)
            report = session.report()
    finally:
        kill(flows)
    first, *later = report["sessions"]
    assert first["closed_reason"] == "idle"  # the outage outlasted idle + grace
    assert later and later[-1]["closed_reason"] == "end"  # it went on, and ended
    assert session.closed_by_server["long-run"]["status"] == "closed"
    rejects = [json.loads(f["data"]) for _, f in conn.xrange(keys.rejects)]
    assert any(r["reason"] == "late" for r in rejects)  # held segments came too late
    # Nothing vanished silently: metered = billed + unbilled, and the unbilled part
    # is at least the outage's share beyond idle timeout and grace (4 s + 3 s - 2 s).
    assert report["billed_ms"] <= report["metered_ms"]
    assert report["metered_ms"] == report["billed_ms"] + report["unbilled_ms"]
    assert report["unbilled_ms"] >= 3_000
    assert report["billed_ms"] >= 2_000  # before the outage, and after it in new sessions
    assert [s["billed_ms"] > 0 for s in report["sessions"]] == [True] * len(report["sessions"])


def client_for(server: EmbeddedRedis):
    return client(server.url)
