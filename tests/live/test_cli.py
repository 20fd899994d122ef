"""The `billing` command: replay errors and flags, export, and the embedded Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from billing.redis_runtime import EmbeddedRedis, answers
from tests.support.logs import final_state, read_jsonl, spec_example


def billing(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "programs.cli", *args], capture_output=True, text=True, env=env, **kw
    )


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            [
                '{"type": "tariff", "tariff_id": "t", "ts": 1, "currency": "USD", "unit_ms": 1, '
                '"price_minor": 1}',
                "{oops",
            ],
            "line 2: not JSON",
        ),
        (["[1, 2]"], "line 1: not a JSON object"),
        (
            [
                '{"type": "refund", "refund_id": "r", "order_id": "o", "ts": 5}',
                '{"type": "refund", "refund_id": "q", "order_id": "o", "ts": 4}',
            ],
            "line 2: ts 4 is earlier",
        ),
    ],
)
def test_replay_reports_the_bad_line(tmp_path: Path, lines, message):
    log = tmp_path / "in.jsonl"
    log.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    result = billing("replay", str(log), "--output", str(out))
    assert result.returncode == 2
    assert message in result.stderr
    assert not out.exists(), "no partial output file on error"


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (
            '{"type": "order", "order_id": "o", "ts": 1, "buyer_id": "b", "currency": "USD", '
            '"lines": [{"item_id": "i", "quantity": 1.5, "unit_price_minor": 1}]}',
            "order.lines.0.quantity",
        ),
        ('{"type": "mystery", "ts": 1}', "Input tag 'mystery'"),
        (
            '{"type": "segment", "session_id": "s", "seq": 18446744073709551616, "ts": 1, '
            '"start_ms": 0, "end_ms": 1, "end": false}',
            "segment.seq",
        ),
    ],
)
def test_replay_rejects_an_invalid_event_and_goes_on(tmp_path: Path, line: str, error: str):
    """A JSON object that is no valid event is what a live stream may hold too: an
    `invalid_event` reject, with the error, and the events after it are billed."""
    log = tmp_path / "in.jsonl"
    tail = (
        '{"type": "tariff", "tariff_id": "t", "ts": 2, "currency": "USD", "unit_ms": 1, '
        '"price_minor": 1}\n{"type": "session_start", "session_id": "s2", "ts": 3, '
        '"user_id": "u", "service_id": "v", "tariff_id": "t", "report_interval_ms": 10}\n'
        '{"type": "segment", "session_id": "s2", "seq": 0, "ts": 9, "start_ms": 3, '
        '"end_ms": 8, "end": true}\n'
    )
    log.write_text(line + "\n" + tail)
    result = billing("replay", str(log))
    assert result.returncode == 0, result.stderr
    outs = [json.loads(x) for x in result.stdout.splitlines()]
    bad = [o for o in outs if o["type"] == "reject"]
    assert [o["reason"] for o in bad] == ["invalid_event"]
    assert bad[0]["output_id"] == "reject:L1" and error in bad[0]["error"]
    assert json.dumps(bad[0]["event"])  # the bad value is kept, as text if it must be
    assert final_state(outs)["usage"]["s2@3"]["billed_ms"] == 5


def test_replay_to_stdout_with_setting_flags(tmp_path: Path):
    log = spec_example("metering")
    default = billing("replay", str(log))
    assert default.returncode == 0
    outs = [json.loads(line) for line in default.stdout.splitlines()]
    assert final_state(outs)["usage"]["s@1000000"]["billed_ms"] == 3000
    # A longer grace turns the last segment's `late` into accepted time.
    longer = billing("replay", str(log), "--late-grace-ms", "400000", "--workers", "2")
    outs = [json.loads(line) for line in longer.stdout.splitlines()]
    assert final_state(outs)["usage"]["s@1000000"]["billed_ms"] == 4000
    assert "late" not in final_state(outs)["rejects"]


def test_replay_flags_from_environment(tmp_path: Path):
    env = {**os.environ, "BILLING_CLOCK_SKEW_MS": "10000"}
    result = billing("replay", str(spec_example("metering")), env=env)
    outs = [json.loads(line) for line in result.stdout.splitlines()]
    assert "future" not in final_state(outs)["rejects"]


def test_replay_missing_file_is_a_clear_error(tmp_path: Path):
    result = billing("replay", str(tmp_path / "nope.jsonl"))
    assert result.returncode == 2 and "nope.jsonl" in result.stderr


def test_export_then_replay_reproduces_the_log(
    redis_client, keys, redis_url, prefix, tmp_path: Path
):
    events = read_jsonl(spec_example("commissions"))
    for event in events:
        body = {k: v for k, v in event.items() if k != "ts"}
        redis_client.xadd(keys.events, {"data": json.dumps(body)}, id=f"{event['ts']}-*")
    env = {**os.environ, "REDIS_URL": redis_url, "BILLING_KEY_PREFIX": prefix}
    out = tmp_path / "export.jsonl"
    assert billing("export", "--output", str(out), env=env).returncode == 0
    exported = read_jsonl(out)
    assert [{k: v for k, v in e.items() if k != "log_id"} for e in exported] == events
    assert all(e["log_id"].startswith(str(e["ts"])) for e in exported)
    replayed = billing("replay", str(out))
    outs = [json.loads(line) for line in replayed.stdout.splitlines()]
    (dup,) = [o for o in outs if o["type"] == "reject"]
    assert dup["output_id"] == f"reject:{exported[-1]['log_id']}"  # live ids survive


def test_embedded_redis_starts_and_stops():
    server = EmbeddedRedis()
    try:
        assert answers(server.url)
        redis.Redis.from_url(server.url).set("k", "v")
    finally:
        server.stop()
    assert not answers(server.url)


def test_embedded_redis_dies_with_its_parent(tmp_path: Path):
    script = (
        "from billing.redis_runtime import EmbeddedRedis; import time, sys; "
        "s = EmbeddedRedis(); print(s.url, s.proc.pid, flush=True); time.sleep(60)"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    url, pid = parent.stdout.readline().split()
    assert answers(url)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and answers(url):
        time.sleep(0.1)
    assert not answers(url)
    with pytest.raises(ProcessLookupError):
        for _ in range(50):
            os.kill(int(pid), 0)  # the zombie is reaped by init; wait for it
            time.sleep(0.1)


def test_replay_progress_bar_goes_to_stderr(tmp_path: Path):
    out = tmp_path / "out.jsonl"
    result = billing("replay", str(spec_example("commissions")), "--output", str(out), "--progress")
    assert result.returncode == 0
    assert "replay" in result.stderr and "100%" in result.stderr
    assert len(read_jsonl(out)) == 5
