"""Merge protection: identifier values evidently shared by several people.

Each link whose value is shared gets a ``reason``: ``shared:records`` (a value on more
records than ``max_records``), ``shared:distinct_<field>`` (a value behind several birth
dates ...), or one found by another check (``shared:email_name``, see
:mod:`cdp.identity.email_names`); an event link touching such a value inherits it.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdp.identity.conflicts import dates_conflict
from cdp.identity.rules import IdentityRules


def mark_shared(
    links: DataFrame,
    rules: IdentityRules,
    also_shared: DataFrame | None = None,
    order_lines: DataFrame | None = None,
) -> DataFrame:
    """Set ``reason`` to ``shared:...`` on links whose value is evidently shared by people.

    A value is shared when more live records than ``max_records`` carry it, or when the
    records carrying it hold more distinct values of a ``max_distinct`` field than allowed
    (two birth dates behind one e-mail). Checked per (id_type, value) over all rules.
    ``also_shared`` (``unit, _shared``) adds values found shared otherwise, such as
    :func:`cdp.identity.email_names.email_name_verdicts`; the checks above name the reason when both apply.
    ``order_lines`` (``other, _order``, :func:`cdp.identity.nodes.order_lines`): records that
    are lines of one order count as one record.
    """
    sv = rules.shared_values
    fields = sorted(sv.max_distinct)
    ok = links.where(F.col("reason").isNull())
    # A field with date_conflicts counts its values the same way: a mistyped birth date
    # behind one value is one person's, not a second person.
    dated = {f for f in fields if f in rules.date_conflicts and sv.max_distinct[f] == 1}
    counted = F.col("other")
    if order_lines is not None:
        ok = ok.join(order_lines, "other", "left")
        counted = F.coalesce(F.col("_order"), F.col("other"))
    aggs = [F.countDistinct(counted).alias("_n_records")]
    aggs += [
        (F.collect_set(f"_d_{f}") if f in dated else F.countDistinct(f"_d_{f}")).alias(f"_n_{f}")
        for f in fields
    ]
    stats = ok.groupBy("unit").agg(*aggs)
    verdict = F.lit(None).cast("string")
    checks: list[tuple[Column, str]] = []
    if sv.max_records is not None:
        checks.append((F.col("_n_records") > sv.max_records, "shared:records"))
    for f in fields:
        if f in dated:
            values = F.col(f"_n_{f}")
            broken = (F.size(values) > 1) & dates_conflict(values, rules.date_conflicts[f])
        else:
            broken = F.col(f"_n_{f}") > sv.max_distinct[f]
        checks.append((broken, f"shared:distinct_{f}"))
    for cond, label in reversed(checks):  # the first check listed wins
        verdict = F.when(cond, label).otherwise(verdict)
    shared = stats.select("unit", verdict.alias("_shared")).where(F.col("_shared").isNotNull())
    if also_shared is not None:
        extra = also_shared.select("unit", "_shared").join(shared, "unit", "left_anti")
        shared = shared.unionByName(extra)
    return (
        links.join(shared, "unit", "left")
        .withColumn("reason", F.coalesce("reason", "_shared"))
        .drop("_shared", *[f"_d_{f}" for f in fields])
    )


def reject_shared_endpoints(elinks: DataFrame, id_links: DataFrame) -> DataFrame:
    """An event link touching a value found shared among records is rejected too."""
    shared = (
        id_links.where(F.col("reason").startswith("shared:"))
        .groupBy("unit")
        .agg(F.min("reason").alias("_r"))
    )
    by_unit = shared.withColumnRenamed("_r", "_ru")
    by_other = shared.withColumnRenamed("unit", "other").withColumnRenamed("_r", "_ro")
    return (
        elinks.join(by_unit, "unit", "left")
        .join(by_other, "other", "left")
        .withColumn("reason", F.coalesce("reason", "_ru", "_ro"))
        .drop("_ru", "_ro")
    )
