"""Live output: the public output streams and the views, one script call per chunk
of a batch (`OUTPUTS_PER_CALL`). The script and what it guarantees (replays change
nothing, nothing half-written, each key written once per call): flows.sink_script."""

from __future__ import annotations

from typing import Any

from billing import order_view, session_view, share_view, sharer_view
from billing.keys import Keys
from billing.redis_runtime import client
from billing.script_keys import KeyRefs
from billing.settings import Settings
from flows.encoding import encode, unwritable
from flows.sink_script import WRITE
from state.outputs import Output

# The writer's defaults (tests and benches build one directly) are the settings'
# defaults: R and the facts margin, and the statements' retention.
_FIELDS = Settings.model_fields
DEFAULT_TTL_MS: int = _FIELDS["retention_ms"].default + _FIELDS["facts_ttl_margin_ms"].default
DEFAULT_STATEMENT_TTL_MS: int = _FIELDS["statement_retention_ms"].default


# Outputs per script call. Redis runs a script alone, so every other client's
# command waits for it: the workers' reads on the critical path (the source's XREAD,
# the fact store's MGET) queued behind sink calls of a whole batch, about 1,700
# outputs and 17 ms each in a catch-up. Calls of 256 hold Redis for 2 to 3 ms; the
# fixed cost of a call (its clock, the sequence, the counters) is small beside that.
# Measured with `bench_scale processes` (2026-12-05), four pairs run alternately:
# --processes 2 at 25,100-27,900 events/s against 24,300-26,100 for whole batches,
# faster in every pair; one process neither faster nor slower (drift is ~12%).
OUTPUTS_PER_CALL = 256


class _RedisWriter:
    """Writes outputs with flows.sink_script (flows.redis_output runs it behind the
    dataflow; tests and benchmarks call `write` directly)."""

    def __init__(
        self,
        url: str,
        keys: Keys,
        ttl_ms: int = DEFAULT_TTL_MS,
        statement_ttl_ms: int = DEFAULT_STATEMENT_TTL_MS,
        outputs_per_call: int = OUTPUTS_PER_CALL,
    ) -> None:
        if outputs_per_call < 1:
            raise ValueError("outputs_per_call must be at least 1")
        self.outputs_per_call = outputs_per_call
        self.r = client(url, patient=True, cluster=keys.cluster)
        self.keys = keys
        self.ttl_ms, self.statement_ttl_ms = ttl_ms, statement_ttl_ms
        self._script = self.r.register_script(WRITE)

    def write(self, outputs: list[Output]) -> None:
        """Append `outputs` and apply them to the views, in order, in script calls of
        at most `outputs_per_call` outputs."""
        n = self.outputs_per_call
        for first in range(0, len(outputs), n):
            self._call(outputs[first : first + n])

    def _call(self, outputs: list[Output]) -> None:
        while outputs:
            keys, args = self._args(outputs)
            answer: Any = self._script(keys=keys, args=args)
            if answer[0] == "ok":
                return
            # Nothing was written: stand a reject in for the output named, and retry.
            bad = answer[1]
            outputs = [
                unwritable(o, "the sharer's balance would pass 2^63-1")
                if o["output_id"] == bad
                else o
                for o in outputs
            ]

    def _args(self, outputs: list[Output]) -> tuple[list[str], list[str | int]]:
        keys, ref = self.keys, KeyRefs()
        args: list[str | int] = [
            ref(keys.stats("outputs")),
            ref(keys.stats("rejects")),
            ref(keys.output_sequence),
            self.ttl_ms,
            ref(keys.marks_index),
        ]
        for original in outputs:
            out, data = encode(original)
            kind = out["type"]
            args += [kind, ref(keys.output_stream(kind)), out["output_id"], data.decode()]
            if kind == "usage":
                view, started_ts, version = session_view.write_args(keys, out)
                args += [ref(str(view)), started_ts, version]
            elif kind == "reject":
                args.append(out["reason"])
            else:
                args.append(ref(order_view.write_arg(keys, out)))
                head, deltas = sharer_view.write_args(keys, out, self.statement_ttl_ms)
                bucket, legacy, statement, *rest = head
                funnel = share_view.commission_deltas(keys, out)
                expiring = sorted({view for view, _field, _delta in funnel})
                args += [ref(str(bucket)), ref(str(legacy)), ref(str(statement)), *rest]
                args.append(len(deltas) + len(funnel))
                for view, field, delta in deltas + funnel:
                    args += [ref(view), field, delta]
                args += [len(expiring), *map(ref, expiring)]
        return ref.keys, args

    def close(self) -> None:
        self.r.close()
