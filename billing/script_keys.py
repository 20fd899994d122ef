"""The keys of one Lua script call, declared in KEYS.

A Redis Cluster routes a script call by its KEYS and refuses keys of another hash
slot, so every script here declares the keys it writes (billing.keys gives them
one hash tag on a cluster), and its ARGV names each key by its index in KEYS:
the argument layouts stay as they were, with an index where a key name was.
"""

from __future__ import annotations

# The Lua side: `K(ARGV[i])` is the key ARGV[i] names ('' stays '': no key), and
# helpers for tables of tables and for a command that takes many arguments.
LUA = """
local key_of_ref = {[''] = ''}  -- each ref's key, parsed once per call (strtod is dear)
local function K(ref)
  local key = key_of_ref[ref]
  if key == nil then key = KEYS[tonumber(ref)] key_of_ref[ref] = key end
  return key
end
-- The table kept under `key` in `tables`, made on first use.
local function slot_of(tables, key)
  local t = tables[key]
  if t == nil then t = {} tables[key] = t end
  return t
end
-- `cmd key a1 a2 ...` over `args` in calls of at most 1000 (unpack's stack is bounded).
local function call_in_chunks(cmd, key, args)
  for first = 1, #args, 1000 do
    redis.call(cmd, key, unpack(args, first, math.min(first + 999, #args)))
  end
end
"""


class KeyRefs:
    def __init__(self) -> None:
        self.keys: list[str] = []
        self._index: dict[str, str] = {}

    def __call__(self, key: str) -> str:
        """The reference to pass in ARGV for `key` ('' for no key)."""
        if not key:
            return ""
        ref = self._index.get(key)
        if ref is None:
            self.keys.append(key)
            ref = self._index[key] = str(len(self.keys))
        return ref
