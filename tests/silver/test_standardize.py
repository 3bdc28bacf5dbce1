"""Identifiers in silver (``cdp.silver.standardize.clean_id``)."""

from __future__ import annotations

from chispa import assert_df_equality
from pyspark.sql import SparkSession

from cdp.silver import standardize as S


def test_ids_are_trimmed_and_float_artifacts_become_the_integer(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [
            ("a", "13085.0"),  # pandas' float column of an id with gaps
            ("b", " 13085 "),
            ("c", "00042"),  # leading zeros are part of the id
            ("d", "-7.00"),
            ("e", "12.5"),  # not integral: kept as written
            ("f", "C489449"),
            ("g", "   "),
            ("h", None),
            ("i", "1.0e3"),
        ],
        "k string, customer_id string",
    )
    expected = spark.createDataFrame(
        [
            ("a", "13085"),
            ("b", "13085"),
            ("c", "00042"),
            ("d", "-7"),
            ("e", "12.5"),
            ("f", "C489449"),
            ("g", None),
            ("h", None),
            ("i", "1.0e3"),
        ],
        "k string, customer_id string",
    )
    # Row order is the input's (a projection), and nullability is not what is tested.
    assert_df_equality(df.transform(S.clean_id("customer_id")), expected, ignore_nullable=True)
