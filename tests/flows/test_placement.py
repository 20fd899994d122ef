"""Where bytewax runs each key and the source (flows.placement), against real runs.

Not a billing rule: where the serial work runs. bytewax 0.21.1 puts the one source
partition on the first worker and a key on the worker its hash names; the commission
sequencer's name is chosen to land on the other one at 2 workers, so that with 2
processes one reads and routes the log while the other sequences commissions
(README, Benchmarks). A new bytewax that hashes otherwise fails here: then pick new
names, or drop what relies on them."""

from __future__ import annotations

import threading
from collections import defaultdict

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.operators import StatefulBatchLogic
from bytewax.testing import TestingSink

from flows.placement import process_of, siphash13, worker_of
from flows.runtime import run_in_process
from state.sharding import ALL_KEYS, COMMISSIONS, SHARD_KEYS

KEYS = [*ALL_KEYS, "log", "", "x" * 7, "y" * 8, "z" * 9, "sharer:u1", "line:1.o7:0"] + [
    f"k{n}" for n in range(40)
]


def _run(workers: int) -> tuple[str, dict[str, str]]:
    """(the source's thread, each key's thread) in one run at `workers` workers."""
    seen: dict[str, str] = {}

    class Where(StatefulBatchLogic):
        def __init__(self, resume):
            pass

        def on_batch(self, values):
            return [threading.current_thread().name], False

        def snapshot(self):
            return None

    class Part(StatefulSourcePartition):
        def __init__(self):
            self.done = False
            seen["source"] = threading.current_thread().name

        def next_batch(self):
            if self.done:
                raise StopIteration()
            self.done = True
            return [(key, 1) for key in KEYS]

        def snapshot(self):
            return None

    class Source(FixedPartitionedSource):
        def list_parts(self):
            return ["billing:in:events"]

        def build_part(self, step_id, for_part, resume_state):
            return Part()

    out: list = []
    flow = Dataflow("placement")
    placed = op.stateful_batch("where", op.input("in", flow, Source()), Where)
    op.output("out", placed, TestingSink(out))
    run_in_process(flow, workers)
    return seen["source"], dict(out)


@pytest.mark.parametrize("workers", [2, 4])
def test_the_computed_worker_is_where_bytewax_runs_the_key(workers: int):
    # Threads are not named by worker index, so check that the computed workers and
    # the threads seen are the same partition of the keys, one to one.
    source, thread_of = _run(workers)
    workers_by_thread: dict[str, set[int]] = defaultdict(set)
    for key in KEYS:
        workers_by_thread[thread_of[key]].add(worker_of(key, workers))
    assert all(len(found) == 1 for found in workers_by_thread.values()), workers_by_thread
    assert len(workers_by_thread) == len({min(w) for w in workers_by_thread.values()})
    # The source runs on worker 0: the thread of the keys computed to be there.
    assert workers_by_thread[source] == {0}


def test_the_commission_sequencer_runs_apart_from_the_source_at_two_workers():
    assert worker_of(COMMISSIONS, 2) == 1
    source, thread_of = _run(2)
    assert thread_of[COMMISSIONS] != source


def test_no_session_shard_shares_the_commission_sequencers_worker():
    # The commission sequencer is the serial part (state.sharding, "Where the
    # shards run"): at 2 workers every shard is with the source, at 4 they split
    # evenly over workers 0 and 2.
    assert worker_of(COMMISSIONS, 4) == 1
    assert {worker_of(k, 2) for k in SHARD_KEYS} == {0}
    at_four = [worker_of(k, 4) for k in SHARD_KEYS]
    assert sorted(at_four) == [0, 0, 0, 0, 2, 2, 2, 2]


def test_processes_number_their_workers_in_turn():
    for key in KEYS:
        assert process_of(key, 1, 2) == worker_of(key, 2)
        assert process_of(key, 2, 2) == worker_of(key, 4) // 2


def test_the_hash_is_siphash_1_3():
    # Fixed values, computed once, so a refactor of the hash cannot drift: the
    # runs above are what tie it to bytewax.
    assert siphash13(b"") == 0xD1FBA762150C532C
    assert worker_of("log", 2) == 0
    with pytest.raises(ValueError):
        worker_of("log", 0)
