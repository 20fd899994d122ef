"""Writes sent to Redis now and answered later, so the worker computes meanwhile.

The sequencer's fact store writes what a batch changed after the batch (one
EVAL of thousands of SETs and the wake-ups' ZADDs). Waiting for Redis to run them
was 10% of the commission sequencer's time with `--processes 2`, on the serial
part's critical path. So `send` writes them on a connection of their own and
returns; `settle` reads the replies, and the fact store calls it before its next
read (the MGET of the next batch, on another connection, must see these writes)
and before the sequencer's snapshot (what the snapshot's epoch wrote is stored
before bytewax commits the epoch, as when the writes were answered at once).

Every command sent here must be idempotent (a SET of a whole value, a ZADD, a
PEXPIRE): when the connection fails before the replies are read, nothing says which
ran, so `settle` sends them all again through the patient client, which retries.
An error reply (a script error, a wrong type) raises, as a pipeline would.
"""

from __future__ import annotations

from typing import Any

import redis

from billing.redis_runtime import own_connection

Command = tuple[Any, ...]


def run_now(conn: redis.Redis, commands: list[Command]) -> None:
    """`commands` in one pipeline, answered before this returns."""
    if not commands:
        return
    pipe: Any = conn.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    pipe.execute()


class DeferredWrites:
    def __init__(self, conn: redis.Redis) -> None:
        self.r = conn
        self._conn = own_connection(conn)
        self._unanswered: list[Command] = []

    def send(self, commands: list[Command]) -> None:
        self.settle()
        if not commands:
            return
        self._unanswered = commands
        try:
            self._conn.send_packed_command(self._conn.pack_commands(commands))
        except (redis.ConnectionError, redis.TimeoutError):
            self._resend()

    def settle(self) -> None:
        """Wait until everything sent is stored."""
        if not self._unanswered:
            return
        try:
            for _ in self._unanswered:
                self._conn.read_response()
        except (redis.ConnectionError, redis.TimeoutError):
            self._resend()
        except redis.ResponseError:
            # The rest of the replies are still on the connection: start it afresh.
            self._conn.disconnect()
            self._unanswered = []
            raise
        self._unanswered = []

    def _resend(self) -> None:
        self._conn.disconnect()
        run_now(self.r, self._unanswered)
        self._unanswered = []

    def close(self) -> None:
        self.settle()
        self._conn.disconnect()
