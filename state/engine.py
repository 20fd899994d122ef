"""The whole engine as a plain loop: the reference the dataflow is tested against.

Same pieces as the dataflow (a `Sequencer`, then `ledgers.apply` per key, stage
after stage), run in one thread, in log order, with no bytewax. A route a key
emits is applied at once, depth first, so every key, sharers included, sees its
messages in log order and a sharer can apply each as it comes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from state import ledgers
from state.balances import SharerLedger
from state.config import RuleSettings
from state.facts import Facts, MemoryFacts
from state.messages import Event, LogEvent, Route, SequencerInput
from state.outputs import Output
from state.sequencer import Sequencer


class Engine:
    def __init__(self, settings: RuleSettings | None = None, facts: Facts | None = None) -> None:
        self.settings = settings or RuleSettings()
        self.facts: Facts = facts if facts is not None else MemoryFacts()
        self.sequencer = Sequencer()
        self.keys: dict[str, ledgers.KeyState] = {}

    def _route(self, routes: list[Route]) -> list[Output]:
        out: list[Output] = []
        keys = self.keys
        for route in routes:
            state, produced = ledgers.apply(keys.get(route.key), route.message, self.settings)
            if isinstance(state, SharerLedger):
                out.extend(state.release())
            if ledgers.is_empty(state):
                keys.pop(route.key, None)
            else:
                keys[route.key] = state
            for item in produced:
                if isinstance(item, Route):
                    out.extend(self._route([item]))
                else:
                    out.append(item)
        return out

    def on_batch(self, entries: Sequence[SequencerInput]) -> list[Output]:
        """Entries in log order, with the fact store driven as the flow drives it."""
        out: list[Output] = []
        self.facts.prepare(entries)
        for entry in entries:
            outputs, routes = self.sequencer.on_input(entry, self.settings, self.facts)
            # Ticks from the time advance come first in `routes`, so idle closes
            # precede the event's own effects, as SPEC orders them.
            out += self._route(routes)
            out += outputs
        self.facts.flush()
        return out

    def on_input(self, entry: SequencerInput) -> list[Output]:
        return self.on_batch([entry])

    def feed(self, event: Event, position: str) -> list[Output]:
        return self.on_input(LogEvent(position, event))

    def advance(self, log_time: int) -> list[Output]:
        return self._route(self.sequencer.advance(log_time, self.settings, self.facts))

    def finish(self) -> list[Output]:
        self.facts.settle()
        return self._route(self.sequencer.finish())


def run(
    events: Iterable[tuple[str, Event]], settings: RuleSettings | None = None
) -> Iterator[Output]:
    engine = Engine(settings)
    for position, event in events:
        yield from engine.feed(event, position)
    yield from engine.finish()
