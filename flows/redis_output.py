"""The live flows' sink: outputs written behind the dataflow, landed by each epoch's end.

A write is a Redis script call, and the worker used to wait for each one: about a
quarter of a catch-up's wall time was spent waiting on that socket (py-spy,
200k events). Here one thread per process makes the calls, in order, while the
worker computes the next batch (redis-py waits on the socket without the GIL).

At-least-once still holds: bytewax snapshots a `FixedPartitionedSink`'s partitions
at the end of each epoch that wrote to them, and commits the epoch only after
that. `snapshot` waits for every write sent so far, so whatever the recovery store
counts as done has landed in Redis; a write that fails stops the later ones and
raises in the worker (the supervisor restarts the cluster, which resumes from the
last committed epoch and writes the rest again, idempotently).

Each process has one partition, `p<process>`, and `part_fn` sends every item to
the partition of the process it is in: outputs never cross processes (a key's
outputs are written in the process that computed them, as the `DynamicSink`
before this did). With several workers in a process, one of them writes.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from billing.keys import Keys
from flows import stats
from flows.redis_sink import _RedisWriter
from flows.runtime import keep_thread_state
from state.outputs import Output

STEP_ID = "billing.output"  # the flow's output step (flows.dataflow), for recovery_gc
MAX_IN_FLIGHT = 4  # batches sent and not yet answered; the worker waits past this


def part_name(process_id: int) -> str:
    """Zero-padded, so that the partitions' sorted order is the processes' order."""
    return f"p{process_id:04d}"


class _WriteBehind(StatefulSinkPartition[list[Output], None]):
    def __init__(self, writer: _RedisWriter) -> None:
        keep_thread_state()
        self.writer = writer
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="redis-sink")
        self.pending: deque[Future[None]] = deque()
        self.failed = False

    def _write(self, outputs: list[Output]) -> None:
        if self.failed:  # never write past a lost batch: the restart writes both again
            raise RuntimeError("an earlier write to Redis failed")
        try:
            self.writer.write(outputs)
        except BaseException:
            self.failed = True
            raise

    def write_batch(self, values: list[list[Output]]) -> None:
        outputs = [out for batch in values for out in batch]
        if not outputs:
            return
        while len(self.pending) >= MAX_IN_FLIGHT or (self.pending and self.pending[0].done()):
            self.pending.popleft().result()  # raises here what the write raised
        self.pending.append(self.thread.submit(self._write, outputs))

    def drain(self) -> None:
        while self.pending:
            self.pending.popleft().result()

    def snapshot(self) -> None:
        self.drain()  # the epoch is committed only after this returns
        # This process's snapshot counts: a process without the source has no
        # heartbeat to publish them (flows.stats).
        pipe = self.writer.r.pipeline(transaction=False)
        stats.publish(pipe, self.writer.keys)
        if len(pipe):
            pipe.execute()

    def close(self) -> None:
        try:
            self.drain()
        finally:
            self.thread.shutdown(wait=True)
            self.writer.close()


class RedisOutputSink(FixedPartitionedSink[list[Output], None]):
    """`ttl_ms`: how long order and session views and the output streams' entries live
    (R and a margin, on Redis's clock; applied marks are swept by the log's time)."""

    def __init__(
        self, url: str, keys: Keys, ttl_ms: int, statement_ttl_ms: int, process_id: int
    ) -> None:
        self.url, self.keys = url, keys
        self.ttl_ms, self.statement_ttl_ms = ttl_ms, statement_ttl_ms
        self.process_id = process_id

    def list_parts(self) -> list[str]:
        return [part_name(self.process_id)]

    def part_fn(self, item_key: str) -> int:
        # An index into every process's partitions in order: this process's own.
        return self.process_id

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _WriteBehind:
        writer = _RedisWriter(self.url, self.keys, self.ttl_ms, self.statement_ttl_ms)
        return _WriteBehind(writer)
