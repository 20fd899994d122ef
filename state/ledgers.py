"""Per-key state behind the sequencer: an order's `OrderLines`, a `SharerLedger` or a
`Session`.

`apply(state, message, settings)` is the whole keyed step: the flows call it
from a bytewax `StatefulBatchLogic`, and `state.engine` calls it from a plain
loop. It returns the key's new state and what it emits: outputs (dicts) and
`Route`s for keys of the next stage (line -> sharer). Each message kind
has one handler in `HANDLERS`; an unknown kind raises. A handler that fails
turns its message into an `invalid_event` reject: one bad entry must never stop
billing for everything after it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from state.balances import SharerLedger
from state.commissions import OrderLines
from state.config import RuleSettings
from state.messages import (
    Attributed,
    Credit,
    KeyMessage,
    PayoutRequest,
    Refund,
    Route,
    Segment,
    Start,
    Tick,
)
from state.metering import Session
from state.outputs import Output, invalid_event, reject

KeyState = OrderLines | SharerLedger | Session | None
Emitted = list[Output | Route]
Result = tuple[KeyState, Emitted]


def _on_attributed(state: KeyState, msg: Attributed, settings: RuleSettings) -> Result:
    lines = state if isinstance(state, OrderLines) else OrderLines()
    lines.attributed(msg.record)
    return lines, []


def _on_refund(state: KeyState, msg: Refund, settings: RuleSettings) -> Result:
    if not isinstance(state, OrderLines):
        return None, []  # not attributed, nothing accrued, or forgotten
    out, empty = state.on_refund(msg.event, msg.item_id, msg.quantity, settings, msg.step)
    return (None if empty else state), out


def _sharer(state: KeyState, msg: Credit | PayoutRequest, settings: RuleSettings) -> Result:
    ledger = state if isinstance(state, SharerLedger) else SharerLedger()
    ledger.receive(msg)
    return ledger, []  # applied by `release`, in log order (state.balances)


def _session(
    state: KeyState, log_time: int, settings: RuleSettings
) -> tuple[Session | None, Emitted]:
    """The session as of `log_time` (None if it does not exist, or was forgotten)."""
    if not isinstance(state, Session):
        return None, []
    closed, forgotten = state.advance(log_time, settings)
    out: Emitted = list(closed)
    return (None if forgotten else state), out


def _on_tick(state: KeyState, msg: Tick, settings: RuleSettings) -> Result:
    if isinstance(state, OrderLines):
        out, empty = state.advance(msg.log_time, settings, msg.step)
        return (None if empty else state), out
    return _session(state, msg.log_time, settings)


def _on_start(state: KeyState, msg: Start, settings: RuleSettings) -> Result:
    session, out = _session(state, msg.event["ts"], settings)
    if session is not None:
        out.append(reject("duplicate", msg.event, msg.position))
        return session, out
    return Session(msg.event, msg.tariff), out


def _on_segment(state: KeyState, msg: Segment, settings: RuleSettings) -> Result:
    session, out = _session(state, msg.event["ts"], settings)
    if session is None:
        out.append(reject("unknown_session", msg.event, msg.position))
        return None, out
    out.extend(session.on_segment(msg.event, msg.position, settings))
    return session, out


HANDLERS: dict[str, Callable[[KeyState, Any, RuleSettings], Result]] = {
    "attributed": _on_attributed,
    "refund": _on_refund,
    "credit": _sharer,
    "payout": _sharer,
    "tick": _on_tick,
    "start": _on_start,
    "segment": _on_segment,
}


def apply(state: KeyState, message: KeyMessage, settings: RuleSettings) -> Result:
    """One routed message for one key."""
    handler = HANDLERS[message.kind]  # KeyError: a message kind nobody handles
    try:
        return handler(state, message, settings)
    except Exception as exc:
        return state, [_failed(state, message, exc)]


def _failed(state: KeyState, message: KeyMessage, exc: Exception) -> Output:
    """One reject per (entry, key), with an id from the input."""
    if isinstance(message, Tick):
        owner = state.session_id if isinstance(state, Session) else type(state).__name__
        event: dict[str, Any] = {"tick": message.log_time, "key": owner}
        return invalid_event(event, f"tick:{owner}:{message.log_time}", exc)
    if isinstance(message, Refund):
        return invalid_event(message.event, f"{message.position}:{message.item_id}", exc)
    if isinstance(message, Credit):  # an approval's or a clawback's, named by its output
        return invalid_event({"credit": message.ident}, f"credit:{message.ident}", exc)
    if isinstance(message, Attributed):
        r = message.record
        ident = f"{r['order_id']}:{r['order_ts']}:{r['item_id']}"
        return invalid_event({"attributed": ident}, f"attributed:{ident}", exc)
    return invalid_event(message.event, message.position, exc)


def is_empty(state: KeyState) -> bool:
    """Nothing kept: the key can be dropped rather than hold an empty ledger."""
    if state is None:
        return True
    if isinstance(state, SharerLedger):
        return state.is_empty()
    return False
