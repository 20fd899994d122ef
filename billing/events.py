"""Pydantic models of SPEC's events as the API takes them, and the bounds on their values.

The log-line models (replay files, stream entries) are in billing/log_lines.py.

Integers are strict (a float or a numeric string is an error, not a conversion),
so no float can reach a bill. Request bodies forbid unknown fields so that a
client sending `ts` learns it is the server's; log lines ignore unknown fields,
as SPEC says.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    model_validator,
)

# Bounds (README "Input bounds"): chosen so that every value the rules form stays
# within int64, the widest integer orjson writes and Redis's HINCRBY takes:
#   base = quantity x unit_price <= MAX_BASE_MINOR, and base x bps <= 10^18;
#   a flat commission = amount x quantity <= MAX_FLAT_MINOR x MAX_QUANTITY = MAX_BASE_MINOR;
#   a fee = ceil(billed / unit_ms) x price <= INT64_MAX (checked per tariff, as
#   billed time is at most MAX_TIME_MS).
INT64_MAX = 2**63 - 1
MAX_TIME_MS = 2**47  # year 6429: far past any real timestamp, and JS-safe
MAX_QUANTITY = 1_000_000
MAX_BASE_MINOR = 10**14
MAX_FLAT_MINOR = MAX_BASE_MINOR // MAX_QUANTITY
MAX_SEQ = 2**53 - 1
MAX_INTERVAL_MS = 86_400_000

Id = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Money = Annotated[StrictInt, Field(ge=0, le=MAX_BASE_MINOR)]
TimeMs = Annotated[StrictInt, Field(ge=0, le=MAX_TIME_MS)]
Quantity = Annotated[StrictInt, Field(ge=1, le=MAX_QUANTITY)]


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
    amount_minor: Annotated[StrictInt, Field(ge=0, le=MAX_FLAT_MINOR)] | None = None
    currency: Currency | None = None
    cap_minor: Money | None = None
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
    """A tariff version. Besides each field's bounds, `price_minor x ceil(2^47 / unit_ms)`
    must be at most 2^63-1, so that no fee can pass int64 (422 otherwise)."""

    currency: Currency
    unit_ms: Annotated[StrictInt, Field(gt=0, le=MAX_TIME_MS)]
    price_minor: Money
    free_ms: TimeMs = 0
    min_charge_minor: Money = 0

    @model_validator(mode="after")
    def _fee_fits(self) -> TariffBody:
        # The largest fee this tariff can bill: every ms up to MAX_TIME_MS covered.
        if self.price_minor * -(-MAX_TIME_MS // self.unit_ms) > INT64_MAX:
            raise ValueError(
                f"price_minor / unit_ms is too high: a fee could pass 2^63-1 "
                f"(at most {INT64_MAX // -(-MAX_TIME_MS // self.unit_ms)} for this unit_ms)"
            )
        return self


class OrderLine(Body):
    """One order line. Besides each field's bounds, `quantity x unit_price_minor` must be
    at most 10^14 (422 otherwise), so every commission amount stays within int64."""

    item_id: Id
    quantity: Quantity
    unit_price_minor: Money

    @model_validator(mode="after")
    def _base_fits(self) -> OrderLine:
        if self.quantity * self.unit_price_minor > MAX_BASE_MINOR:
            raise ValueError(f"quantity x unit_price_minor must be at most {MAX_BASE_MINOR}")
        return self


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
    quantity: Quantity


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
    seq: Annotated[StrictInt, Field(ge=0, le=MAX_SEQ)]
    start_ms: TimeMs
    end_ms: TimeMs
    end: StrictBool = False


class ShareBody(Body):
    item_id: Id
    sharer_id: Id
    activity_url: HttpUrl
    expires_at: TimeMs | None = None
    share_id: Id | None = None


class PayoutBody(Body):
    sharer_id: Id
    currency: Currency
    payout_id: Id | None = None


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


class BatchPayout(PayoutBody):
    type: Literal["payout"]
    payout_id: Id


BatchEvent = Annotated[
    BatchCommissionRule
    | BatchTariff
    | BatchOrder
    | BatchRefund
    | BatchSessionStart
    | BatchSegment
    | BatchPayout,
    Field(discriminator="type"),
]


class BatchBody(Body):
    events: Annotated[list[BatchEvent], Field(min_length=1)]


# Optional fields whose absence and null mean the same; dropped from the log.
_KEEP_NULL = {"scanner_id"}


# Per model class: (fields that may hold a list of models, kept nulls).
_SHAPE_BY_CLASS: dict[type, tuple[tuple[str, ...], tuple[str, ...]]] = {}


def to_log_dict(model: BaseModel) -> dict[str, Any]:
    """The event as the log stores it: no None-valued optional fields.

    The same as `model.model_dump(exclude_none=True)` plus the kept nulls, read
    straight from the validated fields: these models hold only str, int, bool,
    None and lists of models, so there is nothing to convert, and the dump's
    serializer cost 1.5 us per event, a third of a log line's parse
    (tests/unit/test_log_dict.py pins the two equal).
    """
    data = {name: value for name, value in model.__dict__.items() if value is not None}
    cls = type(model)
    shape = _SHAPE_BY_CLASS.get(cls)
    if shape is None:  # model_fields is a descriptor call: asked once per class
        shape = _SHAPE_BY_CLASS[cls] = _shape(cls)
    nested, kept = shape
    for name in nested:
        value = data.get(name)
        if type(value) is list:
            data[name] = [to_log_dict(v) if isinstance(v, BaseModel) else v for v in value]
    for name in kept:
        if name not in data:
            data[name] = None
    return data


def _may_hold_list(annotation: Any) -> bool:
    """Whether a field's type is, or is a union or Annotated of, a list."""
    if get_origin(annotation) is list:
        return True
    return any(_may_hold_list(arg) for arg in get_args(annotation))


def _shape(cls: type[BaseModel]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A model's fields that may hold a list of models, and its kept nulls."""
    nested = tuple(n for n, info in cls.model_fields.items() if _may_hold_list(info.annotation))
    return nested, tuple(n for n in _KEEP_NULL if n in cls.model_fields)
