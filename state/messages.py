"""Typed messages between the engine's steps, each tagged with a `Literal` kind.

Into a sequencer (one per log entry or watermark):  `LogEvent`, `BadEntry`, `Watermark`,
or, live, a `RawEntry` that the flows parse at the sequencer's key (state.sharding
says which sequencer key an entry goes to; the flows move them as `InputBatch`es,
raw entries in `RawRun`s).
Between keyed ledgers, a `Route(key, message)` (in the flows, grouped per batch
into a `KeyBatch(key, messages)`); the stages and their keys:

    sequencer -> line:<buyer>|<order>|<order_ts>   Attributed, Refund, Tick
              -> session:<id>             Start, Segment, Tick
              -> sharer:<id>              PayoutRequest
    line      -> sharer:<id>              Credit

Every message that stems from a log entry carries that entry's `position`, so
whatever a key emits about it (a reject, an error) has an id from the input.
Messages bound for a sharer carry `step`, the sequencer's count of entries, and
a `phase` (0: the time advance before the entry, 1: the entry itself), so that a
sharer key fed by several workers can restore log order (state.balances).

Messages are slots dataclasses, and no step changes a message once made (a step
that forwards one passes it on as it is). They are not `frozen`: a frozen
dataclass's `__init__` sets each field through `object.__setattr__`, measured 2.05
against 0.52 us for six fields; the rules make about 0.9 messages per event (the
bench log, 2026-12-06), and a message is made again when it is unpickled in
another process. Their events are dicts, which `frozen` never froze either.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    from state.metering import Tariff

Event = dict[str, Any]

M = TypeVar("M")


def _quick_pickle(cls: type[M]) -> type[M]:
    """Pickle as (class, field values), the `kind` tag left to its default.

    Messages cross between processes pickled, and a slots dataclass pickles through
    Python-level `__getstate__`/`__setstate__` that call `fields()` every time:
    measured 9.2 against 3.8 us per message there and back with this."""
    names = [f.name for f in fields(cls) if f.name != "kind"]  # type: ignore[arg-type]
    # attrgetter of one name gives the value itself, of several a tuple (C, fast).
    values: Callable[[Any], Any] = (
        operator.attrgetter(*names) if len(names) > 1 else lambda self: (getattr(self, names[0]),)
    )

    def __reduce__(self: Any) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return cls, values(self)

    cls.__reduce__ = __reduce__  # type: ignore[method-assign]
    return cls


@_quick_pickle
@dataclass(slots=True)
class LogEvent:
    position: str
    event: Event
    kind: Literal["event"] = "event"


@_quick_pickle
@dataclass(slots=True)
class BadEntry:
    """A log entry that is not a valid SPEC event: it becomes an `invalid_event` reject."""

    position: str
    raw: Event
    error: str
    kind: Literal["bad"] = "bad"


@_quick_pickle
@dataclass(slots=True)
class Watermark:
    """Live only: the log's time has reached `log_time` (no earlier event is on its way)."""

    log_time: int
    kind: Literal["watermark"] = "watermark"


SequencerInput = LogEvent | BadEntry | Watermark


@_quick_pickle
@dataclass(slots=True)
class RawEntry:
    """Live only: a stream entry not parsed yet. `kind_hint` and `session_id` are read
    off its JSON cheaply at the source, to route it (state.sharding); the full parse
    (validation, bounds) happens at its sequencer key, so that parsing, the largest
    per-event cost, runs where the keys run rather than all at the source.
    The route step, in the source's worker, packs them into `RawRun`s."""

    position: str
    data: str
    ts: int
    kind_hint: str | None
    session_id: str | None
    kind: Literal["raw"] = "raw"


@_quick_pickle
@dataclass(slots=True)
class RawRun:
    """Live only: consecutive raw entries of one sequencer key, in log order, as
    columns (entry ids, JSON texts, `ts`), to be parsed at that key.

    The commission sequencer runs in another process than the source at
    `--processes 2`, so its entries cross pickled. As `RawEntry` objects each costs
    a Python-level `__reduce__` and, unpickled, a dataclass `__init__`; as three
    lists pickle does it all in C: measured 4.9 against 0.45 us per entry there and
    back."""

    positions: list[str]
    datas: list[str]
    tss: list[int]
    kind: Literal["raw_run"] = "raw_run"


@_quick_pickle
@dataclass(slots=True)
class InputBatch:
    """One batch's entries for one sequencer key, in log order (state.sharding)."""

    key: str
    entries: list[SequencerInput | RawRun]
    kind: Literal["input_batch"] = "input_batch"


@_quick_pickle
@dataclass(slots=True)
class Refund:
    event: Event
    item_id: str
    quantity: int | None  # None: the whole line
    position: str
    step: int
    kind: Literal["refund"] = "refund"


@_quick_pickle
@dataclass(slots=True)
class Start:
    event: Event
    tariff: Tariff
    position: str
    kind: Literal["start"] = "start"


@_quick_pickle
@dataclass(slots=True)
class Segment:
    event: Event
    position: str
    kind: Literal["segment"] = "segment"


@_quick_pickle
@dataclass(slots=True)
class Tick:
    """The log's time has passed a deadline this key asked for (idle, grace, retention)."""

    log_time: int
    step: int = 0
    kind: Literal["tick"] = "tick"


@_quick_pickle
@dataclass(slots=True)
class Attributed:
    """An attributed line with a positive accrual, from the sequencer to its line key."""

    record: dict[str, Any]
    step: int
    kind: Literal["attributed"] = "attributed"


@_quick_pickle
@dataclass(slots=True)
class Credit:
    """A change of a sharer's payable balance (an approval, or a clawback)."""

    currency: str
    amount: int
    step: int
    phase: int
    ident: str  # the output's id: a stable order among credits of one step
    kind: Literal["credit"] = "credit"


@_quick_pickle
@dataclass(slots=True)
class PayoutRequest:
    event: Event
    position: str
    step: int
    kind: Literal["payout"] = "payout"


LineMessage = Attributed | Refund | Tick
SharerMessage = Credit | PayoutRequest
SessionMessage = Start | Segment | Tick
KeyMessage = LineMessage | SharerMessage | SessionMessage


@_quick_pickle
@dataclass(slots=True)
class Route:
    """A message for one ledger key."""

    key: str
    message: KeyMessage


@_quick_pickle
@dataclass(slots=True)
class KeyBatch:
    """The messages one step made, in one batch, for one key of the next stage, in
    the order it made them. The flows move these instead of single `Route`s: bytewax
    costs a little per item at every operator (and a pickle per item between
    processes), and a batch often holds many messages for one session or sharer
    key. The plain loop (state.engine) applies `Route`s one by one."""

    key: str
    messages: list[KeyMessage]
    kind: Literal["key_batch"] = "key_batch"


def by_key(routes: list[Route]) -> list[KeyBatch]:
    """`routes` grouped by key: each key's messages keep their order (all a key's
    stage needs: it applies them in order), keys in order of first appearance."""
    grouped: dict[str, list[KeyMessage]] = {}
    for route in routes:
        found = grouped.get(route.key)
        if found is None:
            grouped[route.key] = [route.message]
        else:
            found.append(route.message)
    return [KeyBatch(key, messages) for key, messages in grouped.items()]


def line_key(buyer_id: str, order_id: str, order_ts: int) -> str:
    """The key of an order's lines that accrue (state.commissions.OrderLines). Ids
    never hold '|' (SPEC: [A-Za-z0-9._:-]), so it separates them safely; the order's
    ts comes last (state.commissions.line_wake_after reads it)."""
    return f"line:{buyer_id}|{order_id}|{order_ts}"


def touch_key(item_id: str, person_id: str) -> str:
    """Names a person's scans of an item: the fact store keeps the best (state.facts)."""
    return f"touch:{item_id}|{person_id}"
