"""The log-ordered front of the engine: global facts and routing to keyed ledgers.

The `Sequencer` sees every event in log order. It owns what cannot be split by
key: duplicate ids, known orders, rule and tariff versions, and the log's time.
It emits rejects and *routed messages* `(key, message)` for the per-key ledgers
(`item:<item_id>`, `session:<session_id>`), in log order.

Memory: rule and tariff catalogs are small. Seen share, scan, order and refund
ids are kept for ever, because SPEC rejects a repeated id whenever it comes; for
orders the item list is kept too, to route refunds. Per-session timers are kept
only until the session has been told to close and, a grace later, to compact.
"""

from __future__ import annotations

import heapq
from typing import Any

from state.commissions import candidate_rules
from state.config import RuleSettings
from state.metering import Tariff
from state.outputs import Event, Output, reject

Routed = tuple[str, tuple[Any, ...]]

ID_FIELDS = {"share": "share_id", "scan": "scan_id", "order": "order_id", "refund": "refund_id"}


class Sequencer:
    def __init__(self, rules: RuleSettings) -> None:
        self.rules = rules
        self.log_time = 0
        self.tariffs: dict[str, Tariff] = {}
        # Replaced, never mutated, so that routed order lines can share it safely.
        self.commission_rules: dict[str, dict[str, Any]] = {}
        self.seen: dict[str, set[str]] = {kind: set() for kind in ID_FIELDS if kind != "order"}
        self.orders: dict[str, tuple[str, ...]] = {}
        self.session_idle_ms: dict[str, int] = {}
        self.session_due: dict[str, int] = {}
        self.timers: list[tuple[int, str]] = []

    def advance(self, log_time: int) -> list[Routed]:
        """Move the log's time forward; tell sessions whose timer passed to check."""
        if log_time <= self.log_time:
            return []
        self.log_time = log_time
        routed: list[Routed] = []
        while self.timers and self.timers[0][0] < log_time:
            due, session_id = heapq.heappop(self.timers)
            if self.session_due.get(session_id) != due:
                continue  # superseded by a later segment
            routed.append((f"session:{session_id}", ("tick", log_time)))
            idle_ms = self.session_idle_ms.get(session_id)
            if idle_ms is None:
                del self.session_due[session_id]  # that was the compaction tick
            else:
                # The close tick is sent; one more after the grace lets it compact.
                del self.session_idle_ms[session_id]
                self._schedule(session_id, due + self.rules.late_grace_ms)
        return routed

    def finish(self) -> list[Routed]:
        """End of input: the log's time stays at the greatest ts; every session that
        may still be open (its close tick not sent) gets a tick to close if its own,
        possibly earlier, deadline has passed."""
        return [
            (f"session:{session_id}", ("tick", self.log_time))
            for session_id in sorted(self.session_idle_ms)
        ]

    def _schedule(self, session_id: str, due: int) -> None:
        self.session_due[session_id] = due
        heapq.heappush(self.timers, (due, session_id))

    def on_event(self, event: Event, position: str) -> tuple[list[Output], list[Routed]]:
        routed = self.advance(event["ts"])
        kind = event["type"]
        handler = getattr(self, f"_on_{kind}")
        outputs: list[Output] = []
        id_field = ID_FIELDS.get(kind)
        if id_field is not None and self._is_repeat(kind, event[id_field]):
            outputs.append(reject("duplicate", event, position))
            return outputs, routed
        handler(event, position, outputs, routed)
        return outputs, routed

    def _is_repeat(self, kind: str, ident: str) -> bool:
        if kind == "order":
            return ident in self.orders
        seen = self.seen[kind]
        if ident in seen:
            return True
        # Seen means seen in the log: a refund rejected as unknown_order still uses its id.
        seen.add(ident)
        return False

    def _on_commission_rule(self, event: Event, position: str, outputs: list, routed: list) -> None:
        self.commission_rules = {**self.commission_rules, event["rule_id"]: event}

    def _on_tariff(self, event: Event, position: str, outputs: list, routed: list) -> None:
        self.tariffs[event["tariff_id"]] = Tariff.from_event(event)

    def _on_share(self, event: Event, position: str, outputs: list, routed: list) -> None:
        pass  # only its id matters to billing; the scan carries item and sharer

    def _on_scan(self, event: Event, position: str, outputs: list, routed: list) -> None:
        routed.append((f"item:{event['item_id']}", ("scan", event)))

    def _on_order(self, event: Event, position: str, outputs: list, routed: list) -> None:
        lines = event["lines"]
        self.orders[event["order_id"]] = tuple(line["item_id"] for line in lines)
        for line in lines:
            rules = candidate_rules(self.commission_rules, line["item_id"], event["currency"])
            routed.append((f"item:{line['item_id']}", ("order_line", event, line, rules)))

    def _on_refund(self, event: Event, position: str, outputs: list, routed: list) -> None:
        items = self.orders.get(event["order_id"])
        if items is None:
            outputs.append(reject("unknown_order", event, position))
            return
        lines = event.get("lines")
        if lines is None:
            quantities: dict[str, int | None] = dict.fromkeys(items)
        else:
            quantities = {}
            for line in lines:
                if line["item_id"] in items:
                    quantities[line["item_id"]] = (quantities.get(line["item_id"]) or 0) + line[
                        "quantity"
                    ]
        for item_id, quantity in quantities.items():
            routed.append((f"item:{item_id}", ("refund", event, quantity)))

    def _on_session_start(self, event: Event, position: str, outputs: list, routed: list) -> None:
        tariff = self.tariffs.get(event["tariff_id"])
        if tariff is None:
            outputs.append(reject("unknown_tariff", event, position))
            return
        session_id = event["session_id"]
        routed.append((f"session:{session_id}", ("start", event, tariff, position)))
        if session_id not in self.session_due:
            self.session_idle_ms[session_id] = (
                self.rules.idle_timeout_factor * event["report_interval_ms"]
            )
            self._schedule(session_id, event["ts"] + self.session_idle_ms[session_id])

    def _on_segment(self, event: Event, position: str, outputs: list, routed: list) -> None:
        session_id = event["session_id"]
        routed.append((f"session:{session_id}", ("segment", event, position)))
        idle_ms = self.session_idle_ms.get(session_id)
        if idle_ms is not None:
            # May be later than the session's true deadline (if this segment is
            # rejected); the session closes itself at its true deadline on any
            # message, so a late tick only delays the output, never changes it.
            self._schedule(session_id, event["ts"] + idle_ms)
