"""Optional silver inputs: a canonical table that does not exist reads as empty, and the run log
says which one was missing.

A company may onboard only some kinds of source: a retailer with a transaction log has no
events, no consents and no person records, so silver never writes those tables. The stages
after silver (profile, features, train, score, backtest, export) declare them as optional
reads (:mod:`cdp.pipeline`) and read them through :func:`read_or_empty`: a missing table
becomes an empty frame with the table's canonical columns (so the code after it needs no
special case), the run log gets the metric ``input_missing:<table>`` = 1 and the stage's
progress says what the missing table means for this run. "No such table" is therefore never
silently the same as "a table without rows" to whoever reads the run log.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from cdp.silver.model import TABLES, empty_schema_ddl
from cdp.stage import StageContext

MISSING_METRIC_PREFIX = "input_missing:"


def missing_metric(table: str) -> str:
    """The run-log key that says ``table`` was missing (``input_missing:silver/events``)."""
    return f"{MISSING_METRIC_PREFIX}{table}"


def missing_inputs(metrics: dict[str, str]) -> list[str]:
    """The tables a run's metrics name as missing, sorted."""
    return sorted(
        key[len(MISSING_METRIC_PREFIX) :]
        for key, value in metrics.items()
        if key.startswith(MISSING_METRIC_PREFIX) and value == "1"
    )


def record_missing(ctx: StageContext, table: str, consequence: str = "") -> None:
    """Put the missing ``table`` in the run log and the stage's progress; ``consequence``
    says what this stage does without it."""
    ctx.run.metric(missing_metric(table), 1)
    ctx.log.info("optional input %s does not exist", table)
    ctx.progress(
        f"{table} does not exist: read as empty" + (f" ({consequence})" if consequence else "")
    )


def empty_silver(spark: SparkSession, table: str) -> DataFrame:
    """An empty frame with the canonical columns of the silver table ``table``."""
    for canonical in TABLES.values():
        if canonical.table == table:
            return spark.createDataFrame([], empty_schema_ddl(canonical))
    raise KeyError(f"{table} is not a canonical silver table")


def read_or_empty(ctx: StageContext, table: str, consequence: str = "") -> DataFrame:
    """``table`` as it is now, or, when it does not exist, an empty frame with its canonical
    columns (recorded as missing, see :func:`record_missing`)."""
    if ctx.store.exists(table):
        return ctx.store.read(table)
    record_missing(ctx, table, consequence)
    return empty_silver(ctx.spark, table)
