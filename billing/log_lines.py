"""SPEC's log lines: the events as the log stores them, `ts` included, for replay
files and stream entries, and the helpers that read entries the engine may not trust.

Log lines ignore unknown fields, as SPEC says; the request bodies they extend
(billing/events.py) forbid them.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)

from billing.events import (
    INT64_MAX,
    MAX_INTERVAL_MS,
    CommissionRuleBody,
    Id,
    OrderBody,
    PayoutBody,
    RefundBody,
    SegmentBody,
    TariffBody,
    TimeMs,
    to_log_dict,
)


# Log lines (replay files): every SPEC field, `ts` included, unknown fields ignored.
class LogModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    ts: TimeMs
    # Set by `billing export`: the live stream id, kept so replayed outputs keep live ids.
    log_id: Annotated[str, StringConstraints(max_length=64)] | None = None


class LogCommissionRule(LogModel, CommissionRuleBody):
    model_config = ConfigDict(extra="ignore", frozen=True)
    type: Literal["commission_rule"]
    rule_id: Id


class LogTariff(LogModel, TariffBody):
    model_config = ConfigDict(extra="ignore", frozen=True)
    type: Literal["tariff"]
    tariff_id: Id


class LogShare(LogModel):
    type: Literal["share"]
    share_id: Id
    item_id: Id
    sharer_id: Id
    activity_url: str
    expires_at: TimeMs | None = None


class LogScan(LogModel):
    type: Literal["scan"]
    scan_id: Id
    share_id: Id
    item_id: Id
    sharer_id: Id
    scanner_id: Id | None


class LogOrder(LogModel, OrderBody):
    model_config = ConfigDict(extra="ignore", frozen=True)
    type: Literal["order"]


class LogRefund(LogModel, RefundBody):
    model_config = ConfigDict(extra="ignore", frozen=True)
    type: Literal["refund"]


class LogSessionStart(LogModel):
    type: Literal["session_start"]
    session_id: Id
    user_id: Id
    service_id: Id
    tariff_id: Id
    report_interval_ms: Annotated[StrictInt, Field(gt=0, le=MAX_INTERVAL_MS)]


class LogSegment(LogModel, SegmentBody):
    model_config = ConfigDict(extra="ignore", frozen=True)
    type: Literal["segment"]
    session_id: Id
    end: StrictBool


class LogPayout(LogModel, PayoutBody):
    model_config = ConfigDict(extra="ignore", frozen=True)
    type: Literal["payout"]
    payout_id: Id


LogEvent = Annotated[
    LogPayout
    | LogCommissionRule
    | LogTariff
    | LogShare
    | LogScan
    | LogOrder
    | LogRefund
    | LogSessionStart
    | LogSegment,
    Field(discriminator="type"),
]
LOG_EVENT = TypeAdapter(LogEvent)


def parse_log_event(raw: dict[str, Any]) -> dict[str, Any]:
    """Validate one decoded log event; raises pydantic.ValidationError."""
    event = to_log_dict(LOG_EVENT.validate_python(raw))
    event.pop("log_id", None)
    return event


def entry_object(data: str) -> dict[str, Any]:
    """A stream entry's `data` as an object, whatever was written there: a JSON
    object as it is, anything else (written around the API) as `{"raw": data}`."""
    try:
        decoded = json.loads(data)
    except ValueError:
        decoded = None
    return decoded if isinstance(decoded, dict) else {"raw": data}


def int64_safe(value: Any) -> Any:
    """A decoded JSON value with every integer outside int64 turned into its text,
    so that a rejected entry can still be written out as the reject's `event`."""
    if isinstance(value, dict):
        return {k: int64_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [int64_safe(v) for v in value]
    if type(value) is int and not -(2**63) <= value <= INT64_MAX:
        return str(value)
    return value


def validation_summary(exc: ValidationError, most: int = 3) -> str:
    """A short, bounded account of why an entry is not a valid event."""
    parts = []
    for err in exc.errors()[:most]:
        where = ".".join(str(p) for p in err["loc"]) or "event"
        parts.append(f"{where}: {err['msg']}")
    more = exc.error_count() - most
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def parse_log_line(line: bytes | str) -> tuple[str | None, dict[str, Any]]:
    """Validate one JSON log line (parsed in Rust, which is what makes replay fast).

    Returns (log_id or None, event). Raises pydantic.ValidationError, whose first
    error has type `json_invalid` for text that is not JSON.
    """
    event = to_log_dict(LOG_EVENT.validate_json(line))
    return event.pop("log_id", None), event
