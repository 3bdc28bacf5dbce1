"""Ground truth: which person each record belongs to, and purchase labels per cutoff."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import date, datetime, timezone

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cdp.generate.timeline import DAY, Timeline


def identity_frame(metas: Mapping[str, DataFrame], multi_version: Collection[str]) -> DataFrame:
    """(source, source_record_id, person_id) once per distinct record of every source.

    ``metas`` holds each source's bookkeeping columns (see :mod:`cdp.generate._frame`).
    Every generated record is listed, bad ones included (ingestion may quarantine them, but
    they still belong to someone). ``person_id`` is null for anonymous web visitors and for
    cookies that never identify.
    """
    parts = []
    for name, meta in metas.items():
        df = meta.filter(~F.col("_dup")).select(
            F.lit(name).alias("source"),
            F.col("_rid").alias("source_record_id"),
            F.col("_pid").cast("long").alias("person_id"),
        )
        if name in multi_version:
            df = df.dropDuplicates(["source_record_id"])
        parts.append(df)
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    return out


def _epoch(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp())


def labels_frame(person_ids: DataFrame, purchases: DataFrame, timeline: Timeline) -> DataFrame:
    """Purchase and churn labels for every person at the train and the scoring cutoff.

    ``purchased_in_horizon``: a purchase in ``[cutoff, cutoff + horizon)``.
    ``active_before_cutoff``: a purchase in ``[cutoff - 365 days, cutoff)``.
    ``churned``: active before the cutoff and no purchase in the horizon.
    """
    h = timeline.horizon_days
    aggs = []
    cutoffs = {"train": timeline.train_cutoff, "scoring": timeline.scoring_cutoff}
    for name, cutoff in cutoffs.items():
        c = _epoch(cutoff)
        ts = F.col("purchase_ts")
        aggs.append(F.max(((ts >= c) & (ts < c + h * DAY)).cast("int")).alias(f"{name}_in_horizon"))
        aggs.append(F.max(((ts >= c - 365 * DAY) & (ts < c)).cast("int")).alias(f"{name}_before"))
    per_person = purchases.groupBy("person_id").agg(*aggs)
    joined = person_ids.join(per_person, "person_id", "left")
    rows = []
    for name, cutoff in cutoffs.items():
        in_h = F.coalesce(F.col(f"{name}_in_horizon"), F.lit(0)) == 1
        before = F.coalesce(F.col(f"{name}_before"), F.lit(0)) == 1
        rows.append(
            joined.select(
                "person_id",
                F.lit(name).alias("cutoff_name"),
                F.lit(cutoff.isoformat()).cast("date").alias("cutoff_date"),
                F.lit(h).alias("horizon_days"),
                in_h.alias("purchased_in_horizon"),
                (before & ~in_h).alias("churned"),
                before.alias("active_before_cutoff"),
            )
        )
    return rows[0].unionByName(rows[1])
