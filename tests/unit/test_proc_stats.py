"""The benchmarks' /proc readings count a whole process group, children included."""

from __future__ import annotations

import subprocess
import sys
import time

import redis

from harness.proc_stats import cpu_seconds, redis_cpu_seconds, rss_mb

_BUSY = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass\n"
# A group leader that spends no CPU of its own and starts one busy child.
_LEADER = f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {_BUSY!r}])\n"


def test_cpu_and_memory_count_the_group_s_children() -> None:
    leader = subprocess.Popen([sys.executable, "-c", _LEADER], start_new_session=True)
    try:
        time.sleep(0.3)
        assert rss_mb(leader.pid) > 10  # two Python interpreters
        busiest = 0.0
        while leader.poll() is None:
            busiest = max(busiest, cpu_seconds(leader.pid))
            time.sleep(0.05)
    finally:
        leader.wait(10)
    # The child's CPU, read while it ran: the leader alone would show almost none.
    assert busiest >= 0.3


def test_redis_cpu_is_read_from_the_server(redis_client: redis.Redis) -> None:
    before = redis_cpu_seconds(redis_client)
    for _ in range(2000):
        redis_client.ping()
    assert redis_cpu_seconds(redis_client) >= before > 0
