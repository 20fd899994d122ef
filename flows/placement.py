"""Which worker bytewax 0.21.1 runs a key on, computed here rather than probed.

`stateful_batch` partitions its input with Rust's `DefaultHasher` (SipHash-1-3 with
both keys zero) over the `StateKey`, a `String`, whose `Hash` writes the key's bytes
and then one 0xff byte; the worker is that hash modulo the worker count
(bytewax `src/operators.rs` `stateful_batch`, `src/timely.rs` `PartitionFn`).
The source's one partition runs on worker 0 (measured).

This lets the design say where each sequencer key runs (README, "Where the work
runs") and a test pins it against a real bytewax run
(tests/flows/test_placement.py): a new bytewax that hashes otherwise fails there,
not silently in a benchmark.
"""

from __future__ import annotations

from functools import cache

_MASK = (1 << 64) - 1


def _rotl(x: int, bits: int) -> int:
    return ((x << bits) | (x >> (64 - bits))) & _MASK


def siphash13(data: bytes, k0: int = 0, k1: int = 0) -> int:
    """SipHash-1-3 of `data` (one compression round per word, three to finish),
    as Rust's std implements it."""
    v0 = k0 ^ 0x736F6D6570736575
    v1 = k1 ^ 0x646F72616E646F6D
    v2 = k0 ^ 0x6C7967656E657261
    v3 = k1 ^ 0x7465646279746573

    def sip_round() -> None:
        nonlocal v0, v1, v2, v3
        v0 = (v0 + v1) & _MASK
        v1 = _rotl(v1, 13) ^ v0
        v0 = _rotl(v0, 32)
        v2 = (v2 + v3) & _MASK
        v3 = _rotl(v3, 16) ^ v2
        v0 = (v0 + v3) & _MASK
        v3 = _rotl(v3, 21) ^ v0
        v2 = (v2 + v1) & _MASK
        v1 = _rotl(v1, 17) ^ v2
        v2 = _rotl(v2, 32)

    whole = len(data) - len(data) % 8
    for i in range(0, whole, 8):
        word = int.from_bytes(data[i : i + 8], "little")
        v3 ^= word
        sip_round()
        v0 ^= word
    last = ((len(data) & 0xFF) << 56) | int.from_bytes(data[whole:], "little")
    v3 ^= last
    sip_round()
    v0 ^= last
    v2 ^= 0xFF
    for _ in range(3):
        sip_round()
    return v0 ^ v1 ^ v2 ^ v3


@cache
def worker_of(key: str, workers: int) -> int:
    """The index of the worker (over the whole cluster) that holds `key`'s state."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    return siphash13(key.encode() + b"\xff") % workers


def process_of(key: str, workers_per_process: int, processes: int) -> int:
    """The process holding `key`: bytewax numbers workers process by process."""
    return worker_of(key, workers_per_process * processes) // workers_per_process
