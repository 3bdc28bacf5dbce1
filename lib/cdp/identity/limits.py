"""Merge protection: what one customer may hold.

Per-customer caps that :mod:`cdp.identity.resolution` enforces on every component: at most
``limits`` identifiers of a type (``limit:<type>``), no two records whose attributes conflict
(``conflict:<field>``: more distinct values than ``attribute_limits`` allows, two names or
two birth dates that cannot be one person's, or both records of a steward's cannot-link
pair, ``conflict:cannot_link``), and at most ``max_component_records`` records
(``oversized``). Limits are monotone: a part of a component never breaks one its whole keeps.

The size cap counts the records that say who a person is (person records, consents), not
their transactions: a heavy buyer (a wholesaler's account on thousands of invoice lines) is
one customer however much they buy. Nodes flagged :data:`UNCOUNTED` are such records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pyspark.sql import Column
from pyspark.sql import functions as F

from cdp.identity.conflicts import dates_conflict, names_conflict
from cdp.identity.nodes import RECORD
from cdp.identity.rules import DateConflict, IdentityRules, NameConflict

# Column of a label frame: true for a record that does not count toward the size cap.
UNCOUNTED = "_uncounted"
# The record table whose rows do not count toward the size cap.
UNCOUNTED_TABLE = "transactions"
# The pseudo-attribute of cannot-link tokens (``_v__cannot``, reason ``conflict:cannot_link``).
CANNOT = "_cannot"


@dataclass(frozen=True)
class Caps:
    """What a customer may hold: records, identifiers per type, distinct attribute values.

    Per node of a component graph, stats are ``_records`` and ``_t_<type>`` (counts, summed
    over a component) and ``_a_<field>`` (the distinct attribute values of its records, an
    array unioned over a component).
    """

    limits: Mapping[str, int]
    attribute_limits: Mapping[str, int]
    max_records: int
    name_conflicts: Mapping[str, NameConflict] = field(default_factory=dict)
    date_conflicts: Mapping[str, DateConflict] = field(default_factory=dict)
    # A steward's cannot-link decisions: records carry ``_v__cannot`` tokens, and a
    # component holding one token twice holds both records of a cannot-link pair.
    cannot_link: bool = False

    @classmethod
    def of(cls, rules: IdentityRules, *, cannot_link: bool = False) -> Caps:
        return cls(
            dict(rules.limits),
            dict(rules.attribute_limits),
            rules.max_component_records,
            dict(rules.name_conflicts),
            dict(rules.date_conflicts),
            cannot_link,
        )

    @property
    def types(self) -> list[str]:
        return sorted(self.limits)

    @property
    def attributes(self) -> list[str]:
        fields = sorted(
            set(self.attribute_limits) | set(self.name_conflicts) | set(self.date_conflicts)
        )
        return fields + ([CANNOT] if self.cannot_link else [])

    def combine(self) -> list[Column]:
        """Aggregations merging nodes' stats into their component's."""
        counts = ["_records", *[f"_t_{t}" for t in self.types]]
        return [F.sum(c).alias(c) for c in counts] + [
            (
                F.flatten(F.collect_list(f"_a_{a}"))  # tokens are counted, not deduplicated
                if a == CANNOT
                else F.array_distinct(F.flatten(F.collect_list(f"_a_{a}")))
            ).alias(f"_a_{a}")
            for a in self.attributes
        ]

    def count(self) -> list[Column]:
        """Aggregations giving a component's stats from its nodes' ``id_type``,
        :data:`UNCOUNTED` flag and, for records, their ``_v_<field>`` attribute values."""
        node_type = F.col("id_type")
        counted = (node_type == RECORD) & ~F.coalesce(F.col(UNCOUNTED), F.lit(False))
        out = [F.sum(counted.cast("long")).alias("_records")]
        out += [F.sum((node_type == t).cast("long")).alias(f"_t_{t}") for t in self.types]
        out += [
            (
                F.flatten(F.collect_list(f"_v_{a}")) if a == CANNOT else F.collect_set(f"_v_{a}")
            ).alias(f"_a_{a}")
            for a in self.attributes
        ]
        return out

    def none(self) -> list[Column]:
        """Empty attribute stats (a value node holds no record attribute)."""
        return [F.array().cast("array<string>").alias(f"_a_{a}") for a in self.attributes]

    def violation(self, exempt: frozenset[str] = frozenset()) -> Column:
        """Reason merged stats break a rule: ``oversized`` first, then ``limit:<type>``, then
        ``conflict:<field>``, each by name. ``exempt``: attribute fields and identifier types
        whose caps do not hold here (a tier whose links weighed those fields themselves, see
        :func:`cdp.identity.resolution.resolve`)."""
        verdict = F.lit(None).cast("string")
        for a in reversed(self.attributes):
            if a in exempt:
                continue
            values = F.col(f"_a_{a}")
            if a == CANNOT:
                broken = F.size(values) > F.size(F.array_distinct(values))
            elif a in self.name_conflicts:
                broken = (F.size(values) > 1) & names_conflict(values, self.name_conflicts[a])
            elif a in self.date_conflicts:
                broken = (F.size(values) > 1) & dates_conflict(values, self.date_conflicts[a])
            else:
                broken = F.size(values) > self.attribute_limits[a]
            why = "conflict:cannot_link" if a == CANNOT else f"conflict:{a}"
            verdict = F.when(broken, why).otherwise(verdict)
        for t in reversed(self.types):
            if t in exempt:
                continue
            verdict = F.when(F.col(f"_t_{t}") > self.limits[t], f"limit:{t}").otherwise(verdict)
        return F.when(F.col("_records") > self.max_records, "oversized").otherwise(verdict)
