"""Batch scoring: a fitted pipeline over gold/customer_features -> gold/propensity_scores rows.

Deciles: 1 (lowest scores) .. 10 (highest), from approximate quantiles of the score with a
deterministic customer-hash tie-break, so equal scores still split evenly and a rerun gives
every customer the same decile.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, DoubleType, IntegerType, StringType, StructField, StructType

from cdp.models.features import KEY
from cdp.models.train import SCORE, bucket_of, with_score

SCORES_SCHEMA = StructType(
    [
        StructField("customer_id", StringType()),
        StructField("model_name", StringType()),
        StructField("model_version", StringType()),
        StructField("score", DoubleType()),
        StructField("decile", IntegerType()),
        StructField("as_of", DateType()),
        StructField("run_id", StringType()),
    ]
)


def raw_scores(model: PipelineModel, features: DataFrame) -> DataFrame:
    """``customer_id, score`` for every row of ``features``."""
    return with_score(model.transform(features)).select(KEY, SCORE)


def with_deciles(scored: DataFrame, thresholds: Sequence[float]) -> DataFrame:
    """``decile`` 1..10 from the 9 decile thresholds of the tie-broken score."""
    return scored.withColumn("decile", (bucket_of(thresholds) + 1).cast("int"))


def score_rows(
    scored: DataFrame,
    *,
    thresholds: Sequence[float],
    model_name: str,
    model_version: str,
    as_of: date,
    run_id: str,
) -> DataFrame:
    """Rows of gold/propensity_scores, in its column order."""
    return with_deciles(scored, thresholds).select(
        F.col(KEY).cast("string").alias("customer_id"),
        F.lit(model_name).alias("model_name"),
        F.lit(model_version).alias("model_version"),
        F.col(SCORE).cast("double").alias("score"),
        F.col("decile").cast("int").alias("decile"),
        F.lit(as_of.isoformat()).cast("date").alias("as_of"),
        F.lit(run_id).alias("run_id"),
    )
