"""Labels and the customers a model learns from (``cdp.models.labels``), and how the split
keeps a model that learns beyond its population measured on that population
(``cdp.models.train.split_customers``)."""

from __future__ import annotations

from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdp.models.labels import IN_POPULATION, LABEL, labelled
from cdp.models.settings import LabelConfig, ModelsConfig, ModelSpec
from cdp.models.train import split_customers

FEATURES = "customer_id string, recency_days double, orders_365d int"
LABELS = "customer_id string, purchased int, churned int"
LOOKBACK = LabelConfig(lookback_days=365)


def _frames(spark: SparkSession):  # type: ignore[no-untyped-def]
    # active and bought again; active and lapsed; lapsed long ago and back; lapsed, gone;
    # never bought (no recency).
    features = spark.createDataFrame(
        [
            ("again", 10.0, 3),
            ("lapsed", 200.0, 1),
            ("back", 500.0, 0),
            ("gone", 700.0, 0),
            ("never", None, 0),
        ],
        FEATURES,
    )
    labels = spark.createDataFrame(
        [("again", 1, 0), ("lapsed", 0, 1), ("back", 1, 0)],
        LABELS,
    )
    return features, labels


def test_churn_is_measured_on_the_active_customers(spark: SparkSession) -> None:
    features, labels = _frames(spark)
    spec = ModelSpec(name="churn_90d", label="churn", population="active")
    got = labelled(features, labels, spec, LOOKBACK, training=True)
    expected = spark.createDataFrame(
        [("again", 10.0, 3, 0.0), ("lapsed", 200.0, 1, 1.0)],
        f"{FEATURES}, {LABEL} double",
    )
    # Same columns in the same order (what the search reads); rows in any order.
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_churn_trained_on_everyone_learns_no_purchase_and_marks_its_population(
    spark: SparkSession,
) -> None:
    features, labels = _frames(spark)
    spec = ModelSpec(name="churn_90d", label="churn", population="active", train_population="all")
    got = labelled(features, labels, spec, LOOKBACK, training=True)
    # Everyone, labelled "no purchase in the horizon" (the churn label on the active ones).
    expected = spark.createDataFrame(
        [
            ("again", 10.0, 3, 0.0, True),
            ("lapsed", 200.0, 1, 1.0, True),
            ("back", 500.0, 0, 0.0, False),
            ("gone", 700.0, 0, 1.0, False),
            ("never", None, 0, 1.0, False),
        ],
        f"{FEATURES}, {LABEL} double, {IN_POPULATION} boolean",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
    # Evaluated (a backtest's later date, the default): the population only, as before.
    evaluated = labelled(features, labels, spec, LOOKBACK)
    assert sorted(r["customer_id"] for r in evaluated.collect()) == ["again", "lapsed"]
    assert IN_POPULATION not in evaluated.columns


def test_a_purchase_model_on_everyone_is_unchanged_by_training(spark: SparkSession) -> None:
    features, labels = _frames(spark)
    spec = ModelSpec(name="purchase_90d", label="purchase", train_population="all")
    assert not spec.trains_beyond_population
    assert_df_equality(
        labelled(features, labels, spec, LOOKBACK, training=True),
        labelled(features, labels, spec, LOOKBACK),
        ignore_row_order=True,
    )


def test_split_trains_on_everyone_and_measures_on_the_population(spark: SparkSession) -> None:
    rows = [(f"c{i}", float(i % 2), i % 3 == 0) for i in range(600)]
    data = spark.createDataFrame(
        rows, f"customer_id string, {LABEL} double, {IN_POPULATION} boolean"
    )
    split = split_customers(data, ModelsConfig())
    inside = {r[0] for r in rows if r[2]}
    parts = {
        name: {r["customer_id"] for r in df.collect()}
        for name, df in (
            ("train", split.train),
            ("validation", split.validation),
            ("holdout", split.holdout),
        )
    }
    assert all(
        IN_POPULATION not in df.columns for df in (split.train, split.validation, split.holdout)
    )
    assert parts["validation"] and parts["holdout"] and parts["validation"] <= inside
    assert parts["holdout"] <= inside
    assert parts["train"] - inside, "the train part keeps customers outside the population"
    # The same customers fall in the same parts as without the flag (hash by customer).
    plain = split_customers(data.drop(IN_POPULATION), ModelsConfig())
    assert parts["holdout"] == {r[0] for r in plain.holdout.collect()} & inside
    assert parts["train"] == {r[0] for r in plain.train.collect()}
    assert split.train.where(F.col(LABEL).isNull()).count() == 0
    # What a calibration to the population fits on: the train part's population customers.
    assert {r["customer_id"] for r in split.population_train.collect()} == parts["train"] & inside
    assert plain.population_train is plain.train
