"""SPEC "Metered time: the rules", one case (at least) per sentence."""

from __future__ import annotations

import pytest

from state.config import RuleSettings
from state.metering import Tariff
from tests.support.logs import engine_outputs, final_state, seg, start, tariff, usage_for

T0 = 1_000_000  # session start; report interval 1000 → idle timeout 3000


def run_session(*events, rules=None):
    outputs = engine_outputs([tariff(), start(), *events], rules)
    state = final_state(outputs)
    return usage_for(state, "s"), state["rejects"], outputs


def reject_of(event, *before):
    _, rejects, _ = run_session(*before, event)
    return rejects


@pytest.mark.parametrize(
    ("case", "event", "before", "reason"),
    [
        (
            "duplicate seq",
            seg(0, T0 + 1000, T0, T0 + 500),
            [seg(0, T0 + 900, T0, T0 + 900)],
            "duplicate",
        ),
        ("end before start", seg(0, T0 + 1000, T0 + 500, T0 + 400), [], "invalid_interval"),
        ("empty interval", seg(0, T0 + 1000, T0 + 500, T0 + 500), [], "invalid_interval"),
        (
            "longer than max_segment_ms",
            seg(0, T0 + 700_000, T0, T0 + 600_001),
            [],
            "invalid_interval",
        ),
        ("end past ts + skew", seg(0, T0 + 1000, T0, T0 + 6001), [], "future"),
        ("end before the session start", seg(0, T0 + 1000, T0 - 500, T0), [], "before_start"),
        (
            "after the end flag, nothing left",
            seg(1, T0 + 2000, T0 + 1000, T0 + 2000),
            [seg(0, T0 + 1000, T0, T0 + 1000, end=True)],
            "after_end",
        ),
        (
            "past the grace after closing",
            seg(1, T0 + 1000 + 300_001, T0 + 1000 + 300_000, T0 + 1000 + 300_001),
            [seg(0, T0 + 1000, T0, T0 + 1000, end=True)],
            "late",
        ),
    ],
)
def test_segment_rejects(case, event, before, reason):
    assert reject_of(event, *before) == {reason: 1}


def test_checks_run_in_spec_order():
    # Duplicate beats invalid, invalid beats future, future beats late, late beats before_start.
    closed = [seg(0, T0 + 1000, T0, T0 + 1000, end=True)]
    late_ts = T0 + 1000 + 300_001
    assert reject_of(seg(0, late_ts, 5, 1), *closed) == {"duplicate": 1}
    assert reject_of(seg(1, late_ts, 5, 1), *closed) == {"invalid_interval": 1}
    assert reject_of(seg(1, late_ts, late_ts + 5500, late_ts + 6000), *closed) == {"future": 1}
    assert reject_of(seg(1, late_ts, 0, 10), *closed) == {"late": 1}


def test_unknown_session():
    outputs = engine_outputs([seg(0, T0, T0 - 10, T0)])
    assert final_state(outputs)["rejects"] == {"unknown_session": 1}


def test_unknown_tariff_means_no_session():
    outputs = engine_outputs([start(tariff_id="nope"), seg(0, T0 + 100, T0, T0 + 100)])
    assert final_state(outputs)["rejects"] == {"unknown_tariff": 1, "unknown_session": 1}


def test_tariff_later_in_the_log_does_not_count():
    outputs = engine_outputs([start(ts=T0), tariff(ts=T0)])
    assert final_state(outputs)["rejects"] == {"unknown_tariff": 1}


def test_second_start_is_duplicate():
    outputs = engine_outputs([tariff(), start(), start(ts=T0 + 5)])
    assert final_state(outputs)["rejects"] == {"duplicate": 1}


def test_last_tariff_version_before_start_is_billed_for_the_whole_session():
    events = [
        tariff(price_minor=10),
        tariff(price_minor=20, ts=5),
        start(),
        tariff(price_minor=99, ts=T0 + 1),
        seg(0, T0 + 1000, T0, T0 + 1000),
    ]
    usage = usage_for(final_state(engine_outputs(events)), "s")
    assert usage is not None
    assert usage["fee_minor"] == 20


def test_start_is_clipped_up_to_the_session_start():
    usage, _, _ = run_session(seg(0, T0 + 1000, T0 - 500, T0 + 1000))
    assert usage["billed_ms"] == 1000


def test_union_of_overlaps_and_retransmits_bills_once():
    usage, rejects, _ = run_session(
        seg(0, T0 + 1000, T0, T0 + 1000),
        seg(1, T0 + 2000, T0 + 500, T0 + 2000),
        seg(2, T0 + 2100, T0, T0 + 2000),
        seg(1, T0 + 2200, T0, T0 + 2000),
    )
    assert usage["billed_ms"] == 2000 and usage["segments"] == 3
    assert rejects == {"duplicate": 1}


def test_end_flag_closes_and_clips_later_segments():
    usage, rejects, outputs = run_session(
        seg(0, T0 + 1000, T0, T0 + 1000, end=True), seg(1, T0 + 1500, T0 + 500, T0 + 1500)
    )
    assert (usage["status"], usage["closed_reason"], usage["billed_ms"]) == ("closed", "end", 1000)
    assert usage["segments"] == 2 and rejects == {}  # accepted, though clipped to nothing new
    closing = [o for o in outputs if o["type"] == "usage" and o["status"] == "closed"]
    assert closing[0]["ts"] == T0 + 1000


def test_idle_close_at_last_receive_plus_timeout():
    usage, _, _ = run_session(seg(0, T0 + 1000, T0, T0 + 1000), tariff("other", ts=T0 + 4001))
    assert (usage["status"], usage["closed_reason"], usage["ts"]) == ("closed", "idle", T0 + 4000)


def test_idle_close_needs_the_log_time_past_closed_ts():
    usage, _, _ = run_session(seg(0, T0 + 1000, T0, T0 + 1000), tariff("other", ts=T0 + 4000))
    assert usage["status"] == "open"


def test_rejected_segments_do_not_keep_a_session_alive():
    usage, _, _ = run_session(
        seg(0, T0 + 1000, T0, T0 + 1000),
        seg(1, T0 + 3500, T0 + 3000, T0 + 99_000),  # future
        tariff("other", ts=T0 + 4001),
    )
    assert (usage["status"], usage["ts"]) == ("closed", T0 + 4000)


def test_idle_close_from_the_start_when_no_segment():
    usage, _, _ = run_session(tariff("other", ts=T0 + 3001))
    assert (usage["status"], usage["ts"], usage["billed_ms"], usage["fee_minor"]) == (
        "closed",
        T0 + 3000,
        0,
        0,
    )


def test_end_of_input_closes_by_the_greatest_ts():
    usage, _, _ = run_session(seg(0, T0 + 1000, T0, T0 + 1000), tariff("x", ts=T0 + 4001))
    assert usage["status"] == "closed"
    usage, _, _ = run_session(seg(0, T0 + 1000, T0, T0 + 1000))
    assert usage["status"] == "open"


def test_the_event_that_moves_time_sees_the_closed_session():
    # The log's time moves to the segment's ts first: the session is idle-closed, then the
    # segment arrives as a late one within the grace, and its end flag is ignored.
    usage, _, outputs = run_session(
        seg(0, T0 + 1000, T0, T0 + 1000), seg(1, T0 + 9000, T0 + 1000, T0 + 2000, end=True)
    )
    assert (usage["closed_reason"], usage["billed_ms"], usage["segments"]) == ("idle", 2000, 2)
    versions = [(o["version"], o["status"]) for o in outputs if o["type"] == "usage"]
    assert versions == [(1, "open"), (2, "closed"), (3, "closed")]


def test_closed_session_stays_closed_and_takes_late_segments_within_grace():
    usage, _, _ = run_session(
        seg(0, T0 + 1000, T0, T0 + 1000, end=True), seg(1, T0 + 300_000, T0 - 100, T0 + 900)
    )
    assert (usage["status"], usage["billed_ms"], usage["segments"]) == ("closed", 1000, 2)


def test_a_session_long_past_its_grace_still_rejects_correctly():
    far = T0 + 10_000_000
    usage, rejects, _ = run_session(
        seg(0, T0 + 1000, T0, T0 + 1000, end=True),
        tariff("x", ts=far),
        seg(0, far + 1, far - 100, far),
        seg(7, far + 2, far - 100, far),
    )
    assert rejects == {"duplicate": 1, "late": 1}
    assert usage["billed_ms"] == 1000


@pytest.mark.parametrize(
    ("fields", "billed", "fee"),
    [
        ({}, 0, 0),
        ({}, 1, 10),
        ({}, 1000, 10),
        ({}, 1001, 20),
        ({"free_ms": 500}, 500, 0),
        ({"free_ms": 500}, 501, 10),
        ({"min_charge_minor": 25}, 1, 25),
        ({"min_charge_minor": 25}, 0, 0),
        ({"min_charge_minor": 25, "free_ms": 5000}, 10, 25),
        ({"min_charge_minor": 5}, 3000, 30),
        ({"price_minor": 0}, 99_999, 0),
    ],
)
def test_fee(fields, billed, fee):
    t = Tariff.from_event(
        {"tariff_id": "t", "currency": "USD", "unit_ms": 1000, "price_minor": 10, **fields}
    )
    assert t.fee(billed) == fee


def test_settings_change_the_rules():
    rules = RuleSettings(clock_skew_ms=0, idle_timeout_factor=10, max_segment_ms=100)
    assert reject_of(seg(0, T0 + 1000, T0 + 950, T0 + 1001)) == {}
    _, rejects, _ = run_session(seg(0, T0 + 1000, T0 + 950, T0 + 1001), rules=rules)
    assert rejects == {"future": 1}
    _, rejects, _ = run_session(seg(0, T0 + 1000, T0 + 800, T0 + 1000), rules=rules)
    assert rejects == {"invalid_interval": 1}
