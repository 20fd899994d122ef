"""The rule index (state.rule_index) against SPEC's walk over every rule
(state.commissions.resolve_rule), through any history of rule versions; and the
catalogs a sequencer snapshots (state.catalogs)."""

from __future__ import annotations

import pickle

from hypothesis import given, settings
from hypothesis import strategies as st

from state.catalogs import Catalog
from state.commissions import resolve_rule
from state.engine import Engine
from state.metering import Tariff
from state.rule_index import RuleCatalog, RuleIndex, bucket_of
from state.sequencer import Sequencer
from tests.support.logs import order, rule, scan

IDS = st.sampled_from(["r1", "r2", "r3", "r10", "a", "b"])
SHARERS = st.sampled_from(["s1", "s2"])
ITEMS = st.sampled_from(["i1", "i2"])
CURRENCIES = st.sampled_from(["USD", "EUR"])


@st.composite
def rule_versions(draw: st.DrawFn) -> dict:
    kind = draw(st.sampled_from(["percent", "flat"]))
    version: dict = {"rule_id": draw(IDS), "kind": kind, "active": draw(st.booleans())}
    if kind == "percent":
        version["bps"] = draw(st.integers(0, 10_000))
        # A percent rule's currency is ignored (SPEC: `currency` is for flat).
        if draw(st.booleans()):
            version["currency"] = draw(CURRENCIES)
    else:
        version["amount_minor"] = draw(st.integers(0, 100))
        version["currency"] = draw(st.one_of(st.none(), CURRENCIES))
    for field, values in (("sharer_id", SHARERS), ("item_id", ITEMS)):
        if draw(st.booleans()):
            version[field] = draw(values)
    return version


@settings(max_examples=300)
@given(
    history=st.lists(rule_versions(), max_size=25),
    built_at=st.integers(0, 25),
    queries=st.lists(st.tuples(SHARERS, ITEMS, CURRENCIES), min_size=1, max_size=8),
)
def test_the_index_resolves_as_the_walk_over_every_rule(history, built_at, queries):
    """Versions replace each other by rule id; the index is built from the catalog
    part-way (as after a restore) and kept up to date from there."""
    catalog: dict[str, dict] = {}
    index: RuleIndex | None = None
    for n, version in enumerate(history):
        if n == built_at:
            index = RuleIndex(catalog)
        old = catalog.get(version["rule_id"])
        catalog[version["rule_id"]] = version
        if index is not None:
            index.replaced(version["rule_id"], old, version)
    index = index or RuleIndex(catalog)
    for sharer, item, currency in queries:
        assert index.resolve(sharer, item, currency) == resolve_rule(
            list(catalog.values()), sharer, item, currency
        )


def test_a_rule_that_can_never_apply_is_in_no_bucket():
    assert bucket_of({"rule_id": "a", "kind": "percent", "bps": 1, "active": False}) is None
    assert bucket_of({"rule_id": "a", "kind": "flat", "amount_minor": 1}) is None
    assert bucket_of({"rule_id": "a", "kind": "percent", "bps": 1, "currency": "EUR"}) == (
        None,
        None,
        None,
    )


def test_the_sequencer_snapshot_keeps_the_catalog_not_the_index():
    """A restored sequencer builds the index from the catalog, and rule events after
    the restore reach it."""
    engine = Engine()
    t = 1_700_000_000_000
    engine.feed(rule("low", t, bps=100), "1-0")
    engine.feed(rule("sharer", t + 1, bps=500, sharer_id="s1"), "2-0")
    engine.feed(scan("sc1", t + 2, "s1", "b"), "3-0")
    first = engine.feed(order("o1", t + 3), "4-0")
    assert [o["rule"]["rule_id"] for o in _accruals(first)] == ["sharer"]

    state = pickle.dumps(engine.sequencer)
    assert b"RuleIndex" not in state
    engine.sequencer = pickle.loads(state)
    # Withdrawn after the restore: the next order falls back to the general rule.
    engine.feed(rule("sharer", t + 4, bps=500, sharer_id="s1", active=False), "5-0")
    later = engine.feed(order("o2", t + 5), "6-0")
    assert [o["rule"]["rule_id"] for o in _accruals(later)] == ["low"]


def _accruals(outputs: list[dict]) -> list[dict]:
    return [o for o in outputs if o["type"] == "commission" and o["kind"] == "accrual"]


def test_the_catalog_pickles_its_latest_versions():
    """Its blob is made again after every rule event, never a stale one."""
    catalog = RuleCatalog()
    catalog.put("a", rule("a", bps=100))
    assert pickle.loads(pickle.dumps(catalog)).versions() == {"a": rule("a", bps=100)}
    catalog.put("a", rule("a", bps=200))
    catalog.put("b", rule("b", bps=300, sharer_id="s"))
    restored = pickle.loads(pickle.dumps(catalog))
    assert restored.versions() == {"a": rule("a", bps=200), "b": rule("b", bps=300, sharer_id="s")}
    assert restored.resolve("s", "i", "USD") == rule("b", bps=300, sharer_id="s")
    restored.put("b", rule("b", bps=300, sharer_id="s", active=False))
    assert pickle.loads(pickle.dumps(restored)).resolve("s", "i", "USD") == rule("a", bps=200)


def test_an_old_snapshot_with_plain_catalogs_and_the_candidate_cache_loads():
    tariff = Tariff("t", "USD", 1000, 5)
    old = Sequencer()
    old.__dict__["commission_rules"] = {"a": rule("a", bps=100)}
    old.__dict__["tariffs"] = {"t": tariff}
    old.__dict__["_candidates"] = {("i1", "USD"): []}
    restored = pickle.loads(pickle.dumps(old))
    assert "_candidates" not in restored.__dict__
    assert isinstance(restored.commission_rules, RuleCatalog)
    assert restored.commission_rules.resolve("s", "i1", "USD") == rule("a", bps=100)
    assert isinstance(restored.tariffs, Catalog)
    assert restored.tariffs.get("t") == tariff


def test_a_catalog_pickles_its_latest_versions_and_reuses_its_blob():
    catalog: Catalog[Tariff] = Catalog()
    catalog.put("t", Tariff("t", "USD", 1000, 5))
    first = pickle.dumps(catalog)
    assert pickle.dumps(catalog) == first  # no change: the same blob
    restored = pickle.loads(first)
    restored.put("t", Tariff("t", "USD", 1000, 7))
    restored.put("u", Tariff("u", "EUR", 60_000, 1))
    again = pickle.loads(pickle.dumps(restored))
    assert again.versions() == {
        "t": Tariff("t", "USD", 1000, 7),
        "u": Tariff("u", "EUR", 60_000, 1),
    }
    assert again == restored != catalog
