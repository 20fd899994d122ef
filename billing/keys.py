"""Redis key names. Only the four output streams are public (SPEC "Outputs").

On one Redis node the names are SPEC's (`billing:commissions`, under the key
prefix). On a Redis Cluster (`cluster=True`) a Lua script may touch keys of one hash
slot only, and each script here writes a public stream together with the views it
feeds (atomically: a replayed output must change nothing), so every key but the
facts carries one hash tag, `{<prefix>billing}`: a deployment's streams and views
live on one node, and a cluster holds many deployments. The sequencer's facts
(most of the memory: every id of the last R) carry a tag of their own, one of
FACT_SHARDS by a hash of the id, so they spread over the cluster's nodes.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

FACT_SHARDS = 64
# The webhook dispatchers' consumer group on each output stream. The sink trims an
# output stream no further than this group's oldest unfinished entry (flows.sink_script).
WEBHOOK_GROUP = "billing-webhooks"


@dataclass(frozen=True)
class Keys:
    prefix: str = ""
    cluster: bool = False
    # What every key but the facts starts with: the hash tag on a cluster. Made once:
    # key names are made per event (facts) and per output (views) on the hot path.
    base: str = field(init=False, repr=False, compare=False)
    # Each output type's public stream, asked once per output by the sink.
    _streams: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        base = f"{{{self.prefix}billing}}" if self.cluster else f"{self.prefix}billing"
        object.__setattr__(self, "base", base)
        streams = {
            "commission": self.commissions,
            "usage": self.usage,
            "payout": self.payouts,
            "reject": self.rejects,
        }
        object.__setattr__(self, "_streams", streams)

    @property
    def events(self) -> str:
        """The one input stream: its order is the log order, its ids give `ts`."""
        return f"{self.base}:in:events"

    @property
    def commissions(self) -> str:
        return f"{self.base}:commissions"

    @property
    def usage(self) -> str:
        return f"{self.base}:usage"

    @property
    def payouts(self) -> str:
        return f"{self.base}:payouts"

    @property
    def rejects(self) -> str:
        return f"{self.base}:rejects"

    @property
    def output_streams(self) -> tuple[str, ...]:
        return (self.commissions, self.usage, self.payouts, self.rejects)

    def output_stream(self, output_type: str) -> str:
        return self._streams[output_type]

    def idem(self, kind: str, ident: str) -> str:
        return f"{self.base}:idem:{kind}:{ident}"

    def session_view(self, session_id: str) -> str:
        return f"{self.base}:view:session:{session_id}"

    def order_view(self, order_id: str) -> str:
        return f"{self.base}:view:order:{order_id}"

    def sharer_view(self, sharer_id: str) -> str:
        return f"{self.base}:view:sharer:{sharer_id}"

    def share_view(self, share_id: str) -> str:
        """One share's funnel: scans, orders, commission (billing.share_view)."""
        return f"{self.base}:view:share:{share_id}"

    @property
    def active_shares(self) -> str:
        """The most recently scanned shares, capped (billing.share_view)."""
        return f"{self.base}:view:shares:active"

    def applied(self, output_id: str) -> str:
        """Where versions before the buckets of marks (below) marked an output counted
        in the sharer's balances, with a TTL; the sink still honours such a mark."""
        return f"{self.base}:view:applied:{output_id}"

    def marks(self, bucket: int) -> str:
        """The outputs counted in the sharers' balances whose `ts` is in one minute of
        log time (billing.sharer_view), swept by the log's time (flows.fact_sweeper)."""
        return f"{self.base}:view:marks:{bucket}"

    @property
    def marks_index(self) -> str:
        """The buckets of marks, by where each one's minute ends (at most R / minute)."""
        return f"{self.base}:view:marks:index"

    def statement(self, sharer_id: str, day: int) -> str:
        """One sharer's commission and payout outputs of one UTC day, by ts."""
        return f"{self.base}:view:statement:{sharer_id}:{day}"

    @property
    def output_sequence(self) -> str:
        """Where the sink keeps the id sequence shared by the three output streams."""
        return f"{self.base}:outputs:sequence"

    def fact(self, kind: str, ident: str) -> str:
        """The sequencer's record of the first use of an id (flows.facts_redis)."""
        if not self.cluster:
            return f"{self.base}:fact:{kind}:{ident}"
        shard = zlib.crc32(ident.encode()) % FACT_SHARDS
        return f"{{{self.prefix}billing:fact:{shard}}}:{kind}:{ident}"

    def wakeups(self, bucket: int, space: str) -> str:
        """Keys one sequencer key wakes in one time bucket (flows.facts_redis); `space`
        is that sequencer's key (state.sharding)."""
        return f"{self.base}:wake:{space}:{bucket}"

    def wakeups_index(self, space: str) -> str:
        """The time buckets that hold one sequencer's wake-ups (at most R / bucket)."""
        return f"{self.base}:wake:{space}:index"

    def snapshot_table(self, space: str, name: str) -> str:
        """Where one sequencer key keeps a table beside its snapshot (flows.snapshot_tables):
        `<this>:<blob>` for each blob, `<this>:blobs` the set of them."""
        return f"{self.base}:table:{space}:{name}"

    @property
    def facts_horizon(self) -> str:
        """The log's time no re-run of the commission sequencer starts before: facts
        last used more than R and the margin before it are swept (flows.fact_sweeper)."""
        return f"{self.base}:facts:horizon"

    def facts_by_slot(self, facts: Iterable[str]) -> list[list[str]]:
        """Fact keys in groups a script may take together: one group on one node; on
        a cluster, one per fact shard (a fact key starts with its shard's hash tag)."""
        if not self.cluster:
            names = list(facts)
            return [names] if names else []
        groups: dict[str, list[str]] = {}
        for name in facts:
            groups.setdefault(name.partition("}")[0], []).append(name)
        return list(groups.values())

    def fact_tags(self) -> list[str]:
        """The hash tag of each group of facts a script may take together (above): the
        deployment's on one node, each fact shard's on a cluster."""
        if not self.cluster:
            return [self.base]
        return [f"{{{self.prefix}billing:fact:{shard}}}" for shard in range(FACT_SHARDS)]

    def fact_tag(self, fact: str) -> str:
        """The tag of a fact key's group (`fact_tags`)."""
        return fact.partition("}")[0] + "}" if self.cluster else self.base

    def fact_bucket(self, tag: str, minute: int) -> str:
        """The facts of one group whose newest use is in one minute of log time
        (flows.facts_redis), swept whole by the log's time (flows.fact_sweeper)."""
        return f"{tag}:factidx:{minute}"

    def fact_index(self, tag: str) -> str:
        """One group's buckets of facts, by where each one's minute ends."""
        return f"{tag}:factidx:index"

    @property
    def facts_legacy_until(self) -> str:
        """Until when facts written before the buckets above may remain: the sweeper
        looks for them by SCAN until then, and -1 once none can (flows.fact_sweeper)."""
        return f"{self.base}:facts:legacy_until"

    def fact_pattern(self) -> str:
        """A SCAN pattern for every fact of this deployment (its prefix escaped)."""
        prefix = "".join("\\" + c if c in "*?[]\\" else c for c in self.prefix)
        if not self.cluster:
            return f"{prefix}billing:fact:*"
        return f"{{{prefix}billing:fact:*"

    @property
    def webhooks_retired(self) -> str:
        """Set by `billing webhooks --retire`: a dispatcher then makes no group again
        until an endpoint exists (webhooks.retire)."""
        return f"{self.base}:webhooks:retired"

    @property
    def rate_limits(self) -> str:
        """Prefix of the scan page's rate-limit counters (ingest_api.scan_guard)."""
        return f"{self.base}:ratelimit"

    def stats(self, name: str) -> str:
        return f"{self.base}:stats:{name}"

    @property
    def flows_position(self) -> str:
        """The last input entry id the live source has read."""
        return f"{self.base}:flows:position"

    @property
    def flows_heartbeat(self) -> str:
        return f"{self.base}:flows:heartbeat"
