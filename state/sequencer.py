"""The log-ordered front of the engine: global facts and routing to keyed ledgers.

The `Sequencer` sees every entry in log order. It owns what cannot be split by
key: duplicate ids, known orders, rule and tariff versions, each buyer's best
scan of an item (so it matches and attributes order lines itself,
state.order_lines), and the log's time. It emits rejects, accruals and `Route`s
for the per-key ledgers (state.messages lists the keys), in log order, each
stamped with `step`, its count of entries.

Memory (SPEC "Retention"): seen ids and what an order's refunds need live in a `Facts`
store passed in with the settings (state.facts), never in this object, so its
snapshot stays small: the log's time, the rule and tariff catalogs, and a clock
for each open session: a hint of when it needs a `Tick` to close as idle (live,
these and the catalogs are stored beside the snapshot: `keep_tables_outside`). A
clock stores the inputs of that deadline, not the deadline, so a restart with
new settings recomputes it. Later wake-ups are asked of the store (`wake_at`),
which keeps those timers out of the snapshot: to forget a session past R, and
for each order with a line key (a line whose accrual is above 0), to approve its
lines after the holding period and to forget them past R (state.commissions).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from state import order_lines, session_clocks
from state.catalogs import Catalog
from state.commissions import accrual, line_wake_after
from state.config import RuleSettings
from state.facts import ID_FIELDS, PAYLOADS, Facts
from state.messages import (
    BadEntry,
    Event,
    LogEvent,
    PayoutRequest,
    Refund,
    Route,
    Segment,
    SequencerInput,
    Start,
    Tick,
    line_key,
    touch_key,
)
from state.metering import Tariff
from state.order_lines import OrderPlan
from state.outputs import Output, invalid_event, reject
from state.rule_index import RuleCatalog
from state.sequencer_tables import TablesOutside

# The recovery state's layout, kept in the snapshot. 3: an order's lines share one
# line key (state.commissions.OrderLines); layout 2 gave each line its own, and a
# resumed one would never be woken again. 2: order lines are matched here, against
# best scans in the fact store; layout 1 had touch keys do it, from scans the fact
# store may not hold. flows.logic refuses to resume either.
LAYOUT = 3


class Sequencer(TablesOutside):
    def __init__(self) -> None:
        self.log_time = 0
        self.steps = 0  # entries seen: the order of what reaches a sharer key
        self.tariffs: Catalog[Tariff] = Catalog()
        # The last version of each rule id, indexed (state.rule_index).
        self.commission_rules = RuleCatalog()
        self.clocks: dict[str, list[int]] = {}
        self.timers: list[tuple[int, str]] = []
        # Set by `keep_tables_outside` (state.sequencer_tables): the clocks changed
        # since `take_table_changes`.
        self.clock_changes: set[str] | None = None
        self.layout = LAYOUT

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A snapshot from before the touch stage was folded in here has no layout
        # (flows.logic refuses it: its buyers' best scans are not in the fact store).
        state.setdefault("layout", 1)
        state.pop("_lines_this_epoch", None)
        state.pop("_candidates", None)  # the cache the rule index replaced
        state.pop("_rule_index", None)
        state.setdefault("clock_changes", None)
        # Plain dicts before the catalogs (state.catalogs).
        if isinstance(state.get("commission_rules"), dict):
            state["commission_rules"] = RuleCatalog(state["commission_rules"])
        if isinstance(state.get("tariffs"), dict):
            state["tariffs"] = Catalog(state["tariffs"])
        self.__dict__.update(state)

    # -- the log's time ---------------------------------------------------------

    def advance(self, log_time: int, settings: RuleSettings, facts: Facts) -> list[Route]:
        """Move the log's time forward: forget what passed R, tick sessions due."""
        if log_time <= self.log_time:
            return []
        before, self.log_time = self.log_time, log_time
        facts.forget_before(log_time - settings.retention_ms)
        timers = self.timers
        routes = (
            session_clocks.idle_ticks(
                self.clocks,
                timers,
                before,
                log_time,
                self.steps,
                settings,
                facts,
                self.clock_changes,
            )
            if timers and timers[0][0] < log_time  # most moves close no session
            else []
        )
        for key in facts.due_between(before, log_time):
            routes.append(self._wake(key, log_time, settings, facts))
        return routes

    def _wake(self, key: str, log_time: int, settings: RuleSettings, facts: Facts) -> Route:
        if key.startswith("line:"):
            later = line_wake_after(key, log_time, settings)
            if later is not None:
                facts.wake_at(later, key)
        return Route(key, Tick(log_time, self.steps))

    def finish(self) -> list[Route]:
        """End of input: the log's time stays at the greatest ts (state.session_clocks)."""
        return session_clocks.final_ticks(self.clocks, self.log_time, self.steps)

    # -- entries ----------------------------------------------------------------

    def on_input(
        self, entry: SequencerInput, settings: RuleSettings, facts: Facts
    ) -> tuple[list[Output], list[Route]]:
        self.steps += 1
        if isinstance(entry, LogEvent):
            return self.on_event(entry.event, entry.position, settings, facts)
        if isinstance(entry, BadEntry):
            return [invalid_event(entry.raw, entry.position, entry.error)], []
        return [], self.advance(entry.log_time, settings, facts)

    def on_event(
        self, event: Event, position: str, settings: RuleSettings, facts: Facts
    ) -> tuple[list[Output], list[Route]]:
        """Ticks from moving the log's time come first in the routes, so idle
        closes precede the event's own effects, as SPEC orders them."""
        routes = self.advance(event["ts"], settings, facts)
        kind = event["type"]
        id_field = ID_FIELDS.get(kind)
        try:
            # Seen means seen in the log: a refund rejected as unknown_order still
            # uses its id. A scan keeps what a hint naming it needs; an order, to
            # route its refunds, the items whose lines get a line key, so its lines
            # are attributed first (state.order_lines).
            plan: OrderPlan | None = None
            failed: Exception | None = None
            if kind == "order":
                try:
                    plan = order_lines.plan_order(
                        event,
                        position,
                        self.log_time,
                        self.commission_rules.resolve,
                        settings,
                        facts,
                    )
                except Exception as exc:
                    # Raised after the duplicate check, as the handlers' errors are:
                    # the order's id is used even so, with no line to refund.
                    at = order_lines.approve_at(event, self.log_time, settings)
                    plan, failed = OrderPlan([], at), exc
                payload: Any = order_lines.order_fact(event, plan)
            else:
                payload = PAYLOADS[kind](event) if kind in PAYLOADS else None
            if id_field is not None and not facts.first_use(
                kind, event[id_field], event["ts"], position, settings.retention_ms, payload
            ):
                return [reject("duplicate", event, position)], routes
            if failed is not None:
                raise failed
            own: list[Route] = []
            if plan is not None:
                outputs = self._on_order(event, position, settings, facts, own, plan)
            else:
                outputs = self.HANDLERS[kind](self, event, position, settings, facts, own)
        except Exception as exc:
            return [invalid_event(event, position, exc)], routes
        routes.extend(own)
        return outputs, routes

    def _on_commission_rule(
        self, event: Event, position: str, settings: RuleSettings, facts: Facts, routes: list[Route]
    ) -> list[Output]:
        self.commission_rules.put(event["rule_id"], event)
        return []

    def _on_tariff(
        self, event: Event, position: str, settings: RuleSettings, facts: Facts, routes: list[Route]
    ) -> list[Output]:
        self.tariffs.put(event["tariff_id"], Tariff.from_event(event))
        return []

    def _on_share(
        self, event: Event, position: str, settings: RuleSettings, facts: Facts, routes: list[Route]
    ) -> list[Output]:
        return []  # only its id matters to billing; the scan carries item and sharer

    def _on_scan(
        self, event: Event, position: str, settings: RuleSettings, facts: Facts, routes: list[Route]
    ) -> list[Output]:
        scanner = event.get("scanner_id")
        if scanner is None or scanner == event["sharer_id"]:
            return []  # never a last touch; a hint finds it in the fact store
        facts.note_scan(touch_key(event["item_id"], scanner), event, position)
        return []

    def _on_order(
        self,
        event: Event,
        position: str,
        settings: RuleSettings,
        facts: Facts,
        routes: list[Route],
        plan: OrderPlan,
    ) -> list[Output]:
        outputs: list[Output] = []
        key = line_key(event["buyer_id"], event["order_id"], event["ts"])  # all its lines'
        sent = len(routes)
        for p in plan.lines:
            if p.error is not None:  # its rule failed: that line's reject alone
                outputs.append(invalid_event(event, f"{position}:{p.line['item_id']}", p.error))
                continue
            assert p.record is not None
            for item in accrual(p.record, self.steps, key):
                if isinstance(item, Route):
                    routes.append(item)
                else:
                    outputs.append(item)
        if len(routes) > sent:  # a line pays: one wake-up for the key, to approve, then forget
            facts.wake_at(plan.approve_at, key)
        return outputs

    def _on_payout(
        self, event: Event, position: str, settings: RuleSettings, facts: Facts, routes: list[Route]
    ) -> list[Output]:
        routes.append(
            Route(f"sharer:{event['sharer_id']}", PayoutRequest(event, position, self.steps))
        )
        return []

    def _on_refund(
        self, event: Event, position: str, settings: RuleSettings, facts: Facts, routes: list[Route]
    ) -> list[Output]:
        known = facts.lookup(
            "order", event["order_id"], event["ts"], position, settings.retention_ms
        )
        if known is None:  # never seen, or forgotten (SPEC "Retention")
            return [reject("unknown_order", event, position)]
        buyer, order_ts = known[0], known[1]
        quantities, withdraw_at = order_lines.refund_plan(event, known, self.log_time, settings)
        key = line_key(buyer, event["order_id"], order_ts)
        if withdraw_at is not None and quantities:  # it spends every line
            facts.unwake(withdraw_at, key)
        for item_id, quantity in quantities.items():
            routes.append(Route(key, Refund(event, item_id, quantity, position, self.steps)))
        return []

    def _on_session_start(
        self, event: Event, position: str, settings: RuleSettings, facts: Facts, routes: list[Route]
    ) -> list[Output]:
        tariff = self.tariffs.get(event["tariff_id"])
        if tariff is None:
            return [reject("unknown_tariff", event, position)]
        routes.append(Route(f"session:{event['session_id']}", Start(event, tariff, position)))
        session_clocks.started(self.clocks, self.timers, event, settings, self.clock_changes)
        return []

    def _on_segment(
        self, event: Event, position: str, settings: RuleSettings, facts: Facts, routes: list[Route]
    ) -> list[Output]:
        routes.append(Route(f"session:{event['session_id']}", Segment(event, position)))
        session_clocks.received(self.clocks, self.timers, event, settings, self.clock_changes)
        return []

    HANDLERS: ClassVar[
        dict[str, Callable[[Sequencer, Event, str, RuleSettings, Facts, list[Route]], list[Output]]]
    ] = {
        "commission_rule": _on_commission_rule,
        "tariff": _on_tariff,
        "share": _on_share,
        "scan": _on_scan,
        "refund": _on_refund,
        "session_start": _on_session_start,
        "segment": _on_segment,
        "payout": _on_payout,
    }
