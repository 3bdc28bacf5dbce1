"""Stable customer ids across runs: carry, merge, split, create (all in Spark).

Rules, applied per connected component of this run against the previous ``identity_map``:

* each previous id is *kept* by the component holding most of its (still live) records
  (tie: the component whose smallest member key sorts first) -- on a split the largest part
  keeps the id;
* a component keeping one id takes it (new records ``joined`` it); keeping several ids it
  takes the oldest (earliest ``assigned_at`` among the id's rows; tie: the smallest id) and
  the others are ``merged`` into it;
* a component keeping none gets a new id derived from its smallest member key:
  ``"c_" + sha256("customer|" + key)[:16]`` (salted with the run id in the unlikely case it
  equals an id already used); records it took from other ids are ``split`` from them;
* an id none of whose records is live any more is ``retired``.

An unchanged component keeps its id and, row by row, the ``assigned_run_id`` and
``assigned_at`` of the run that assigned it, so a rerun on unchanged silver produces exactly
the previous map.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

KEY = ["record_table", "source", "source_record_id"]
MAP_COLUMNS = [
    "customer_id",
    "source",
    "source_record_id",
    "record_table",
    "assigned_run_id",
    "assigned_at",
    "n_identifiers",
]
MAP_SCHEMA = (
    "customer_id string, source string, source_record_id string, record_table string, "
    "assigned_run_id string, assigned_at timestamp, n_identifiers int"
)
HISTORY_SCHEMA = (
    "old_id string, new_id string, event string, records long, run_id string, at timestamp"
)


def derived_id(key: Column) -> Column:
    """The deterministic id of a new customer whose smallest member key is ``key``."""
    return F.concat(F.lit("c_"), F.substring(F.sha2(F.concat(F.lit("customer|"), key), 256), 1, 16))


def assign_ids(
    members: DataFrame,
    previous: DataFrame | None,
    *,
    run_id: str,
    at: datetime,
    cut: Callable[[DataFrame], DataFrame] | None = None,
) -> tuple[DataFrame, DataFrame]:
    """``(identity_map, history)`` for this run.

    ``members``: one row per live record with ``record_table, source, source_record_id,
    member_key, comp, n_identifiers``. ``previous``: the previous ``identity_map`` (None on
    the first run). History rows: ``old_id, new_id, event, records, run_id, at`` with event
    ``created`` (old_id null), ``joined`` (old_id = new_id: new records), ``merged``,
    ``split`` or ``retired`` (new_id null).
    """
    # ``cut`` materialises the frames that the map and every history branch share: without it
    # the history's plan repeats their lineage in each branch, and Spark's join planning
    # estimated sizes over it for minutes once scored pairs joined the graph.
    keep = cut or (lambda df: df)
    spark = members.sparkSession
    if previous is None:
        previous = spark.createDataFrame([], MAP_SCHEMA)
    prev = previous.select(
        *KEY,
        F.col("customer_id").alias("old_id"),
        F.col("assigned_run_id").alias("old_run"),
        F.col("assigned_at").alias("old_at"),
    )
    comps = members.groupBy("comp").agg(
        F.min("member_key").alias("comp_key"), F.count(F.lit(1)).alias("comp_size")
    )
    comps = keep(comps)
    m = keep(members.join(prev, KEY, "left"))
    parts = keep(
        m.where(F.col("old_id").isNotNull())
        .groupBy("old_id", "comp")
        .agg(F.count(F.lit(1)).alias("n"))
        .join(comps, "comp")
    )
    by_size = Window.partitionBy("old_id").orderBy(F.col("n").desc(), F.col("comp_key"))
    keepers = keep(
        parts.withColumn("_r", F.row_number().over(by_size))
        .where("_r = 1")
        .select("old_id", F.col("comp").alias("keeper"))
    )
    since = previous.groupBy(F.col("customer_id").alias("old_id")).agg(
        F.min("assigned_at").alias("since")
    )
    by_age = Window.partitionBy("keeper").orderBy(F.col("since"), F.col("old_id"))
    survivors = (
        keepers.join(since, "old_id")
        .withColumn("_r", F.row_number().over(by_age))
        .where("_r = 1")
        .select(F.col("keeper").alias("comp"), F.col("old_id").alias("kept_id"))
    )
    taken = previous.select(F.col("customer_id").alias("_taken")).distinct()
    fresh = derived_id(F.col("comp_key"))
    salted = derived_id(F.concat_ws("|", F.col("comp_key"), F.lit(run_id)))
    comp_ids = keep(
        comps.join(survivors, "comp", "left")
        .withColumn("_fresh", fresh)
        .join(taken, F.col("_fresh") == F.col("_taken"), "left")
        .select(
            "comp",
            "comp_size",
            F.coalesce(
                F.col("kept_id"), F.when(F.col("_taken").isNotNull(), salted).otherwise(fresh)
            ).alias("customer_id"),
        )
    )
    same = F.col("old_id").isNotNull() & (F.col("old_id") == F.col("customer_id"))
    identity_map = m.join(comp_ids.select("comp", "customer_id"), "comp").select(
        "customer_id",
        "source",
        "source_record_id",
        "record_table",
        F.when(same, F.col("old_run")).otherwise(F.lit(run_id)).alias("assigned_run_id"),
        F.when(same, F.col("old_at")).otherwise(F.lit(at).cast("timestamp")).alias("assigned_at"),
        F.col("n_identifiers").cast("int").alias("n_identifiers"),
    )

    def rows(old: Column, new: Column, event: Column | str, records: Column) -> list[Column]:
        ev = F.lit(event) if isinstance(event, str) else event
        return [
            old.cast("string").alias("old_id"),
            new.cast("string").alias("new_id"),
            ev.alias("event"),
            records.cast("long").alias("records"),
            F.lit(run_id).alias("run_id"),
            F.lit(at).cast("timestamp").alias("at"),
        ]

    moved = (
        parts.join(comp_ids.select("comp", F.col("customer_id").alias("new_id")), "comp")
        .join(keepers, "old_id")
        .where(F.col("old_id") != F.col("new_id"))
        .select(
            *rows(
                F.col("old_id"),
                F.col("new_id"),
                F.when(F.col("keeper") == F.col("comp"), "merged").otherwise("split"),
                F.col("n"),
            )
        )
    )
    had_old = parts.select("comp").distinct().withColumn("_had_old", F.lit(True))
    arrivals = (
        m.where(F.col("old_id").isNull())
        .groupBy("comp")
        .agg(F.count(F.lit(1)).alias("n"))
        .join(comp_ids, "comp")
        .join(had_old, "comp", "left")
    )
    joined_or_created = arrivals.select(
        *rows(
            F.when(F.col("_had_old").isNotNull(), F.col("customer_id")),
            F.col("customer_id"),
            F.when(F.col("_had_old").isNotNull(), "joined").otherwise("created"),
            F.col("n"),
        )
    )
    retired = (
        previous.groupBy(F.col("customer_id").alias("old_id"))
        .agg(F.count(F.lit(1)).alias("n"))
        .join(parts.select("old_id").distinct(), "old_id", "left_anti")
        .select(*rows(F.col("old_id"), F.lit(None), "retired", F.col("n")))
    )
    history = moved.unionByName(joined_or_created).unionByName(retired)
    return identity_map.select(*MAP_COLUMNS), history


def differs(new: DataFrame, old: DataFrame | None, columns: list[str]) -> bool:
    """True when the two frames do not hold the same multiset of rows over ``columns``
    (a missing ``old``, or one lacking a column, always differs)."""
    if old is None or any(c not in old.columns for c in columns):
        return True
    a, b = new.select(*columns), old.select(*columns)
    return bool(a.exceptAll(b).limit(1).count() or b.exceptAll(a).limit(1).count())
