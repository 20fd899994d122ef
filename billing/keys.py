"""Redis key names. Only the four output streams are public (SPEC "Outputs")."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str = ""

    @property
    def events(self) -> str:
        """The one input stream: its order is the log order, its ids give `ts`."""
        return f"{self.prefix}billing:in:events"

    @property
    def commissions(self) -> str:
        return f"{self.prefix}billing:commissions"

    @property
    def usage(self) -> str:
        return f"{self.prefix}billing:usage"

    @property
    def payouts(self) -> str:
        return f"{self.prefix}billing:payouts"

    @property
    def rejects(self) -> str:
        return f"{self.prefix}billing:rejects"

    @property
    def output_streams(self) -> tuple[str, ...]:
        return (self.commissions, self.usage, self.payouts, self.rejects)

    def output_stream(self, output_type: str) -> str:
        return {
            "commission": self.commissions,
            "usage": self.usage,
            "payout": self.payouts,
            "reject": self.rejects,
        }[output_type]

    def idem(self, kind: str, ident: str) -> str:
        return f"{self.prefix}billing:idem:{kind}:{ident}"

    def session_view(self, session_id: str) -> str:
        return f"{self.prefix}billing:view:session:{session_id}"

    def order_view(self, order_id: str) -> str:
        return f"{self.prefix}billing:view:order:{order_id}"

    def sharer_view(self, sharer_id: str) -> str:
        return f"{self.prefix}billing:view:sharer:{sharer_id}"

    def share_view(self, share_id: str) -> str:
        """One share's funnel: scans, orders, commission (billing.share_view)."""
        return f"{self.prefix}billing:view:share:{share_id}"

    @property
    def active_shares(self) -> str:
        """The most recently scanned shares, capped (billing.share_view)."""
        return f"{self.prefix}billing:view:shares:active"

    def applied(self, output_id: str) -> str:
        """Set once an output has been counted in the sharer's balances (expires)."""
        return f"{self.prefix}billing:view:applied:{output_id}"

    def statement(self, sharer_id: str, day: int) -> str:
        """One sharer's commission and payout outputs of one UTC day, by ts."""
        return f"{self.prefix}billing:view:statement:{sharer_id}:{day}"

    @property
    def output_sequence(self) -> str:
        """Where the sink keeps the id sequence shared by the three output streams."""
        return f"{self.prefix}billing:outputs:sequence"

    def fact(self, kind: str, ident: str) -> str:
        """The sequencer's record of the first use of an id (flows.facts_redis)."""
        return f"{self.prefix}billing:fact:{kind}:{ident}"

    def wakeups(self, bucket: int) -> str:
        """Sessions to wake in one time bucket (flows.facts_redis)."""
        return f"{self.prefix}billing:wake:{bucket}"

    @property
    def wakeups_index(self) -> str:
        """The time buckets that hold wake-ups (at most R / bucket of them)."""
        return f"{self.prefix}billing:wake:index"

    @property
    def rate_limits(self) -> str:
        """Prefix of the scan page's rate-limit counters (ingest_api.scan_guard)."""
        return f"{self.prefix}billing:ratelimit"

    def stats(self, name: str) -> str:
        return f"{self.prefix}billing:stats:{name}"

    @property
    def flows_position(self) -> str:
        """The last input entry id the live source has read."""
        return f"{self.prefix}billing:flows:position"

    @property
    def flows_heartbeat(self) -> str:
        return f"{self.prefix}billing:flows:heartbeat"
