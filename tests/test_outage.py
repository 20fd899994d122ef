"""Issue 10, item 3 (first part): the flows ride out Redis outages by themselves.

A private redis-server (append-only file, fsync always) is paused for 8 s, then
killed and restarted, while `billing flows` (one process) runs against it. The
flows retry with bounded back-off and go on; a flows process that dies anyway
is restarted by the supervisor, for one process as for several. Nothing is lost
and nothing is billed twice: the final state equals the plain loop's.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from billing.keys import Keys
from billing.redis_runtime import EmbeddedRedis, client
from state.engine import Engine
from state.messages import LogEvent
from tests.gen import SMALL_RULES, random_log
from tests.live_helpers import (
    append_positioned,
    flows_env,
    kill,
    outputs,
    start_flows,
    wait_for,
    with_stream_ids,
)
from tests.logs import final_state


@pytest.fixture
def private_redis() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(persist=True)
    yield server
    server.stop()


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(Path(f"/proc/{entry}/stat").read_text().split()[3]) == pid:
                    found.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return found


def test_flows_ride_out_a_pause_and_a_restart_of_redis(private_redis: EmbeddedRedis,
                                                       tmp_path: Path):
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
        (child,) = _children(flows.pid)
        os.kill(child, signal.SIGKILL)
        extra = with_stream_ids([{**e, "ts": e["ts"] + 10**6}
                                 for e in random_log(32, 200, t0=events[-1][1]["ts"])])
        deliver(extra)
        assert flows.poll() is None
    finally:
        kill(flows)
    # Live has no end of input (and no watermark here): compared without finish().
    assert final_state(outputs(conn, keys)) == final_state(expected)
