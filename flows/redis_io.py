"""Live I/O: the Redis input stream in, the public output streams and views out."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from pydantic import ValidationError

from billing.events import parse_log_line
from billing.keys import Keys
from billing.redis_runtime import client
from state.outputs import Output

HEARTBEAT_EVERY_S = 0.25  # also how fresh the flow-lag metric is


class _StreamPartition(StatefulSourcePartition[tuple[str, Any], str]):
    """Reads one stream from `last_id` on, never blocking; its snapshot is `last_id`.

    When a read drains the stream it also emits a watermark tick: Redis's clock,
    read *before* that XREAD, minus the lag. Entries appended later get ids (so
    `ts`) at or after that clock reading, so the tick never passes an event that
    is still on its way, up to clock steps, which the lag absorbs.
    """

    def __init__(self, url: str, keys: Keys, stream: str, resume: str | None, batch: int,
                 poll_s: float, lag_ms: int) -> None:
        self.r = client(url)
        self.keys, self.stream = keys, stream
        self.last_id = resume or "0-0"
        self.batch, self.poll_s, self.lag_ms = batch, poll_s, lag_ms
        self._awake: datetime | None = None
        self._last_tick = -1
        self._last_beat = 0.0

    def next_batch(self) -> list[tuple[str, Any]]:
        self._awake = None
        seconds, micros = self.r.time()  # type: ignore[misc]
        server_ms = seconds * 1000 + micros // 1000
        reply: Any = self.r.xread({self.stream: self.last_id}, count=self.batch)
        entries = reply[0][1] if reply else []
        items: list[tuple[str, Any]] = [("log", self._item(eid, f)) for eid, f in entries]
        if entries:
            self.last_id = entries[-1][0]
        if len(entries) < self.batch:
            watermark = server_ms - self.lag_ms
            if watermark > self._last_tick:
                items.append(("log", ("tick", watermark)))
                self._last_tick = watermark
            self._awake = datetime.now(UTC) + timedelta(seconds=self.poll_s)
        now = time.monotonic()
        if now - self._last_beat >= HEARTBEAT_EVERY_S:
            pipe = self.r.pipeline(transaction=False)
            pipe.set(self.keys.flows_heartbeat, str(server_ms))
            pipe.set(self.keys.flows_position, self.last_id)
            pipe.execute()
            self._last_beat = now
        return items

    def _item(self, entry_id: str, fields: dict[str, str]) -> tuple[Any, ...]:
        ts = int(entry_id.split("-", 1)[0])
        data = fields.get("data", "")
        try:
            if not data.endswith("}"):
                raise ValueError("not a JSON object")
            # `ts` is the entry id's; splicing it in lets pydantic parse the JSON itself.
            _log_id, event = parse_log_line(f'{data[:-1]},"ts":{ts}}}')
            event["ts"] = ts
            return ("event", entry_id, event)
        except (ValueError, ValidationError):
            # Ingest validates everything; a bad entry here was written around it.
            # It becomes a reject rather than a poison pill that stops billing.
            return ("bad", entry_id, {"raw": fields.get("data"), "ts": ts})

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> str:
        return self.last_id

    def close(self) -> None:
        self.r.close()


class RedisStreamSource(FixedPartitionedSource[tuple[str, Any], str]):
    def __init__(self, url: str, keys: Keys, *, batch: int = 2000, poll_s: float = 0.01,
                 lag_ms: int = 2000) -> None:
        self.url, self.keys = url, keys
        self.batch, self.poll_s, self.lag_ms = batch, poll_s, lag_ms

    def list_parts(self) -> list[str]:
        return [self.keys.events]

    def build_part(self, step_id: str, for_part: str, resume_state: str | None
                   ) -> _StreamPartition:
        return _StreamPartition(self.url, self.keys, for_part, resume_state, self.batch,
                                self.poll_s, self.lag_ms)


# One script call per batch appends every output to its public stream and updates
# the views, written so that a replayed output (at-least-once recovery) changes
# nothing: a session view only moves to a higher version, an order view is keyed by
# output_id, and a sharer's totals count each output_id once. (Keys travel in ARGV:
# this is a single-node deployment; a cluster would need one call per hash slot.)
#
# Entry ids come from one sequence shared by the three output streams (Redis's clock,
# then a counter within the millisecond), so an id names one output across all three
# and their merge is totally ordered: `/v1/stream` resumes from a single id.
_WRITE = """
local outputs, rejects, seqkey = ARGV[1], ARGV[2], ARGV[3]
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local last = redis.call('HMGET', seqkey, 'ms', 'seq')
local last_ms, seq = tonumber(last[1] or '0'), tonumber(last[2] or '-1')
if ms > last_ms then seq = -1 else ms = last_ms end
local i = 4
while i <= #ARGV do
  local kind, stream, output_id, data = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  seq = seq + 1
  redis.call('XADD', stream, ms .. '-' .. seq, 'output_id', output_id, 'data', data)
  redis.call('HINCRBY', outputs, kind, 1)
  if kind == 'usage' then
    local view, version = ARGV[i + 4], tonumber(ARGV[i + 5])
    local cur = tonumber(redis.call('HGET', view, 'version') or '0')
    if version > cur then
      redis.call('HSET', view, 'version', version, 'data', data)
    end
    i = i + 6
  elseif kind == 'commission' then
    local order_view, applied, sharer_view = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
    redis.call('HSET', order_view, output_id, data)
    if redis.call('SADD', applied, output_id) == 1 then
      redis.call('HINCRBY', sharer_view, ARGV[i + 7], ARGV[i + 8])
      redis.call('HINCRBY', sharer_view, ARGV[i + 7] .. '_count', 1)
    end
    i = i + 9
  else
    redis.call('HINCRBY', rejects, ARGV[i + 4], 1)
    i = i + 5
  end
end
redis.call('HSET', seqkey, 'ms', ms, 'seq', seq)
return 1
"""


class _RedisWriter(StatelessSinkPartition[tuple[str, Output]]):
    def __init__(self, url: str, keys: Keys) -> None:
        self.r = client(url)
        self.keys = keys
        self.write = self.r.register_script(_WRITE)

    def write_batch(self, items: list[tuple[str, Output]]) -> None:
        keys = self.keys
        args: list[str | int] = [keys.stats("outputs"), keys.stats("rejects"),
                                 keys.output_sequence]
        for _key, out in items:
            kind = out["type"]
            data = orjson.dumps(out).decode()
            args += [kind, keys.output_stream(kind), out["output_id"], data]
            if kind == "usage":
                args += [keys.session_view(out["session_id"]), out["version"]]
            elif kind == "commission":
                field = "accrued" if out["kind"] == "accrual" else "reversed"
                args += [keys.order_view(out["order_id"]), keys.sharer_applied(out["sharer_id"]),
                         keys.sharer_view(out["sharer_id"]), f"{out['currency']}:{field}",
                         out["commission_minor"]]
            else:
                args.append(out["reason"])
        if len(args) > 3:
            self.write(args=args)

    def close(self) -> None:
        self.r.close()


class RedisOutputSink(DynamicSink[tuple[str, Output]]):
    def __init__(self, url: str, keys: Keys) -> None:
        self.url, self.keys = url, keys

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RedisWriter:
        return _RedisWriter(self.url, self.keys)


