"""The commission rule catalog, indexed so that resolving a line's rule costs O(1).

SPEC "Rule resolution": among the last version of each rule that is active, whose
`sharer_id` (if set) is the scan's sharer, whose `item_id` (if set) is the line's
item and, for `flat`, whose `currency` is the order's, the most specific wins, and
a tie goes to the smallest `rule_id`. `state.commissions.resolve_rule` says that as
a walk over every rule; it stays as the oracle the tests hold this to.

Walking the rules is O(rules) per order line: a shop that gives each of 10,000
sharers a rate of their own would walk 10,000 rules for every line. Here every
rule that can apply sits in one bucket, `(sharer_id, item_id, currency)` (None for
what it leaves open; `currency` only for `flat`), holding its rule ids sorted. A
bucket's rules differ only in id, so its first id is its winner, and a line asks
at most 8 buckets: the 4 levels of specificity, most specific first, each for
`percent` (any currency) and `flat` in the order's currency. A rule event moves
one id out of one bucket and into another: O(log n) to find, plus the shift of
that bucket's list.

`RuleCatalog` (the sequencer's `commission_rules`) owns the last version of each
rule id and its index. The index is derived, so never pickled: a restored catalog
builds it again on first use. The versions pickle as one blob (state.catalogs).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from typing import Any

from state.catalogs import Catalog

Rule = dict[str, Any]
Bucket = tuple[str | None, str | None, str | None]


def bucket_of(rule: Rule) -> Bucket | None:
    """Where the rule can apply, or None if it never can (inactive; a `flat`
    rule with no currency matches no order)."""
    if not rule.get("active", True):
        return None
    currency = None
    if rule.get("kind") == "flat":  # never raises: the catalog and index move together
        currency = rule.get("currency")
        if currency is None:
            return None
    return rule.get("sharer_id"), rule.get("item_id"), currency


class RuleIndex:
    def __init__(self, rules: dict[str, Rule]) -> None:
        self._rules = rules  # the catalog itself, shared: read-only here
        self._buckets: dict[Bucket, list[str]] = {}
        for rule_id, rule in rules.items():
            self._add(rule_id, rule)

    def _add(self, rule_id: str, rule: Rule) -> None:
        bucket = bucket_of(rule)
        if bucket is not None:
            insort(self._buckets.setdefault(bucket, []), rule_id)

    def _remove(self, rule_id: str, rule: Rule) -> None:
        bucket = bucket_of(rule)
        if bucket is None:
            return
        ids = self._buckets[bucket]
        del ids[bisect_left(ids, rule_id)]
        if not ids:
            del self._buckets[bucket]

    def replaced(self, rule_id: str, old: Rule | None, new: Rule) -> None:
        """The catalog's version of `rule_id` went from `old` to `new`."""
        if old is not None:
            self._remove(rule_id, old)
        self._add(rule_id, new)

    def resolve(self, sharer_id: str, item_id: str, currency: str) -> Rule | None:
        buckets = self._buckets
        # Most specific first: sharer and item (3), item (2), sharer (1), neither (0).
        for sharer, item in (
            (sharer_id, item_id),
            (None, item_id),
            (sharer_id, None),
            (None, None),
        ):
            percent = buckets.get((sharer, item, None))
            flat = buckets.get((sharer, item, currency))
            if percent and flat:
                return self._rules[min(percent[0], flat[0])]
            ids = percent or flat
            if ids:
                return self._rules[ids[0]]
        return None


class RuleCatalog(Catalog[Rule]):
    """The last version of each rule id (SPEC "Rule resolution") and its index,
    which is derived, so never pickled (state.catalogs)."""

    __slots__ = ("_index",)

    def __init__(self, versions: dict[str, Rule] | None = None) -> None:
        super().__init__(versions)
        self._index: RuleIndex | None = None

    def put(self, ident: str, version: Rule) -> Rule | None:
        """A rule event: the new version of its `rule_id`."""
        old = super().put(ident, version)
        if self._index is not None:  # else built from the catalog when first asked
            self._index.replaced(ident, old, version)
        return old

    def resolve(self, sharer_id: str, item_id: str, currency: str) -> Rule | None:
        if self._index is None:
            self._index = RuleIndex(self._versions)
        return self._index.resolve(sharer_id, item_id, currency)
