"""The customer-value columns of gold/customer_profile: the latest CLV and P(alive).

The profile reads gold/customer_value when it exists; without it (the ``value`` stage not
run yet, or a company without transactions) the columns are null and the run log names the
missing table, so the profile never waits for, nor fails on, the value stage.
"""

from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from cdp import tables as T
from cdp.optional_inputs import record_missing
from cdp.stage import StageContext

PROFILE_VALUE_COLUMNS = ("clv_12m", "p_alive", "value_as_of")
VALUE_DDL = "customer_id string, clv_12m double, p_alive double, value_as_of date"


def latest_value(values: DataFrame, profile_as_of: date) -> DataFrame:
    """customer_id and :data:`PROFILE_VALUE_COLUMNS` from the newest slice of
    gold/customer_value that a profile at ``profile_as_of`` may show: value at ``as_of``
    uses data before that day, so the slice of ``profile_as_of + 1`` (the day after the
    profile's last day of data) and older ones."""
    limit = F.lit((profile_as_of + timedelta(days=1)).isoformat()).cast("date")
    newest = Window.partitionBy("customer_id").orderBy(F.col("as_of").desc())
    return (
        values.where(F.col("as_of") <= limit)
        .withColumn("_rank", F.row_number().over(newest))
        .where(F.col("_rank") == 1)
        .select(
            "customer_id",
            F.col("clv_12m").cast("double").alias("clv_12m"),
            F.col("p_alive").cast("double").alias("p_alive"),
            F.col("as_of").alias("value_as_of"),
        )
    )


def value_for_profile(ctx: StageContext, profile_as_of: date) -> DataFrame:
    """:func:`latest_value` of gold/customer_value, or an empty frame (recorded as missing)."""
    table = T.CUSTOMER_VALUE.name
    if not ctx.store.exists(table):
        record_missing(ctx, table, "clv_12m and p_alive stay empty")
        return ctx.spark.createDataFrame([], VALUE_DDL)
    return latest_value(ctx.store.read(table), profile_as_of)


def with_value(profile: DataFrame, value: DataFrame) -> DataFrame:
    """``profile`` with :data:`PROFILE_VALUE_COLUMNS` placed before its ``as_of``."""
    columns = [c for c in profile.columns if c != "as_of"]
    joined = profile.join(value, "customer_id", "left")
    tail = ["as_of"] if "as_of" in profile.columns else []
    return joined.select(*columns, *PROFILE_VALUE_COLUMNS, *tail)
