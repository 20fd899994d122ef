"""Per-key state behind the sequencer: one `ItemLedger` or `Session` per key.

`apply(state, message, rules)` is the whole keyed step: the flows call it from a
bytewax `StatefulLogic`, and `state.engine` calls it from a plain loop.
"""

from __future__ import annotations

from typing import Any

from state.commissions import ItemLedger
from state.config import RuleSettings
from state.metering import Session
from state.outputs import Output, reject

KeyState = ItemLedger | Session | None


ITEM_MESSAGES = frozenset({"scan", "order_line", "refund"})


def apply(
    state: KeyState, message: tuple[Any, ...], rules: RuleSettings
) -> tuple[KeyState, list[Output]]:
    """One routed message for one key; the message kind tells item from session keys."""
    kind = message[0]
    if kind in ITEM_MESSAGES:
        ledger = state if isinstance(state, ItemLedger) else ItemLedger(rules.attribution_window_ms)
        if kind == "scan":
            return ledger, ledger.on_scan(message[1])
        if kind == "order_line":
            return ledger, ledger.on_order_line(message[1], message[2], message[3])
        if kind == "refund":
            return ledger, ledger.on_refund(message[1], message[2])
        raise ValueError(f"unknown item message {kind!r}")

    session = state if isinstance(state, Session) else None
    if kind == "tick":
        return session, session.advance(message[1]) if session is not None else []
    if kind == "start":
        _, event, tariff, position = message
        if session is not None:
            out = session.advance(event["ts"])
            out.append(reject("duplicate", event, position))
            return session, out
        return Session(event, tariff, rules), []
    if kind == "segment":
        _, event, position = message
        if session is None:
            return None, [reject("unknown_session", event, position)]
        return session, session.on_segment(event, position)
    raise ValueError(f"unknown session message {kind!r}")
