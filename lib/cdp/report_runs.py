"""What the run report reads from the run log and the tables: the latest run of each stage,
and small grouped counts. Every figure is a small aggregate computed in Spark; only those
aggregates reach the driver. A bottom module like ``report_page`` (no stage imports)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F


@dataclass(frozen=True)
class RunRow:
    job: str
    env: str
    status: str
    run_id: str
    started_at: datetime | None
    duration_s: float | None
    as_of: Any
    rows_read: dict[str, int]
    rows_written: dict[str, int]
    rows_quarantined: dict[str, int]
    metrics: dict[str, str]
    error: str | None


# Per stage name: its latest run (see latest_runs) and how many runs failed after it.
Runs = Mapping[str, tuple[RunRow, int]]


def latest_runs(run_log: DataFrame, env: str | None = None) -> dict[str, tuple[RunRow, int]]:
    """Per job: its latest successful run (else its latest run) and how many runs failed since.

    One row per job reaches the driver.
    """
    df = run_log if env is None else run_log.where(F.col("env") == env)
    by_job = Window.partitionBy("job")
    last_ok = F.max(F.when(F.col("status") == "success", F.col("started_at"))).over(by_job)
    ranked = (
        df.withColumn("_last_ok", last_ok)
        .withColumn(
            "_failed_after",
            F.sum(
                F.when(
                    (F.col("status") != "success")
                    & (F.col("_last_ok").isNull() | (F.col("started_at") > F.col("_last_ok"))),
                    1,
                ).otherwise(0)
            ).over(by_job),
        )
        .withColumn(
            "_rank",
            F.row_number().over(
                by_job.orderBy((F.col("status") == "success").desc(), F.col("started_at").desc())
            ),
        )
        .where(F.col("_rank") == 1)
    )
    out: dict[str, tuple[RunRow, int]] = {}
    for r in ranked.collect():
        out[r["job"]] = (
            RunRow(
                job=r["job"],
                env=r["env"],
                status=r["status"],
                run_id=r["run_id"],
                started_at=r["started_at"],
                duration_s=r["duration_s"],
                as_of=r["as_of"],
                rows_read=dict(r["rows_read"] or {}),
                rows_written=dict(r["rows_written"] or {}),
                rows_quarantined=dict(r["rows_quarantined"] or {}),
                metrics=dict(r["metrics"] or {}),
                error=r["error"],
            ),
            int(r["_failed_after"] or 0),
        )
    return out


def group_counts(df: DataFrame, *cols: str, sum_col: str | None = None) -> list[tuple[Any, ...]]:
    """Rows (or the sum of ``sum_col``) per ``cols``, largest first, at most 200 groups."""
    agg = F.sum(sum_col) if sum_col else F.count(F.lit(1))
    rows = df.groupBy(*cols).agg(agg.alias("n")).orderBy(F.desc("n"), *cols).limit(200)
    return [tuple(r) for r in rows.collect()]
