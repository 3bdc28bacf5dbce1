"""Labels: what happened after ``as_of``, from attributed silver transactions.

A purchase is an order that is one (:mod:`cdp.orders`): a refund or a cancellation in the
horizon is not a purchase, and a line-level export's invoice counts once.

* ``purchased``: a purchase in ``[as_of, as_of + horizon_days)``;
* ``active``: a purchase in ``[as_of - lookback_days, as_of)``;
* ``churned``: active and not purchased.
"""

from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cdp.models.features import KEY, attributed_orders, is_active
from cdp.models.settings import LabelConfig, ModelSpec
from cdp.orders import IS_PURCHASE

LABEL = "label"
# On training data of a model that learns beyond its population (``train_population``): true
# for the rows of the scored population. Splits keep only those in validation and holdout.
IN_POPULATION = "_in_population"


def build_labels(
    *, transactions: DataFrame, identity_map: DataFrame, as_of: date, labels: LabelConfig
) -> DataFrame:
    """``customer_id, purchased, active, churned`` (ints) for customers who bought in the
    lookback window or the horizon; everyone else has all three 0."""
    start = F.lit((as_of - timedelta(days=labels.lookback_days)).isoformat()).cast("timestamp")
    cutoff = F.lit(as_of.isoformat()).cast("timestamp")
    end = F.lit((as_of + timedelta(days=labels.horizon_days)).isoformat()).cast("timestamp")
    t = F.col("order_time")
    per = (
        attributed_orders(transactions, identity_map)
        .where(F.col(IS_PURCHASE) & (t >= start) & (t < end))
        .groupBy(KEY)
        .agg(
            F.max((t >= cutoff).cast("int")).alias("purchased"),
            F.max((t < cutoff).cast("int")).alias("active"),
        )
    )
    return per.withColumn(
        "churned", ((F.col("active") == 1) & (F.col("purchased") == 0)).cast("int")
    )


def labelled(
    features: DataFrame,
    labels_df: DataFrame,
    spec: ModelSpec,
    config: LabelConfig,
    *,
    training: bool = False,
) -> DataFrame:
    """The features of ``spec``'s population with a double ``label`` column.

    ``training``: for a model that learns beyond its population
    (:attr:`ModelSpec.trains_beyond_population`), every customer, with :data:`IN_POPULATION`
    saying who is in the population; a churn label there reads "no purchase in the horizon",
    which is the churn label on the active customers."""
    joined = features.join(labels_df.select(KEY, "purchased", "churned"), KEY, "left")
    if training and spec.trains_beyond_population:
        purchased = F.coalesce(F.col("purchased"), F.lit(0))
        label = purchased if spec.label == "purchase" else 1 - purchased
        return joined.select(
            *features.columns,
            label.cast("double").alias(LABEL),
            is_active(config.lookback_days).alias(IN_POPULATION),
        )
    if spec.scores_active:
        joined = joined.where(is_active(config.lookback_days))
    column = "purchased" if spec.label == "purchase" else "churned"
    return joined.withColumn(LABEL, F.coalesce(F.col(column), F.lit(0)).cast("double")).drop(
        "purchased", "churned"
    )


def population(features: DataFrame, spec: ModelSpec, config: LabelConfig) -> DataFrame:
    """The customers ``spec`` is scored on (churn: only active ones)."""
    if spec.scores_active:
        return features.where(is_active(config.lookback_days))
    return features
