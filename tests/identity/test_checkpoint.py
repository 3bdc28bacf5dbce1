"""Cuts keep the rows and forget the size estimate of the plan they cut."""

from __future__ import annotations

from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdp.identity.checkpoint import cut

# Spark's estimate for a frame it knows nothing about (2^63 - 1 bytes), as its plans print it.
UNKNOWN_SIZE = "sizeInBytes=8.0 EiB"


def _size(df) -> str:  # type: ignore[no-untyped-def]
    return str(df._jdf.queryExecution().optimizedPlan().stats().simpleString())


def test_a_cut_keeps_the_rows_and_their_order(spark: SparkSession) -> None:
    df = spark.createDataFrame([(1, "a"), (2, "b"), (3, None)], "k int, v string")
    for reliable in (True, False):
        assert_df_equality(cut(df.orderBy("k"), reliable=reliable), df.orderBy("k"))


def test_estimates_do_not_compound_across_cuts(spark: SparkSession) -> None:
    # An iterative plan: each round joins the last round's cut with a small frame. Inner
    # joins are estimated as the product of their sides, and a checkpoint used to inherit
    # that estimate, so it squared round after round (thousands of digits by round 10, with
    # planning time to match). After a cut the frame's size is Spark's "unknown", every round.
    base = spark.range(50).withColumn("k", F.col("id") % 5)
    frame = base
    sizes = []
    for i in range(10):
        other = base.select("k", F.col("id").alias(f"x{i}"))
        rounds = cut(frame.join(other, "k").groupBy("k", "id").agg(F.max(f"x{i}").alias("m")))
        sizes.append(_size(rounds))
        frame = rounds.select("k", "id")
    assert sizes == [UNKNOWN_SIZE] * 10, sizes
    assert_df_equality(frame.orderBy("id"), base.select("k", "id").orderBy("id"))
