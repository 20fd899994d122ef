"""Typed messages between the engine's steps, each tagged with a `Literal` kind.

Into the sequencer (one per log entry or watermark):  `LogEvent`, `BadEntry`, `Watermark`.
From the sequencer to a keyed ledger (`item:<id>`, `session:<id>`): `Route` wrapping
one of `Scan`, `OrderLine`, `Refund`, `Start`, `Segment`, `Tick`.

Every message that stems from a log entry carries that entry's `position`, so
whatever a key emits about it (a reject, an error) has an id from the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from state.metering import Tariff

Event = dict[str, Any]


@dataclass(frozen=True, slots=True)
class LogEvent:
    position: str
    event: Event
    kind: Literal["event"] = "event"


@dataclass(frozen=True, slots=True)
class BadEntry:
    """A log entry that is not a valid SPEC event: it becomes an `invalid_event` reject."""

    position: str
    raw: Event
    error: str
    kind: Literal["bad"] = "bad"


@dataclass(frozen=True, slots=True)
class Watermark:
    """Live only: the log's time has reached `log_time` (no earlier event is on its way)."""

    log_time: int
    kind: Literal["watermark"] = "watermark"


SequencerInput = LogEvent | BadEntry | Watermark


@dataclass(frozen=True, slots=True)
class Scan:
    event: Event
    position: str
    kind: Literal["scan"] = "scan"


@dataclass(frozen=True, slots=True)
class OrderLine:
    order: Event
    line: Event
    rules: list[Event]  # the commission rules that could apply, as of the order
    position: str
    kind: Literal["order_line"] = "order_line"

    @property
    def event(self) -> Event:
        return self.order


@dataclass(frozen=True, slots=True)
class Refund:
    event: Event
    item_id: str
    quantity: int | None  # None: the whole line
    position: str
    kind: Literal["refund"] = "refund"


@dataclass(frozen=True, slots=True)
class Start:
    event: Event
    tariff: Tariff
    position: str
    kind: Literal["start"] = "start"


@dataclass(frozen=True, slots=True)
class Segment:
    event: Event
    position: str
    kind: Literal["segment"] = "segment"


@dataclass(frozen=True, slots=True)
class Tick:
    """The log's time has passed a deadline this key asked for (idle, grace, retention)."""

    log_time: int
    kind: Literal["tick"] = "tick"


ItemMessage = Scan | OrderLine | Refund
SessionMessage = Start | Segment | Tick
KeyMessage = ItemMessage | SessionMessage


@dataclass(frozen=True, slots=True)
class Route:
    """A message for one ledger key."""

    key: str
    message: KeyMessage
