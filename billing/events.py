"""Pydantic models of SPEC's events: request bodies for the API, log lines for replay.

Integers are strict (a float or a numeric string is an error, not a conversion),
so no float can reach a bill. Request bodies forbid unknown fields so that a
client sending `ts` learns it is the server's; log lines ignore unknown fields,
as SPEC says.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    TypeAdapter,
    model_validator,
)

Id = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
NonNegInt = Annotated[StrictInt, Field(ge=0)]
PosInt = Annotated[StrictInt, Field(gt=0)]
TimeMs = Annotated[StrictInt, Field(ge=0, le=2**53)]


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http or https URL")
    return value


HttpUrl = Annotated[str, StringConstraints(max_length=2048), AfterValidator(_http_url)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CommissionRuleBody(Body):
    kind: Literal["percent", "flat"]
    bps: Annotated[StrictInt, Field(ge=0, le=10_000)] | None = None
    amount_minor: NonNegInt | None = None
    currency: Currency | None = None
    cap_minor: NonNegInt | None = None
    sharer_id: Id | None = None
    item_id: Id | None = None
    active: StrictBool = True

    @model_validator(mode="after")
    def _kind_fields(self) -> CommissionRuleBody:
        if self.kind == "percent" and self.bps is None:
            raise ValueError("a percent rule needs bps")
        if self.kind == "flat" and (self.amount_minor is None or self.currency is None):
            raise ValueError("a flat rule needs amount_minor and currency")
        return self


class TariffBody(Body):
    currency: Currency
    unit_ms: PosInt
    price_minor: NonNegInt
    free_ms: NonNegInt = 0
    min_charge_minor: NonNegInt = 0


class OrderLine(Body):
    item_id: Id
    quantity: Annotated[StrictInt, Field(ge=1, le=1_000_000)]
    unit_price_minor: NonNegInt


class OrderBody(Body):
    order_id: Id
    buyer_id: Id
    currency: Currency
    lines: Annotated[list[OrderLine], Field(min_length=1, max_length=1000)]
    scan_id: Id | None = None

    @model_validator(mode="after")
    def _distinct_items(self) -> OrderBody:
        items = [line.item_id for line in self.lines]
        if len(set(items)) != len(items):
            raise ValueError("order lines must have distinct item_id values")
        return self


class RefundLine(Body):
    item_id: Id
    quantity: Annotated[StrictInt, Field(ge=1, le=1_000_000)]


class RefundBody(Body):
    refund_id: Id
    order_id: Id
    lines: Annotated[list[RefundLine], Field(min_length=1, max_length=1000)] | None = None


class SessionBody(Body):
    user_id: Id
    service_id: Id
    tariff_id: Id
    session_id: Id | None = None


class SegmentBody(Body):
    seq: NonNegInt
    start_ms: TimeMs
    end_ms: TimeMs
    end: StrictBool = False


class ShareBody(Body):
    item_id: Id
    sharer_id: Id
    activity_url: HttpUrl
    expires_at: TimeMs | None = None
    share_id: Id | None = None


class ScanBody(Body):
    token: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    scanner_id: Id | None = None


# Batch items: the body plus `type`, and the ids that single endpoints take from the path.
class BatchCommissionRule(CommissionRuleBody):
    type: Literal["commission_rule"]
    rule_id: Id


class BatchTariff(TariffBody):
    type: Literal["tariff"]
    tariff_id: Id


class BatchOrder(OrderBody):
    type: Literal["order"]


class BatchRefund(RefundBody):
    type: Literal["refund"]


class BatchSessionStart(SessionBody):
    type: Literal["session_start"]
    session_id: Id


class BatchSegment(SegmentBody):
    type: Literal["segment"]
    session_id: Id


BatchEvent = Annotated[
    BatchCommissionRule | BatchTariff | BatchOrder | BatchRefund | BatchSessionStart | BatchSegment,
    Field(discriminator="type"),
]


class BatchBody(Body):
    events: Annotated[list[BatchEvent], Field(min_length=1)]


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
    report_interval_ms: PosInt


class LogSegment(LogModel, SegmentBody):
    model_config = ConfigDict(extra="ignore", frozen=True)
    type: Literal["segment"]
    session_id: Id
    end: StrictBool


LogEvent = Annotated[
    LogCommissionRule
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

# Optional fields whose absence and null mean the same; dropped from the log.
_KEEP_NULL = {"scanner_id"}


def to_log_dict(model: BaseModel) -> dict[str, Any]:
    """The event as the log stores it: no None-valued optional fields."""
    data = model.model_dump()
    return {k: v for k, v in data.items() if v is not None or k in _KEEP_NULL}


def parse_log_event(raw: dict[str, Any]) -> dict[str, Any]:
    """Validate one decoded log event; raises pydantic.ValidationError."""
    event = to_log_dict(LOG_EVENT.validate_python(raw))
    event.pop("log_id", None)
    return event


def parse_log_line(line: bytes | str) -> tuple[str | None, dict[str, Any]]:
    """Validate one JSON log line (parsed in Rust, which is what makes replay fast).

    Returns (log_id or None, event). Raises pydantic.ValidationError, whose first
    error has type `json_invalid` for text that is not JSON.
    """
    event = to_log_dict(LOG_EVENT.validate_json(line))
    return event.pop("log_id", None), event
