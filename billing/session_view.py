"""The session view: each session's latest usage output, one owner for its layout,
write plan and read decoding.

Key layout (billing.keys): `view:session:<id>` is a hash of `started_ts`, `version` and
`data` (the usage output as JSON).

Write plan: the sink's script (flows.redis_sink) calls `apply_usage` (in `LUA`) for each
usage output, with `write_args`. The view only moves to a later (started_ts, version),
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
local function apply_usage(view, started, version, data)
  local cur = redis.call('HMGET', view, 'started_ts', 'version')
  local cur_started, cur_version = tonumber(cur[1] or '-1'), tonumber(cur[2] or '0')
  if started > cur_started or (started == cur_started and version > cur_version) then
    redis.call('HSET', view, 'started_ts', started, 'version', version, 'data', data)
  end
end
"""


def write_args(keys: Keys, out: dict[str, Any]) -> list[str | int]:
    """The script's arguments for one usage output: view, started_ts, version."""
    return [keys.session_view(out["session_id"]), out["started_ts"], out["version"]]


def decode(data: str | bytes | None) -> dict[str, Any] | None:
    """The latest usage output, from the view's `data` field (None: no usage yet)."""
    return None if data is None else dict(json.loads(data))
