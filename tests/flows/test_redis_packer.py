"""The clients' command packer (billing.redis_runtime.HiredisPacker): the same bytes as
redis-py's hiredis serializer for every argument it takes, the same errors, and a
client that uses it against real Redis."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from redis.connection import HiredisRespSerializer
from redis.exceptions import DataError

from billing.redis_runtime import HiredisPacker, client

REDIS_PY: Any = HiredisRespSerializer()  # its stubs type every argument as a list
PACKER = HiredisPacker()

argument = st.one_of(
    st.text(),
    st.binary(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.binary().map(lambda b: memoryview(b)),
)
command = st.sampled_from(["SET", "EVALSHA", "CONFIG GET", b"XADD", b"CLIENT PAUSE", "x y z"])


@given(name=command, args=st.lists(argument, max_size=8))
def test_packs_what_redis_py_packs(name: str | bytes, args: list[Any]) -> None:
    assert PACKER.pack(name, *args) == REDIS_PY.pack(name, *args)


def test_a_bytearray_is_packed_as_its_bytes() -> None:
    assert PACKER.pack("SET", "k", bytearray(b"v")) == REDIS_PY.pack("SET", "k", b"v")


@pytest.mark.parametrize("bad", [None, [1], {"a": 1}])
def test_a_value_no_command_takes_is_a_data_error(bad: Any) -> None:
    with pytest.raises(DataError):
        REDIS_PY.pack("SET", "k", bad)
    with pytest.raises(DataError):
        PACKER.pack("SET", "k", bad)


def test_the_client_packs_with_it_against_real_redis(redis_url: str, prefix: str) -> None:
    conn = client(redis_url, patient=True)
    assert isinstance(conn.connection_pool.connection_kwargs["command_packer"], HiredisPacker)
    values: dict[str, str | int | bytes] = {
        "text": "héllo wörld ✓",
        "int": 2**62,
        "bytes": b"\x00\xffraw",
    }
    for name, value in values.items():
        conn.set(f"{prefix}{name}", value)
    pipe = conn.pipeline(transaction=False)
    pipe.incrby(f"{prefix}int", 1)
    pipe.get(f"{prefix}text")
    assert pipe.execute() == [2**62 + 1, "héllo wörld ✓"]
    assert "maxmemory-policy" in conn.execute_command("CONFIG GET", "maxmemory-policy")
    raw = redis.Redis.from_url(redis_url)  # bytes back, to see the bytes stored
    assert raw.get(f"{prefix}bytes") == b"\x00\xffraw"
    conn.delete(*(f"{prefix}{name}" for name in values))
    conn.close()
    raw.close()
