"""The session view: each session's latest usage output, one owner for its layout,
write plan and read decoding.

Key layout (billing.keys): `view:session:<id>` is a hash of `started_ts`, `version` and
`data` (the usage output as JSON).

Write plan: the sink's script (flows.redis_sink) calls `apply_usage` (in `LUA`) for each
usage output, with `write_args`, and `write_usage` once at its end, which writes each
view once: the latest of the call's outputs for it, if it is later than the view's.
The view only moves to a later (started_ts, version),
so an output replayed by at-least-once recovery, or a late one of an older session
under the same id, never takes it back. It expires R and a margin after the
session's last output.

Read decoding: `decode`, for `GET /v1/sessions/{id}` and the segment answer.
"""

from __future__ import annotations

import json
from typing import Any

from billing.keys import Keys

LUA = """
local latest_usage = {}
local function later(started, version, than_started, than_version)
  return started > than_started or (started == than_started and version > than_version)
end
-- started_ts and version come as their decimal text, and are written as given.
local function apply_usage(view, started_text, version_text, data)
  local started, version = tonumber(started_text), tonumber(version_text)
  local best = latest_usage[view]
  if best == nil or later(started, version, best[1], best[2]) then
    latest_usage[view] = {started, version, started_text, version_text, data}
  end
end
local function write_usage()
  for view, best in pairs(latest_usage) do
    local cur = redis.call('HMGET', view, 'started_ts', 'version')
    if later(best[1], best[2], tonumber(cur[1] or '-1'), tonumber(cur[2] or '0')) then
      redis.call('HSET', view, 'started_ts', best[3], 'version', best[4], 'data', best[5])
    end
  end
end
"""


def write_args(keys: Keys, out: dict[str, Any]) -> list[str | int]:
    """The script's arguments for one usage output: view, started_ts, version."""
    return [keys.session_view(out["session_id"]), out["started_ts"], out["version"]]


def decode(data: str | bytes | None) -> dict[str, Any] | None:
    """The latest usage output, from the view's `data` field (None: no usage yet)."""
    return None if data is None else dict(json.loads(data))
