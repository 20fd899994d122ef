"""Atomic append of events to the input stream, with idempotency marks.

One Lua script per request does it all: it checks every event's idempotency mark
(and, for a session start, that its tariff is known), and only if none conflicts
does it XADD the events and then set the marks. A script runs atomically, so a
failed append leaves no mark and a retry is never lost, and a batch is written
whole or not at all.

`ts` is the stream entry id's millisecond part: Redis's clock, the same for every
API replica, and never going backwards along the stream, so the stream's order is
the log order SPEC defines.

Marks of ids that SPEC forgets after `retention_ms` (orders, refunds, shares,
sessions, segments) expire with it: the same id and body again within R is a
200 repeat; after R the id is new, at the API as in the engine. Rule and tariff
marks stand for the current version of a catalog entry and do not expire.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis

from billing import script_keys
from billing.script_keys import KeyRefs
from billing.stream_ids import ts_of

Mode = Literal["unique", "versioned", "none"]

# After the n events: a count of share funnels to bump, then per funnel the index
# of its (scan) event and billing.share_view.scan_args, plus the view's TTL in ARGV[3].
# KEYS: the stream, the counters, then every key the call touches; ARGV names a key
# by its index in KEYS (billing.script_keys), so a Redis Cluster can route the call.
_SCRIPT = (
    script_keys.LUA
    + """
local n, ttl, view_ttl = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local seen = {}
for i = 0, n - 1 do
  local b = 4 + i * 7
  local key, hash, mode, need = K(ARGV[b]), ARGV[b + 1], ARGV[b + 2], K(ARGV[b + 5])
  if need ~= '' and redis.call('EXISTS', need) == 0 and not seen[need] then
    return {'missing', tostring(i), need}
  end
  if mode == 'unique' then
    local cur = seen[key] or redis.call('GET', key)
    if cur and string.sub(cur, 1, #hash + 1) ~= hash .. '|' then
      return {'conflict', tostring(i), key}
    end
  end
  if mode ~= 'none' and not seen[key] then seen[key] = hash .. '|' end
end
local res = {'ok'}
local done = {}
local ids = {}
for i = 0, n - 1 do
  local b = 4 + i * 7
  local key, hash, mode, data, extra = K(ARGV[b]), ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
  local cur = false
  if mode ~= 'none' then cur = done[key] or redis.call('GET', key) end
  if cur and string.sub(cur, 1, #hash + 1) == hash .. '|' then
    res[#res + 1] = 'repeat|' .. cur
  else
    local id = redis.call('XADD', KEYS[1], '*', 'data', data)
    ids[i] = id
    redis.call('HINCRBY', KEYS[2], ARGV[b + 6], 1)
    local val = hash .. '|' .. id .. '|' .. extra
    if mode == 'unique' then
      redis.call('SET', key, val, 'PX', ttl)
      done[key] = val
    elseif mode == 'versioned' then
      redis.call('SET', key, val)
      done[key] = val
    end
    res[#res + 1] = 'new|' .. val
  end
end
local f = 4 + n * 7
for k = 0, tonumber(ARGV[f]) - 1 do
  local c = f + 1 + k * 7
  local id = ids[tonumber(ARGV[c])]
  if id then
    local view, active, share = K(ARGV[c + 1]), K(ARGV[c + 4]), ARGV[c + 5]
    redis.call('HINCRBY', view, 'scans', 1)
    redis.call('HSET', view, 'item_id', ARGV[c + 2], 'sharer_id', ARGV[c + 3])
    redis.call('PEXPIRE', view, view_ttl)
    redis.call('ZADD', active, string.match(id, '^(%d+)'), share)
    redis.call('ZREMRANGEBYRANK', active, 0, -tonumber(ARGV[c + 6]) - 1)
  end
end
return res
"""
)


# Replace what a mark keeps (`<body hash>|<stream id>|<extra>`), keeping its TTL.
_REPLACE_EXTRA = """
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local first = string.find(cur, '|', 1, true)
local second = string.find(cur, '|', first + 1, true)
redis.call('SET', KEYS[1], string.sub(cur, 1, second) .. ARGV[1], 'KEEPTTL')
return 1
"""


@dataclass(frozen=True)
class Append:
    event: dict[str, Any]  # SPEC fields without ts
    idem_key: str = ""
    mode: Mode = "none"
    extra: str = ""  # kept with the mark, to rebuild the first answer on a repeat
    requires: str = ""  # a key that must exist (a known tariff for a session start)
    # What identifies "the same body"; defaults to the event itself.
    identity: dict[str, Any] | None = None
    # A scan's share funnel to count it in once appended (billing.share_view.scan_args).
    funnel: tuple[str, ...] = ()

    @property
    def body_hash(self) -> str:
        canon = json.dumps(self.identity or self.event, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Appended:
    new: bool
    stream_id: str
    extra: str

    @property
    def ts(self) -> int:
        return ts_of(self.stream_id)


class Conflict(Exception):
    def __init__(self, index: int, key: str) -> None:
        super().__init__(f"event {index} conflicts with {key}")
        self.index = index


class Missing(Exception):
    def __init__(self, index: int, key: str) -> None:
        super().__init__(f"event {index} needs {key}")
        self.index = index
        self.key = key


class Appender:
    def __init__(
        self,
        client: aioredis.Redis,
        stream: str,
        counters: str,
        retention_ms: int,
        view_ttl_ms: int,
    ) -> None:
        self.client = client
        self.stream = stream
        self.counters = counters  # events appended per type, for /metrics
        self.retention_ms = retention_ms  # how long a unique id's mark lives
        self.view_ttl_ms = view_ttl_ms  # how long a share funnel outlives its last scan
        self._script = client.register_script(_SCRIPT)
        self._replace_extra = client.register_script(_REPLACE_EXTRA)

    async def mark_extra(self, key: str) -> str | None:
        """What the mark `key` keeps beside its body hash and stream id (None: no mark)."""
        mark: Any = await self.client.get(key)
        return None if mark is None else mark.split("|", 2)[2]

    async def replace_extra(self, key: str, extra: str) -> None:
        """Keep `extra` in the mark `key` instead (if it still exists), keeping its TTL."""
        await self._replace_extra(keys=[key], args=[extra])

    async def append(self, items: list[Append]) -> list[Appended]:
        ref = KeyRefs()
        ref(self.stream)  # KEYS[1]
        ref(self.counters)  # KEYS[2]
        argv: list[str] = [
            str(len(items)),
            str(max(1, self.retention_ms)),
            str(max(1, self.view_ttl_ms)),
        ]
        for item in items:
            data = json.dumps(item.event, separators=(",", ":"))
            argv += [
                ref(item.idem_key),
                item.body_hash,
                item.mode,
                data,
                item.extra,
                ref(item.requires),
                item.event["type"],
            ]
        funnels = [(i, item.funnel) for i, item in enumerate(items) if item.funnel]
        argv.append(str(len(funnels)))
        for i, funnel in funnels:
            view, item_id, sharer_id, active, *rest = funnel
            argv += [str(i), ref(view), item_id, sharer_id, ref(active), *rest]
        reply = await self._script(keys=ref.keys, args=argv)
        status = reply[0]
        if status == "conflict":
            raise Conflict(int(reply[1]), reply[2])
        if status == "missing":
            raise Missing(int(reply[1]), reply[2])
        out = []
        for entry in reply[1:]:
            state, _hash, stream_id, extra = entry.split("|", 3)
            out.append(Appended(new=state == "new", stream_id=stream_id, extra=extra))
        return out
