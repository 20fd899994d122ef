"""The whole engine as a plain loop: the reference the dataflow is tested against.

Same pieces as the dataflow (a `Sequencer`, then `ledgers.apply` per key), run in
one thread, in log order, with no bytewax.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from state import ledgers
from state.config import RuleSettings
from state.outputs import Event, Output
from state.sequencer import Sequencer


class Engine:
    def __init__(self, rules: RuleSettings | None = None) -> None:
        self.rules = rules or RuleSettings()
        self.sequencer = Sequencer(self.rules)
        self.keys: dict[str, ledgers.KeyState] = {}

    def _route(self, routed: list[tuple[str, tuple[Any, ...]]]) -> list[Output]:
        out: list[Output] = []
        for key, message in routed:
            state, produced = ledgers.apply(self.keys.get(key), message, self.rules)
            if state is not None:
                self.keys[key] = state
            out.extend(produced)
        return out

    def feed(self, event: Event, position: str) -> list[Output]:
        outputs, routed = self.sequencer.on_event(event, position)
        # Ticks from the time advance come first in `routed`, so idle closes
        # precede the event's own effects, as SPEC orders them.
        return self._route(routed) + outputs

    def advance(self, log_time: int) -> list[Output]:
        return self._route(self.sequencer.advance(log_time))

    def finish(self) -> list[Output]:
        return self._route(self.sequencer.finish())


def run(events: Iterable[tuple[str, Event]], rules: RuleSettings | None = None) -> Iterator[Output]:
    engine = Engine(rules)
    for position, event in events:
        yield from engine.feed(event, position)
    yield from engine.finish()
