from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class RuleSettings:
    """SPEC's settings table, the part that changes billing results.

    The logic objects hold these and pass them to the state on every call; no
    state object keeps a copy, so a snapshot never carries settings, and a
    restart with new values applies them to old and new state alike.
    """

    attribution_window_ms: int = 604_800_000
    max_segment_ms: int = 600_000
    clock_skew_ms: int = 5_000
    idle_timeout_factor: int = 3
    late_grace_ms: int = 300_000
    holding_period_ms: int = 2_592_000_000
    retention_ms: int = 3_024_000_000

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if type(value) is not int or value < 0:
                raise ValueError(f"{f.name} must be a non-negative integer, got {value!r}")
        if self.idle_timeout_factor < 1 or self.max_segment_ms < 1:
            raise ValueError("idle_timeout_factor and max_segment_ms must be at least 1")
        # SPEC "Settings": refused before any event is read.
        for name in ("attribution_window_ms", "holding_period_ms", "late_grace_ms"):
            if self.retention_ms < getattr(self, name):
                raise ValueError(
                    f"retention_ms ({self.retention_ms}) must be at least {name} "
                    f"({getattr(self, name)})"
                )

    def idle_timeout_ms(self, report_interval_ms: int) -> int:
        return self.idle_timeout_factor * report_interval_ms
