"""Live input: the Redis input stream, read in order, with the watermark and trimming.

The output side is flows/redis_sink.py."""

from __future__ import annotations

import contextlib
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from pydantic import ValidationError

from billing import stream_ids
from billing.keys import Keys
from billing.log_lines import entry_object, int64_safe, parse_log_line, validation_summary
from billing.redis_runtime import client, server_ms
from billing.stream_ids import ts_of
from flows import stats
from flows.runtime import keep_thread_state
from flows.stream_read_ahead import StreamReadAhead, entries_of
from state.messages import BadEntry, LogEvent, RawEntry, SequencerInput, Watermark

HEARTBEAT_EVERY_S = 0.25  # also how fresh the flow-lag metric is
TRIM_EVERY_S = 1.0


class _StreamPartition(StatefulSourcePartition[tuple[str, SequencerInput | RawEntry], str]):
    """Reads one stream from `last_id` on, never blocking; its snapshot is `last_id`.

    When a read drains the stream it also emits a watermark tick: Redis's clock,
    read *before* that XREAD, minus the lag. Entries appended later get ids (so
    `ts`) at or after that clock reading, so the tick never passes an event that
    is still on its way, up to clock steps, which the lag absorbs.

    It also trims the stream (with `trim_ms`, SPEC's retention): entries older
    than both `trim_ms` of log and the position of the last snapshot but one
    (a restart resumes at the last snapshot bytewax committed, at most one behind
    the last taken) can never be read again, so they go. `billing export
    --since/--until` archives history before that.
    """

    def __init__(
        self,
        url: str,
        keys: Keys,
        stream: str,
        resume: str | None,
        batch: int,
        poll_s: float,
        lag_ms: int,
        trim_ms: int | None,
        parse_here: bool,
    ) -> None:
        keep_thread_state()
        self.r = client(url, patient=True, cluster=keys.cluster)
        self.parse_here = parse_here
        self.keys, self.stream = keys, stream
        self.last_id = resume or "0-0"
        self.batch, self.poll_s, self.lag_ms = batch, poll_s, lag_ms
        self.trim_ms = trim_ms
        self._awake: datetime | None = None
        self._last_tick = -1
        self._last_beat = 0.0
        self._last_trim = 0.0
        self._snapshots: deque[str] = deque(maxlen=2)
        # A cluster's client has no one connection to read ahead on: it reads as it goes.
        self._ahead = None if keys.cluster else StreamReadAhead(self.r, stream, batch)

    def next_batch(self) -> list[tuple[str, SequencerInput | RawEntry]]:
        self._awake = None
        read = self._ahead.take(self.last_id) if self._ahead is not None else None
        if read is not None:
            clock, entries = read
        else:
            clock = server_ms(self.r, self.stream)
            entries = entries_of(self.r.xread({self.stream: self.last_id}, count=self.batch))
        items: list[tuple[str, SequencerInput | RawEntry]] = [
            ("log", self._item(eid, f)) for eid, f in entries
        ]
        if entries:
            self.last_id = entries[-1][0]
        if len(entries) < self.batch:
            watermark = clock - self.lag_ms
            if watermark > self._last_tick:
                items.append(("log", Watermark(watermark)))
                self._last_tick = watermark
            self._awake = datetime.now(UTC) + timedelta(seconds=self.poll_s)
        now = time.monotonic()
        if now - self._last_beat >= HEARTBEAT_EVERY_S:
            pipe = self.r.pipeline(transaction=False)
            pipe.set(self.keys.flows_heartbeat, str(clock))
            pipe.set(self.keys.flows_position, self.last_id)
            stats.publish(pipe, self.keys)
            pipe.execute()
            self._last_beat = now
        if self.trim_ms is not None and now - self._last_trim >= TRIM_EVERY_S:
            self._trim(clock)
            self._last_trim = now
        if self._ahead is not None and len(entries) == self.batch:
            # A full batch: more is waiting, so ask for it while this one is computed.
            self._ahead.send(self.last_id)
        return items

    def _trim(self, clock: int) -> None:
        if len(self._snapshots) < 2:
            return
        assert self.trim_ms is not None
        durable = stream_ids.parse(self._snapshots[0])
        keep_from = min(durable, (clock - self.trim_ms, 0))
        if keep_from > (0, 0):
            self.r.xtrim(self.stream, minid=f"{keep_from[0]}-{keep_from[1]}", approximate=False)

    def _item(self, entry_id: str, fields: dict[str, str]) -> RawEntry | LogEvent | BadEntry:
        """What routing needs, read cheaply (orjson); the full parse and validation
        happen at the entry's sequencer key (`parse_entry`), spread over the workers.
        Anything orjson does not read as an object is parsed here, into its reject.
        In one process the workers share one GIL, so nothing is gained by parsing
        elsewhere, and the entry is parsed here at once (`parse_here`)."""
        ts = ts_of(entry_id)
        data = fields.get("data", "")
        head: Any = None
        if not self.parse_here:
            with contextlib.suppress(orjson.JSONDecodeError):
                head = orjson.loads(data)
        if not isinstance(head, dict):
            return parse_entry(entry_id, data, ts)
        kind, session_id = head.get("type"), head.get("session_id")
        return RawEntry(
            entry_id,
            data,
            ts,
            kind if isinstance(kind, str) else None,
            session_id if isinstance(session_id, str) else None,
        )

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> str:
        stats.epoch_closed()  # one input partition: called once per epoch
        self._snapshots.append(self.last_id)
        return self.last_id

    def close(self) -> None:
        if self._ahead is not None:
            self._ahead.close()
        self.r.close()


def parse_entry(position: str, data: str, ts: int) -> LogEvent | BadEntry:
    """A stream entry (its id, its JSON text and the `ts` of its id) as a sequencer
    input: its event, validated."""
    try:
        if not data.endswith("}"):
            raise ValueError("not a JSON object")
        # `ts` is the entry id's; splicing it in lets pydantic parse the JSON itself.
        _log_id, event = parse_log_line(f'{data[:-1]},"ts":{ts}}}')
        event["ts"] = ts
        return LogEvent(position, event)
    except ValidationError as exc:
        error = validation_summary(exc)
    except ValueError as exc:
        error = str(exc)
    # Ingest validates everything; a bad entry here was written around it.
    # It becomes a reject rather than a poison pill that stops billing.
    return BadEntry(position, {**int64_safe(entry_object(data)), "ts": ts}, error)


class RedisStreamSource(FixedPartitionedSource[tuple[str, SequencerInput | RawEntry], str]):
    def __init__(
        self,
        url: str,
        keys: Keys,
        *,
        batch: int = 2000,
        poll_s: float = 0.05,
        lag_ms: int = 2000,
        trim_ms: int | None = None,
        parse_here: bool = False,
    ) -> None:
        """`parse_here`: parse each entry at the source rather than at its sequencer
        key (where that runs makes no difference to what is billed)."""
        self.url, self.keys = url, keys
        self.parse_here = parse_here
        self.batch, self.poll_s, self.lag_ms = batch, poll_s, lag_ms
        self.trim_ms = trim_ms

    def list_parts(self) -> list[str]:
        return [self.keys.events]

    def build_part(self, step_id: str, for_part: str, resume_state: str | None) -> _StreamPartition:
        return _StreamPartition(
            self.url,
            self.keys,
            for_part,
            resume_state,
            self.batch,
            self.poll_s,
            self.lag_ms,
            self.trim_ms,
            self.parse_here,
        )
