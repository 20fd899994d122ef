"""The source's next read, sent while the worker computes the batch before it.

With `--processes 2` the source's worker waited on Redis for its `TIME` and
`XREAD` on every batch (3.2 s of a 25 s catch-up; Redis shares the two cores with
both processes and runs the sink's scripts, so a read queues). After a full batch,
when more is surely waiting, the partition sends the next pair on a connection of
its own at once, and reads the replies at its next call, as flows.deferred_writes
does for the fact store's writes. Measured with `bench_scale processes --events
600000` (2026-12-05), runs alternated with and without: `--counts 2` four pairs,
31,755-35,562 events/s against 29,174-32,396, faster in every pair (+9% on the
mean; the machine 184% busy against 177%); `--counts 1` three pairs, 26,542-28,987
against 24,273-27,621, faster in two.

Nothing about what is read changes: Redis runs `TIME` before the `XREAD` (one
connection, in order), so the clock still comes from before the read, and the
watermark made from it never passes an entry appended after. A read-ahead from a
position the partition has since left, or one whose connection failed, is dropped,
and the partition reads synchronously as before (through the patient client, which
retries); both commands only read, so dropping or repeating one changes nothing.
"""

from __future__ import annotations

from typing import Any

import redis

from billing.redis_runtime import own_connection, time_ms

Entries = list[tuple[str, dict[str, str]]]


def entries_of(reply: Any) -> Entries:
    """The entries of an `XREAD` reply for one stream (redis-py's parsed form)."""
    return reply[0][1] if reply else []


class StreamReadAhead:
    def __init__(self, conn: redis.Redis, stream: str, count: int) -> None:
        # `parse_response` reads one reply and applies redis-py's parsing for the
        # command, as the client's own call would (it is untyped there).
        self.r: Any = conn
        self.stream, self.count = stream, count
        self._conn = own_connection(conn)
        self._from: str | None = None  # the position the read in flight starts after

    def send(self, after: str) -> None:
        """Ask for Redis's clock, then up to `count` entries after `after`."""
        self.drop()
        commands = [("TIME",), ("XREAD", "COUNT", self.count, "STREAMS", self.stream, after)]
        try:
            self._conn.send_packed_command(self._conn.pack_commands(commands))
        except (redis.ConnectionError, redis.TimeoutError):
            self._conn.disconnect()
            return
        self._from = after

    def take(self, after: str) -> tuple[int, Entries] | None:
        """The clock (ms) and the entries of the read sent from `after`, or None when
        there is none to take: the caller then reads for itself."""
        if self._from is None:
            return None
        if self._from != after:
            self.drop()
            return None
        self._from = None
        try:
            clock = time_ms(self.r.parse_response(self._conn, "TIME"))
            reply: Any = self.r.parse_response(self._conn, "XREAD")
        except redis.RedisError:
            # Whatever the reason, the synchronous read that follows meets it again
            # and retries or raises as it always did.
            self._conn.disconnect()
            return None
        return clock, entries_of(reply)

    def drop(self) -> None:
        """Forget a read in flight: its replies are left unread on the connection, so
        the connection goes."""
        if self._from is not None:
            self._conn.disconnect()
            self._from = None

    def close(self) -> None:
        self._from = None
        self._conn.disconnect()
