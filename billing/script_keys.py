"""The keys of one Lua script call, declared in KEYS.

A Redis Cluster routes a script call by its KEYS and refuses keys of another hash
slot, so every script here declares the keys it writes (billing.keys gives them
one hash tag on a cluster), and its ARGV names each key by its index in KEYS:
the argument layouts stay as they were, with an index where a key name was.
"""

from __future__ import annotations

# The Lua side: `K(ARGV[i])` is the key ARGV[i] names ('' stays '': no key).
LUA = """
local function K(ref) if ref == '' then return '' end return KEYS[tonumber(ref)] end
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
