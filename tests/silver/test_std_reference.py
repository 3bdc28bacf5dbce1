"""Reference values: gender (``cdp.silver.standardize.standardize_gender``, ``std_reference``)."""

from __future__ import annotations

from chispa import assert_df_equality
from pyspark.sql import SparkSession
from std_helpers import check, expect, run

from cdp.silver import standardize as S
from cdp.silver.std_common import fold_key_py
from cdp.silver.std_reference import GENDERS

# --- gender --------------------------------------------------------------------------------


def test_gender(spark: SparkSession) -> None:
    rows = [
        (1, "m", "male", "ok"),
        (2, "MALE", "male", "ok"),
        (3, "Männlich", "male", "ok"),
        (4, "F", "female", "ok"),
        (5, "w", "female", "ok"),
        (6, "x", "other", "ok"),
        (7, "Non-Binary", "other", "ok"),
        (8, "non binary", "other", "ok"),
        (9, "Unknown", "unknown", "ok"),  # an explicit answer, not a placeholder
        (10, "Prefer not to say", "unknown", "ok"),
        (11, "n/a", None, "empty"),
        (12, " ", None, "empty"),
        (13, "1", None, "invalid"),  # numeric codes differ by source
        (14, "yes", None, "invalid"),
    ]
    got = run(spark, S.standardize_gender("v"), [(i, v) for i, v, _, _ in rows], "id int, v string")
    check(got, expect(spark, [(i, g, v, s) for i, v, g, s in rows]))
    assert set(GENDERS.values()) == set(S.GENDER_VALUES)
    assert all(fold_key_py(k) == k for k in GENDERS)  # keys are already in lookup form


def test_no_value_matches_what_a_standardizer_makes_of_a_missing_field(
    spark: SparkSession,
) -> None:
    # A source that does not map `phone` gets literals instead of a UDF pass over every row;
    # the columns must be exactly those standardize_phone emits for a null input.
    df = spark.createDataFrame([("1", None), ("2", None)], "id string, phone string")
    via_udf = df.transform(S.standardize_phone("phone", default_region="GB"))
    assert_df_equality(
        df.transform(S.no_value("phone")).select(*via_udf.columns),
        via_udf,
        ignore_row_order=False,
        ignore_nullable=True,  # literals are non-nullable; the UDF's output is nullable
    )
    assert {r["phone_status"] for r in via_udf.collect()} == {S.STATUS_EMPTY}
