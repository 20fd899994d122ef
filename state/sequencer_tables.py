"""The sequencer's tables that live flows store beside its snapshot, not in it.

bytewax pickles a sequencer key whole at every epoch it is woken, which is every
epoch. Two parts of it must not ride along: a session shard's open sessions'
clocks, which grow with traffic, and the rule and tariff catalogs, config that is
big for some shops and seldom changes. Live, `flows.logic.SequencerLogic` stores
them beside the snapshot, as the changes of each epoch (flows.snapshot_tables);
this is the sequencer's side of that: the tables, the ids changed in each, and a
copy without them to pickle. A replay and the plain loop never call it, and keep
everything in the sequencer, as a pickled sequencer does.
"""

from __future__ import annotations

from typing import Any, Self

from state import session_clocks
from state.catalogs import Catalog
from state.metering import Tariff
from state.rule_index import RuleCatalog


class TablesOutside:
    clocks: dict[str, list[int]]
    timers: list[tuple[int, str]]
    clock_changes: set[str] | None
    commission_rules: RuleCatalog
    tariffs: Catalog[Tariff]

    def keep_tables_outside(self, tables: dict[str, dict[str, Any]] | None = None) -> None:
        """From now on the tables ("clocks", "rules", "tariffs") are stored beside the
        snapshot, by whoever calls `take_table_changes` at each snapshot. `tables`: those it stored last (a
        resume), as stored (JSON values); a table not given is the one held (a new
        sequencer, or one resumed from a snapshot that held it: the first store
        writes it whole)."""
        tables = tables or {}
        if "clocks" in tables:
            self.clocks = tables["clocks"]
            self.timers = session_clocks.timers_of(self.clocks)
        if "rules" in tables:
            self.commission_rules = RuleCatalog(tables["rules"])
        if "tariffs" in tables:
            self.tariffs = Catalog({k: Tariff(**v) for k, v in tables["tariffs"].items()})
        self.clock_changes = set()
        self.commission_rules.track_changes()
        self.tariffs.track_changes()

    def take_table_changes(self) -> dict[str, tuple[dict[str, Any], set[str]]]:
        """Each table and the ids changed in it since the last call (made, moved or
        dropped: a dropped id is no longer in the table)."""
        changes = self.clock_changes
        assert changes is not None, "keep_tables_outside was not called"
        self.clock_changes = set()
        return {
            "clocks": (self.clocks, changes),
            "rules": (self.commission_rules.table(), self.commission_rules.take_changes()),
            "tariffs": (self.tariffs.table(), self.tariffs.take_changes()),
        }

    def without_tables(self) -> Self:
        """A shallow copy to pickle when the tables are stored beside it."""
        copy = type(self).__new__(type(self))
        copy.__dict__.update(self.__dict__)
        copy.clocks, copy.timers, copy.clock_changes = {}, [], None
        copy.commission_rules, copy.tariffs = RuleCatalog(), Catalog()
        return copy
