"""Unit tests for the generator's deterministic draws (``cdp.generate._rand``)."""

from __future__ import annotations

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdp.generate._rand import exponential, poisson, standard_normal, uniform

ROWS = 20_000


@pytest.mark.parametrize("mean", [0.0, 0.3, 2.5, 12.0, 19.9, 20.0, 45.0])
def test_poisson_has_the_mean_and_variance_of_its_parameter(
    spark: SparkSession, mean: float
) -> None:
    """Both branches (exact inverse CDF below 20, normal approximation from 20) give counts
    whose mean and variance are the parameter, within sampling error."""
    key = F.col("id")
    draws = spark.range(ROWS).select(
        poisson(F.lit(mean), uniform(1, "u", key), uniform(1, "u2", key)).alias("n")
    )
    row = draws.agg(F.mean("n").alias("m"), F.var_samp("n").alias("v"), F.min("n")).first()
    assert row is not None
    assert row["min(n)"] >= 0
    tolerance = 5 * (mean / ROWS) ** 0.5 + 0.01  # five standard errors of the mean
    assert row["m"] == pytest.approx(mean, abs=tolerance)
    assert row["v"] == pytest.approx(mean, rel=0.08, abs=0.01)


def test_poisson_is_deterministic_and_null_safe(spark: SparkSession) -> None:
    key = F.col("id")
    frame = spark.range(50).select(
        poisson(F.lit(3.0), uniform(7, "u", key), uniform(7, "u2", key)).alias("a"),
        poisson(F.lit(3.0), uniform(7, "u", key), uniform(7, "u2", key)).alias("b"),
        poisson(F.lit(None).cast("double"), uniform(7, "u", key), uniform(7, "u2", key)).alias("c"),
    )
    rows = frame.collect()
    assert all(r["a"] == r["b"] for r in rows)
    assert len({r["a"] for r in rows}) > 3
    assert {r["c"] for r in rows} == {0}  # a missing rate buys nothing


def test_standard_normal_and_exponential_moments(spark: SparkSession) -> None:
    key = F.col("id")
    draws = spark.range(ROWS).select(
        standard_normal(uniform(3, "z1", key), uniform(3, "z2", key)).alias("z"),
        exponential(uniform(3, "e", key), 4.0).alias("e"),
    )
    row = draws.agg(
        F.mean("z").alias("zm"), F.stddev("z").alias("zs"), F.mean("e"), F.min("e")
    ).first()
    assert row is not None
    assert abs(row["zm"]) < 0.04 and row["zs"] == pytest.approx(1.0, abs=0.03)
    assert row["avg(e)"] == pytest.approx(4.0, rel=0.05) and row["min(e)"] >= 0
