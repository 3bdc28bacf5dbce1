"""The output convention every standardizer keeps (``f``, ``f_raw``, ``f_status``) and ``no_value``."""

from __future__ import annotations

import pytest
from pyspark.sql import SparkSession
from std_helpers import check, expect

from cdp.silver import standardize as S

# --- output convention ---------------------------------------------------------------------


def test_convention_in_place_keeps_position_and_appends_raw_and_status(spark: SparkSession) -> None:
    df = spark.createDataFrame([(1, " A@X.COM ", "k")], "id int, email string, other string")
    got = df.transform(S.standardize_email())
    expected = expect(
        spark,
        [(1, "a@x.com", "k", " A@X.COM ", "ok")],
        "id int, email string, other string, email_raw string, email_status string",
    )
    check(got, expected)


def test_convention_out_keeps_input_column(spark: SparkSession) -> None:
    df = spark.createDataFrame([(1, "uk")], "id int, country_src string")
    got = df.transform(S.standardize_country("country_src", out="country"))
    expected = expect(
        spark,
        [(1, "uk", "GB", "uk", "ok")],
        "id int, country_src string, country string, country_raw string, country_status string",
    )
    check(got, expected)


def test_emit_replaces_columns_as_with_columns_does_whatever_their_case(
    spark: SparkSession,
) -> None:
    # emit builds its outputs in one projection; the result must be what
    # `withColumns(outputs).drop(temporaries)` gives: a replaced column keeps its place and
    # takes the new name (Spark matches names case-insensitively), new ones come last.
    from pyspark.sql import functions as F

    from cdp.silver.std_common import emit, temp

    df = spark.createDataFrame(
        [(1, " a ", "old", "x"), (2, None, "old", "y")],
        "id int, v string, V_STATUS string, other string",
    ).withColumn(temp("v", "clean"), F.trim("v"))
    value, empty = F.upper(F.col(temp("v", "clean"))), F.col("v").isNull()
    got = emit(df, src="v", out="v", value=value, empty=empty, extra={"v_len": F.length})
    staged = df.withColumns({"_val": value, "_empty": F.coalesce(empty, F.lit(False))})
    final = F.when(~F.col("_empty"), F.col("_val"))
    reference = staged.withColumns(
        {
            "v": final,
            "v_raw": F.col("v").cast("string"),
            "v_status": F.when(F.col("_empty"), "empty")
            .when(F.col("_val").isNull(), "invalid")
            .otherwise("ok"),
            "v_len": F.length(final),
        }
    ).drop("_val", "_empty", temp("v", "clean"))
    assert got.columns == ["id", "v", "v_status", "other", "v_raw", "v_len"]
    assert got.columns == reference.columns
    assert sorted(got.collect()) == sorted(reference.collect())


def test_raw_is_the_input_as_string_for_non_string_columns(spark: SparkSession) -> None:
    # A phone read as a number by schema inference still keeps a raw text.
    df = spark.createDataFrame([(1, 442079460958)], "id int, v long")
    got = df.transform(S.standardize_phone("v", default_region=None))
    # Without "+" and without a region the number cannot be read: invalid, raw kept as text.
    check(got, expect(spark, [(1, None, "442079460958", "invalid")]))


def test_missing_column_fails_early(spark: SparkSession) -> None:
    df = spark.createDataFrame([(1,)], "id int")
    with pytest.raises(ValueError, match="email"):
        df.transform(S.standardize_email())
    with pytest.raises(ValueError, match="country"):
        spark.createDataFrame([("x",)], "postcode string").transform(S.standardize_postcode())


@pytest.mark.parametrize("escaped_literals", ["false", "true"])
def test_constant_maps_hold_quotes_backslashes_and_accents_as_given(
    spark: SparkSession, escaped_literals: str
) -> None:
    # Built as one SQL expression: the values must read the same under either setting of
    # the parser's escape handling (a user's cluster may set it).
    from cdp.silver.std_common import map_literal, map_of_lists_literal

    mapping = {"o'neil": "a\\b", "zoë": "ü'\\n", "plain": "v", "": "empty"}
    lists = {"bob": ["robert", "rob'"], "none": []}
    previous = spark.conf.get("spark.sql.parser.escapedStringLiterals")
    spark.conf.set("spark.sql.parser.escapedStringLiterals", escaped_literals)
    try:
        row = (
            spark.range(1)
            .select(
                map_literal(mapping).alias("m"),
                map_of_lists_literal(lists).alias("l"),
                map_literal({}).alias("e"),
            )
            .first()
        )
    finally:
        spark.conf.set("spark.sql.parser.escapedStringLiterals", previous)
    assert row is not None
    assert row.m == mapping
    assert row.l == lists
    assert row.e == {}
