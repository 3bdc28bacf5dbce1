"""Links of the identity graph from the deterministic rules, as DataFrames.

* identifier links (record -> value) from the ``identifiers`` rules;
* event links (value -> value) from identifiers seen together on one event, deduplicated
  (events are never nodes).

Every link carries ``reason``, null for an accepted link; the blocklist verdict and, for
event links, the ``max_linked`` verdict (``shared:linked_<type>``: a cookie seen with several
accounts) are set here, the other shared-value verdicts by :mod:`cdp.identity.shared`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdp.identity.blocklist import blocked
from cdp.identity.nodes import (
    KEY_SEP,
    RECORD,
    evidence,
    field_value,
    live,
    member_key,
    record_node,
    value_node,
)
from cdp.identity.rules import IdentityRules

LINK_COLUMNS = (
    "rule",
    "id_type",
    "priority",
    "unit",
    "unit_type",
    "unit_value",
    "other",
    "other_type",
    "other_value",
    "reason",
)


def identifier_links(frames: Mapping[str, DataFrame], rules: IdentityRules) -> DataFrame:
    """Record -> value links of every enabled identifier rule (see :data:`LINK_COLUMNS`),
    with the record fields named in ``shared_values.max_distinct`` as ``_d_<field>``.

    ``reason`` holds the blocklist verdict only; shared values are found by
    :func:`cdp.identity.shared.mark_shared`.
    """
    distinct_fields = sorted(rules.shared_values.max_distinct)
    star = {w.lower() for w in rules.blocklist.values.get("*", [])}
    parts = []
    for rule in rules.enabled_identifiers:
        for table in rule.applies_to():
            if table not in frames:
                continue
            df = live(frames[table])
            values = [field_value(df, f) for f in rule.fields]
            value = rule_value(values)
            reason = blocked(rule.id_type, value, rules)
            if len(rule.fields) > 1 and star:  # a composite with a placeholder part is junk
                part_junk = reduce(lambda a, b: a | b, [F.lower(v).isin(*star) for v in values])
                reason = F.when(part_junk, "blocklist:value").otherwise(reason)
            extra = [evidence(df, f).alias(f"_d_{f}") for f in distinct_fields]
            parts.append(
                df.select(
                    F.lit(rule.name).alias("rule"),
                    F.lit(rule.id_type).alias("id_type"),
                    F.lit(rule.priority).alias("priority"),
                    value_node(F.lit(rule.id_type), value).alias("unit"),
                    F.lit(rule.id_type).alias("unit_type"),
                    value.alias("unit_value"),
                    record_node(table).alias("other"),
                    F.lit(RECORD).alias("other_type"),
                    member_key(F.lit(table), F.col("source"), F.col("source_record_id")).alias(
                        "other_value"
                    ),
                    reason.alias("reason"),
                    *extra,
                ).where(F.col("unit_value").isNotNull())
            )
    if not parts:
        raise ValueError("no identifier rule applies to any silver record table present")
    return reduce(DataFrame.unionByName, parts).dropDuplicates(["rule", "unit", "other"])


def rule_value(values: Sequence[Column]) -> Column:
    """An identifier rule's value from its fields' values: null unless all are present."""
    complete = reduce(lambda a, b: a & b, [v.isNotNull() for v in values])
    return F.when(complete, F.concat_ws(KEY_SEP, *values))


def event_links(events: DataFrame, rules: IdentityRules) -> DataFrame | None:
    """Value -> value links of the enabled event-link rules, deduplicated (one row per rule
    and pair), with blocklist and ``max_linked`` verdicts in ``reason``; None when no rule."""
    links = rules.enabled_event_links
    if not links:
        return None
    parts = []
    for rule in links:
        df = live(events)
        if rule.event_types:
            df = df.where(F.lower(F.col("event_type")).isin(*[t.lower() for t in rule.event_types]))
        from_type = rules.event_id_type(rule.from_field)
        src = field_value(df, rule.from_field)
        for to in rule.to:
            to_type = rules.event_id_type(to)
            dst = field_value(df, to)
            parts.append(
                df.select(
                    F.lit(rule.name).alias("rule"),
                    F.lit(from_type).alias("id_type"),
                    F.lit(rule.priority).alias("priority"),
                    value_node(F.lit(from_type), src).alias("unit"),
                    F.lit(from_type).alias("unit_type"),
                    src.alias("unit_value"),
                    value_node(F.lit(to_type), dst).alias("other"),
                    F.lit(to_type).alias("other_type"),
                    dst.alias("other_value"),
                    F.coalesce(blocked(from_type, src, rules), blocked(to_type, dst, rules))
                    .alias("reason"),
                ).where(src.isNotNull() & dst.isNotNull())
            )  # fmt: skip
    out = reduce(DataFrame.unionByName, parts).dropDuplicates(["rule", "unit", "other"])
    limits = rules.shared_values.max_linked
    if not limits:
        return out
    per_type = out.where(F.col("reason").isNull()).groupBy("rule", "unit", "other_type")
    counts = per_type.agg(F.countDistinct("other").alias("_n"))
    verdict = F.lit(None).cast("string")
    for t in sorted(limits, reverse=True):
        verdict = F.when(
            (F.col("other_type") == t) & (F.col("_n") > limits[t]), f"shared:linked_{t}"
        ).otherwise(verdict)
    shared = (
        counts.select("rule", "unit", verdict.alias("_v"))
        .where(F.col("_v").isNotNull())
        .groupBy("rule", "unit")
        .agg(F.min("_v").alias("_shared"))
    )
    return (
        out.join(shared, ["rule", "unit"], "left")
        .withColumn("reason", F.coalesce("reason", "_shared"))
        .drop("_shared")
    )
