"""Replay I/O: a JSON Lines log file in, JSON Lines outputs out."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from pydantic import ValidationError

from billing.log_lines import int64_safe, parse_log_line, validation_summary
from flows.encoding import encode
from state.messages import BadEntry, LogEvent, SequencerInput
from state.outputs import Output


class LogLineError(ValueError):
    def __init__(self, line_no: int, reason: str) -> None:
        super().__init__(f"line {line_no}: {reason}")
        self.line_no = line_no


def parse_line(line: bytes | str, line_no: int) -> LogEvent | BadEntry | None:
    """One log line as a sequencer input; None for a blank line.

    A line that is not a JSON object means the file is not a log: LogLineError.
    A JSON object that is not a valid event (a bad field, an integer out of
    bounds) is what a live stream can hold too: it becomes an `invalid_event`
    reject, as it does live, and the replay goes on.
    """
    if not line.strip():
        return None
    try:
        log_id, event = parse_log_line(line)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            raise LogLineError(line_no, f"not JSON ({first['msg']})") from exc
        if first["type"] == "dict_type" and not first["loc"]:
            raise LogLineError(line_no, "not a JSON object") from exc
        raw = int64_safe(json.loads(line))
        given = raw.get("log_id")
        position = given if isinstance(given, str) and len(given) <= 64 else f"L{line_no}"
        return BadEntry(position, raw, validation_summary(exc))
    # An exported live log keeps its stream ids, so its outputs keep their live ids.
    return LogEvent(log_id or f"L{line_no}", event)


@dataclass
class ReplayStatus:
    """Shared with the caller: the first bad line stops the run and is reported here."""

    error: LogLineError | None = None
    events: int = 0
    on_progress: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class _FilePartition(StatefulSourcePartition[tuple[str, SequencerInput], int]):
    def __init__(self, path: str, status: ReplayStatus, batch_size: int, resume: int | None):
        self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._status = status
        self._batch_size = batch_size
        self._line_no = 0
        self._last_ts = -1
        if resume:
            for _ in range(resume):
                self._file.readline()
            self._line_no = resume

    def next_batch(self) -> list[tuple[str, SequencerInput]]:
        batch: list[tuple[str, SequencerInput]] = []
        start = self._file.tell()
        for _ in range(self._batch_size):
            raw = self._file.readline()
            if not raw:
                break
            self._line_no += 1
            try:
                parsed = parse_line(raw, self._line_no)
            except LogLineError as exc:
                self._status.error = exc
                raise StopIteration() from exc
            if parsed is None:
                continue
            if isinstance(parsed, LogEvent):
                ts = parsed.event["ts"]
                if ts < self._last_ts:
                    self._status.error = LogLineError(
                        self._line_no, f"ts {ts} is earlier than the line before; not in log order"
                    )
                    raise StopIteration()
                self._last_ts = ts
            batch.append(("log", parsed))
        with self._status.lock:
            self._status.events += len(batch)
            if self._status.on_progress is not None:
                self._status.on_progress(self._file.tell() - start)
        if not batch and not raw:
            raise StopIteration()
        return batch

    def next_awake(self) -> datetime | None:
        return None

    def snapshot(self) -> int:
        return self._line_no

    def close(self) -> None:
        self._file.close()


class JsonLinesSource(FixedPartitionedSource[tuple[str, SequencerInput], int]):
    def __init__(self, path: str, status: ReplayStatus, batch_size: int = 2000) -> None:
        self.path, self.status, self.batch_size = path, status, batch_size

    def list_parts(self) -> list[str]:
        return ["log"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _FilePartition:
        return _FilePartition(self.path, self.status, self.batch_size, resume_state)


class _WriterPartition(StatelessSinkPartition[tuple[str, list[Output]]]):
    def __init__(self, out: IO[str], lock: threading.Lock) -> None:
        self._out, self._lock = out, lock

    def write_batch(self, items: list[tuple[str, list[Output]]]) -> None:
        outputs = [o for _key, batch in items for o in batch]
        if not outputs:
            return
        try:  # one call for the batch; `encode` turns what cannot be written into a reject
            lines = list(map(orjson.dumps, outputs))
        except (TypeError, orjson.JSONEncodeError):
            lines = [encode(o)[1] for o in outputs]
        lines.append(b"")
        text = b"\n".join(lines).decode()
        with self._lock:
            self._out.write(text)


class JsonLinesSink(DynamicSink[tuple[str, list[Output]]]):
    """All workers of the process append to one text stream, a batch at a time."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.lock = threading.Lock()

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _WriterPartition:
        return _WriterPartition(self.out, self.lock)
