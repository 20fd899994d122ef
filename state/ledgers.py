"""Per-key state behind the sequencer: one `ItemLedger` or `Session` per key.

`apply(state, message, settings)` is the whole keyed step: the flows call it
from a bytewax `StatefulBatchLogic`, and `state.engine` calls it from a plain
loop. Each message kind has one handler in `HANDLERS`; an unknown kind raises.
A handler that fails turns its message into an `invalid_event` reject: one bad
entry must never stop billing for everything after it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from state.commissions import ItemLedger
from state.config import RuleSettings
from state.messages import KeyMessage, OrderLine, Refund, Scan, Segment, Start, Tick
from state.metering import Session
from state.outputs import Output, invalid_event, reject

KeyState = ItemLedger | Session | None
Result = tuple[KeyState, list[Output]]


def _ledger(state: KeyState, ts: int, settings: RuleSettings) -> ItemLedger:
    ledger = state if isinstance(state, ItemLedger) else ItemLedger()
    ledger.forget(ts, settings)
    return ledger


def _on_scan(state: KeyState, msg: Scan, settings: RuleSettings) -> Result:
    ledger = _ledger(state, msg.event["ts"], settings)
    return ledger, ledger.on_scan(msg.event)


def _on_order_line(state: KeyState, msg: OrderLine, settings: RuleSettings) -> Result:
    ledger = _ledger(state, msg.order["ts"], settings)
    return ledger, ledger.on_order_line(msg.order, msg.line, msg.rules)


def _on_refund(state: KeyState, msg: Refund, settings: RuleSettings) -> Result:
    ledger = _ledger(state, msg.event["ts"], settings)
    return ledger, ledger.on_refund(msg.event, msg.quantity)


def _session(state: KeyState, log_time: int, settings: RuleSettings
             ) -> tuple[Session | None, list[Output]]:
    """The session as of `log_time` (None if it does not exist, or was forgotten)."""
    if not isinstance(state, Session):
        return None, []
    out, forgotten = state.advance(log_time, settings)
    return (None if forgotten else state), out


def _on_tick(state: KeyState, msg: Tick, settings: RuleSettings) -> Result:
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
    "scan": _on_scan,
    "order_line": _on_order_line,
    "refund": _on_refund,
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
        if isinstance(message, Tick):
            owner = state.session_id if isinstance(state, Session) else "?"
            event: dict[str, Any] = {"tick": message.log_time, "session_id": owner}
            return state, [invalid_event(event, f"tick:{owner}:{message.log_time}", exc)]
        # One reject per (entry, key): an order's lines go to several item keys.
        where = message.position
        if isinstance(message, OrderLine):
            where += ":" + message.line["item_id"]
        elif isinstance(message, Refund):
            where += ":" + message.item_id
        return state, [invalid_event(message.event, where, exc)]


def is_empty(state: KeyState) -> bool:
    """Nothing kept: the key can be dropped rather than hold an empty ledger."""
    return state is None or (isinstance(state, ItemLedger) and state.is_empty())
