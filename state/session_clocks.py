"""Each open session's clock in a session shard's sequencer: when it needs a `Tick`
to close as idle.

A clock is `[last_receive_ts, report_interval_ms, hinted_due]`: the inputs of the
deadline, not the deadline, so a restart with new settings recomputes it. `timers`
is a heap of hints `(due, session_id)`; a hint is superseded when its clock's
`hinted_due` moved on. Both are the sequencer's (`Sequencer.clocks`,
`Sequencer.timers`), bounded by the sessions open now: a clock goes when its tick
is sent, and the fact store wakes the session key once more, past R, to forget it.

Open sessions grow with traffic, so live the clocks are kept beside the snapshot,
not in it (flows.snapshot_tables), and the timers are made again from them:
`changes`, when a set, collects the ids whose clock was made, moved or dropped
since the last snapshot, which is all that snapshot has to store. `None` (a
replay, the plain loop, a pickled sequencer) collects nothing.
"""

from __future__ import annotations

import heapq

from state.config import RuleSettings
from state.facts import Facts
from state.messages import Event, Route, Tick

# A session clock: [last_receive_ts, report_interval_ms, hinted_due].
LAST, INTERVAL, HINT = 0, 1, 2

Clocks = dict[str, list[int]]
Timers = list[tuple[int, str]]
Changes = set[str] | None


def _due(clock: list[int], settings: RuleSettings) -> int:
    return clock[LAST] + settings.idle_timeout_ms(clock[INTERVAL])


def _hint(timers: Timers, session_id: str, clock: list[int], due: int, changes: Changes) -> None:
    clock[HINT] = due
    heapq.heappush(timers, (due, session_id))
    if changes is not None:
        changes.add(session_id)


def timers_of(clocks: Clocks) -> Timers:
    """The hints of clocks restored from outside a snapshot: one per clock."""
    timers = [(clock[HINT], session_id) for session_id, clock in clocks.items()]
    heapq.heapify(timers)
    return timers


def idle_ticks(
    clocks: Clocks,
    timers: Timers,
    before: int,
    log_time: int,
    step: int,
    settings: RuleSettings,
    facts: Facts,
    changes: Changes = None,
) -> list[Route]:
    """The log's time moved from `before` to `log_time`: a tick for each session
    whose deadline has passed."""
    routes: list[Route] = []
    while timers and timers[0][0] < log_time:
        hinted, session_id = heapq.heappop(timers)
        clock = clocks.get(session_id)
        if clock is None or clock[HINT] != hinted:
            continue  # superseded by a later hint
        due = _due(clock, settings)
        if due >= log_time:  # settings changed since the hint: not due yet
            _hint(timers, session_id, clock, due, changes)
            continue
        routes.append(Route(f"session:{session_id}", Tick(log_time, step)))
        # Closed (if it had not closed earlier by its end flag, even sooner):
        # the store wakes it once more, to forget it past R.
        del clocks[session_id]
        if changes is not None:
            changes.add(session_id)
        facts.wake_at(max(due + settings.retention_ms, before), f"session:{session_id}")
    return routes


def started(
    clocks: Clocks, timers: Timers, event: Event, settings: RuleSettings, changes: Changes = None
) -> None:
    """Whether the key takes the start (a new or forgotten id) or rejects it (a
    duplicate), a clock from now on, with the longer interval, is never too early."""
    session_id = event["session_id"]
    clock = clocks.get(session_id)
    interval = event["report_interval_ms"]
    if clock is not None:
        interval = max(interval, clock[INTERVAL])
    clock = [event["ts"], interval, 0]
    clocks[session_id] = clock
    _hint(timers, session_id, clock, _due(clock, settings), changes)


def received(
    clocks: Clocks, timers: Timers, event: Event, settings: RuleSettings, changes: Changes = None
) -> None:
    """A segment: the deadline moves on. It may move later than the session's true
    deadline (if this segment is rejected); the session closes itself at its true
    deadline on any message, so a late tick only delays the output, never changes it."""
    session_id = event["session_id"]
    clock = clocks.get(session_id)
    if clock is not None:
        clock[LAST] = event["ts"]
        _hint(timers, session_id, clock, _due(clock, settings), changes)


def final_ticks(clocks: Clocks, log_time: int, step: int) -> list[Route]:
    """End of input: every session that may still be open gets a tick, to close if
    its own deadline has passed."""
    return [Route(f"session:{session_id}", Tick(log_time, step)) for session_id in sorted(clocks)]
