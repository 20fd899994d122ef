"""`billing demo`: starts everything, bills, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx

from harness.server import free_port


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


def test_demo_runs_bills_and_leaves_no_orphans_on_ctrl_c(redis_url):
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url}
    env.pop("BILLING_KEY_PREFIX", None)
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "programs.cli",
            "demo",
            "--port",
            str(port),
            "--sessions",
            "8",
            "--summary-every",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    assert demo.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    children: list[int] = []
    dashboard = ""
    try:
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            assert line, "demo ended early:\n" + "".join(lines)
            lines.append(line)
            if line.startswith("children:"):
                children = [int(p) for p in re.findall(r"\d+", line)]
            if line.startswith("dashboard:"):
                dashboard = line.split()[1]
            # Payouts of approved commissions show within a minute (20 s holding).
            if (
                "commission=" in line
                and "usage=" in line
                and "payout=" in line
                and re.search(r"webhooks: [1-9]\d* verified, 0 refused", line)
            ):
                break
        else:
            raise AssertionError("no outputs:\n" + "".join(lines))
        assert children and all(alive(pid) for pid in children)
        page = httpx.get(dashboard, timeout=5)
        assert page.status_code == 200 and "Live billing" in page.text
    finally:
        os.killpg(demo.pid, signal.SIGINT) if demo.poll() is None else None
        rest, _ = demo.communicate(timeout=60)
    assert demo.returncode == 0, "".join(lines) + rest
    assert "stopped." in rest
    time.sleep(0.5)
    assert [pid for pid in children if alive(pid)] == []
