"""Live I/O: the Redis input stream in, the public output streams and views out."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from pydantic import ValidationError

from billing.events import parse_log_event
from billing.keys import Keys
from billing.redis_runtime import client
from state.outputs import Output

HEARTBEAT_EVERY_S = 1.0


class _StreamPartition(StatefulSourcePartition[tuple[Any, ...], str]):
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

    def next_batch(self) -> list[tuple[Any, ...]]:
        self._awake = None
        seconds, micros = self.r.time()  # type: ignore[misc]
        server_ms = seconds * 1000 + micros // 1000
        reply: Any = self.r.xread({self.stream: self.last_id}, count=self.batch)
        entries = reply[0][1] if reply else []
        items: list[tuple[Any, ...]] = [self._item(eid, fields) for eid, fields in entries]
        if entries:
            self.last_id = entries[-1][0]
        if len(entries) < self.batch:
            watermark = server_ms - self.lag_ms
            if watermark > self._last_tick:
                items.append(("tick", watermark))
                self._last_tick = watermark
            self._awake = datetime.now(UTC) + timedelta(seconds=self.poll_s)
        now = time.monotonic()
        if now - self._last_beat >= HEARTBEAT_EVERY_S:
            self.r.set(self.keys.flows_heartbeat, str(server_ms))
            self._last_beat = now
        return items

    def _item(self, entry_id: str, fields: dict[str, str]) -> tuple[Any, ...]:
        ts = int(entry_id.split("-", 1)[0])
        try:
            raw = json.loads(fields["data"])
            raw["ts"] = ts
            return ("event", entry_id, parse_log_event(raw))
        except (KeyError, ValueError, ValidationError, TypeError):
            # Ingest validates everything; a bad entry here was written around it.
            # It becomes a reject rather than a poison pill that stops billing.
            return ("bad", entry_id, {"raw": fields.get("data"), "ts": ts})

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> str:
        return self.last_id

    def close(self) -> None:
        self.r.close()


class RedisStreamSource(FixedPartitionedSource[tuple[Any, ...], str]):
    def __init__(self, url: str, keys: Keys, *, batch: int = 2000, poll_s: float = 0.02,
                 lag_ms: int = 2000) -> None:
        self.url, self.keys = url, keys
        self.batch, self.poll_s, self.lag_ms = batch, poll_s, lag_ms

    def list_parts(self) -> list[str]:
        return [self.keys.events]

    def build_part(self, step_id: str, for_part: str, resume_state: str | None
                   ) -> _StreamPartition:
        return _StreamPartition(self.url, self.keys, for_part, resume_state, self.batch,
                                self.poll_s, self.lag_ms)


# Views are written so that a replayed output (at-least-once recovery) changes nothing:
# a session view only moves to a higher version; an order view is keyed by output_id;
# a sharer's totals count each output_id once.
_VIEWS = """
local kind = ARGV[1]
if kind == 'usage' then
  local cur = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
  if tonumber(ARGV[2]) > cur then
    redis.call('HSET', KEYS[1], 'version', ARGV[2], 'data', ARGV[3])
  end
elseif kind == 'commission' then
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
  if redis.call('SADD', KEYS[2], ARGV[2]) == 1 then
    local field = ARGV[4] .. ':' .. ARGV[5]
    redis.call('HINCRBY', KEYS[3], field, ARGV[6])
    redis.call('HINCRBY', KEYS[3], field .. '_count', 1)
  end
end
return 1
"""


class _RedisWriter(StatelessSinkPartition[Output]):
    def __init__(self, url: str, keys: Keys) -> None:
        self.r = client(url)
        self.keys = keys
        self.views = self.r.register_script(_VIEWS)

    def write_batch(self, items: list[Output]) -> None:
        pipe = self.r.pipeline(transaction=False)
        keys = self.keys
        for out in items:
            data = json.dumps(out, separators=(",", ":"))
            kind = out["type"]
            pipe.xadd(keys.output_stream(kind), {"output_id": out["output_id"], "data": data})
            if kind == "usage":
                self.views(
                    keys=[keys.session_view(out["session_id"])],
                    args=["usage", out["version"], data],
                    client=pipe,
                )
            elif kind == "commission":
                field = "accrued" if out["kind"] == "accrual" else "reversed"
                self.views(
                    keys=[keys.order_view(out["order_id"]),
                          keys.sharer_applied(out["sharer_id"]),
                          keys.sharer_view(out["sharer_id"])],
                    args=["commission", out["output_id"], data, out["currency"], field,
                          out["commission_minor"]],
                    client=pipe,
                )
        pipe.execute()

    def close(self) -> None:
        self.r.close()


class RedisOutputSink(DynamicSink[Output]):
    def __init__(self, url: str, keys: Keys) -> None:
        self.url, self.keys = url, keys

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RedisWriter:
        return _RedisWriter(self.url, self.keys)


