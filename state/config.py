from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RuleSettings:
    """SPEC's settings table, the part that changes billing results."""

    attribution_window_ms: int = 604_800_000
    max_segment_ms: int = 600_000
    clock_skew_ms: int = 5_000
    idle_timeout_factor: int = 3
    late_grace_ms: int = 300_000
