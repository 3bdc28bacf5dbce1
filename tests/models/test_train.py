"""The two scorers a model is compared with (``cdp.models.train``, ``train_steps``): the
recency/frequency heuristic and BG/NBD's expected purchases alone."""

from __future__ import annotations

import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession

from cdp.models.labels import LABEL
from cdp.models.settings import ModelsConfig, ModelSpec
from cdp.models.train import SCORE, btyd_score, heuristic_score
from cdp.models.train_steps import evaluate_btyd

EXPECTED = "btyd_expected_purchases_90d"  # cdp.value.score.feature_columns(90)


def test_btyd_score_ranks_by_expected_purchases_and_reverses_for_churn(
    spark: SparkSession,
) -> None:
    df = spark.createDataFrame(
        [("a", 2.5), ("b", None), ("c", 0.1)], f"customer_id string, {EXPECTED} double"
    )
    # No history (null): expects no purchase; churn ranks the other way round.
    expected = spark.createDataFrame(
        [("a", 2.5, 2.5, -2.5), ("b", None, 0.0, -0.0), ("c", 0.1, 0.1, -0.1)],
        f"customer_id string, {EXPECTED} double, purchase double, churn double",
    )
    got = (
        df.transform(btyd_score("purchase", EXPECTED))
        .withColumnRenamed(SCORE, "purchase")
        .transform(btyd_score("churn", EXPECTED))
        .withColumnRenamed(SCORE, "churn")
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_heuristic_prefers_recent_frequent_buyers(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [("often", 12, 5), ("once", 1, 300), ("never", None, None)],
        "customer_id string, orders_365d int, recency_days int",
    )
    scores = {
        r["customer_id"]: r[SCORE] for r in df.transform(heuristic_score("purchase")).collect()
    }
    assert scores["often"] > scores["once"] > scores["never"]


def test_evaluate_btyd_needs_a_fit(spark: SparkSession) -> None:
    """BG/NBD is compared only where the features carry a fit: no column or only nulls
    (the option off, too few buyers) gives no evaluation instead of a constant 0.5."""
    spec, settings = ModelSpec(name="purchase_90d", label="purchase"), ModelsConfig()
    rows = [(f"c{i}", i % 2, float(i % 2) + i / 100) for i in range(20)]
    scored = spark.createDataFrame(rows, f"customer_id string, {LABEL} int, {EXPECTED} double")
    ev = evaluate_btyd(scored, spec, settings)
    assert ev is not None and ev.roc_auc == pytest.approx(1.0)
    nulls = scored.withColumn(EXPECTED, scored[EXPECTED] * None)
    assert evaluate_btyd(nulls, spec, settings) is None
    assert evaluate_btyd(scored.drop(EXPECTED), spec, settings) is None
