"""Which sequencer key a log entry goes to: the commission sequencer, or a session shard.

Some of what the log decides cannot be split by key (duplicate ids, known orders,
the scan a hint names, rule versions, the order of a sharer's credits and payouts),
so it needs one ordered stage: the commission sequencer, key `log`. Metered
sessions share nothing with it but the log's time and the tariffs: a session's
entries (its start and segments) concern that session alone, tariffs are a small
catalog, and nothing a session emits reaches a sharer. So sessions are sequenced
apart, in `SESSION_SHARDS` keys chosen by a stable hash of the session id (CRC-32,
the same in every process, unlike Python's `hash`). Each shard is a `Sequencer`
of its own with its sessions' clocks, every tariff, and its own log time. That
takes about half of the log (segments are most of it) off the one serial key,
and spreads it over the workers.

The log's time. A sequencer moves it with the entries it sees, so after every
batch each key gets a `Watermark` at the batch's greatest `ts` (log order: no later
entry is earlier), and live watermarks go to every key. Nothing a key emits
depends on which entry moved the time past a deadline: an idle close is at the
session's own deadline, an approval at its order's ts plus the holding period,
and a sharer's order is the commission sequencer's alone, which sees every entry
that reaches a sharer. So the outputs are those of one sequencer over the whole
log, which the plain loop (state.engine) keeps as the reference; the flow-equals-
loop tests hold at 1, 2 and 4 workers.

Where the shards run. The commission sequencer is the serial part, so nothing else
should share its worker. bytewax puts a key on a worker by a hash of its name
(flows/placement.py has it; state/ does not import flows), and these names are the
first that land at 4 workers on workers 0 and 2, never on the commission
sequencer's worker 1: at 2 workers all on worker 0, with the source, and at 4 half on
each of 0 and 2. tests/flows/test_placement.py pins it. With `--processes 2` that took
the 600k catch-up from 34.3 to 30.5 s (README, "Where the serial work runs").

`SESSION_SHARDS` and the shards' names are part of the recovery state's layout (a
session's clock lives in its shard): changing them needs a fresh start from the log,
like any layout change (flows.logic refuses a snapshot of a key not named here).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from state.messages import (
    BadEntry,
    InputBatch,
    LogEvent,
    RawEntry,
    RawRun,
    SequencerInput,
    Watermark,
)

COMMISSIONS = "log:commissions"
SHARD_KEYS = tuple(f"sessions:{n}" for n in (0, 3, 5, 7, 9, 10, 11, 14))
SESSION_SHARDS = len(SHARD_KEYS)
ALL_KEYS = (COMMISSIONS, *SHARD_KEYS)
SESSION_TYPES = frozenset({"session_start", "segment"})


def session_shard(session_id: str) -> str:
    return SHARD_KEYS[zlib.crc32(session_id.encode()) % SESSION_SHARDS]


def route(entries: Iterable[SequencerInput | RawEntry]) -> list[InputBatch]:
    """One batch of entries, in log order, as one `InputBatch` per sequencer key.

    A `RawEntry` is routed by what the source read off it, and consecutive ones of a
    key travel as one `RawRun`; a tariff must come parsed (a `LogEvent`): it goes to
    every shard, and a bad one must be rejected once, by the commission sequencer,
    not once per shard.
    """
    grouped: dict[str, list[SequencerInput | RawRun]] = {}

    def add(key: str, entry: SequencerInput | RawEntry) -> None:
        found = grouped.get(key)
        if found is None:
            found = grouped[key] = []
        if not isinstance(entry, RawEntry):
            found.append(entry)
            return
        run = found[-1] if found else None
        if not isinstance(run, RawRun):
            run = RawRun([], [], [])
            found.append(run)
        run.positions.append(entry.position)
        run.datas.append(entry.data)
        run.tss.append(entry.ts)

    latest: int | None = None
    for entry in entries:
        if isinstance(entry, LogEvent):
            event = entry.event
            kind, ts = event["type"], event["ts"]
            session_id = event.get("session_id") if kind in SESSION_TYPES else None
        elif isinstance(entry, RawEntry):
            kind, ts, session_id = entry.kind_hint, entry.ts, entry.session_id
            if kind == "tariff":
                raise ValueError(f"{entry.position}: a tariff must be parsed before routing")
        elif isinstance(entry, Watermark):
            for key in ALL_KEYS:
                add(key, entry)
            continue
        else:
            assert isinstance(entry, BadEntry)
            add(COMMISSIONS, entry)
            continue
        latest = ts if latest is None else max(latest, ts)
        if kind in SESSION_TYPES and isinstance(session_id, str):
            add(session_shard(session_id), entry)
        elif kind == "tariff":
            for key in SHARD_KEYS:
                add(key, entry)
        else:
            add(COMMISSIONS, entry)
    if latest is not None:
        mark = Watermark(latest)
        for key in ALL_KEYS:
            add(key, mark)
    return [InputBatch(key, batch) for key, batch in grouped.items()]
