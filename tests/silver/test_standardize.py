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


def test_a_source_s_birth_date_floor_keeps_the_dates_of_people_born_long_ago(
    spark: SparkSession,
) -> None:
    from pyspark.sql import functions as F

    from cdp.silver.model import TABLES
    from cdp.silver.stage import standardize
    from cdp.sources import SourceSpec

    table = TABLES["person_records"]
    rows = [("1630-08-01",), ("1899-12-31",), ("1985-04-02",)]
    df = spark.createDataFrame(rows, "birth_date string")
    for f in table.fields:
        if f not in df.columns:
            df = df.withColumn(f, F.lit(None).cast("string"))

    def read(**defaults: str) -> list[tuple[object, str]]:
        spec = SourceSpec.model_validate(
            {"name": "register", "kind": "profile", "format": "csv", "path": "r/*.csv",
             "mapping": {"birth_date": "dob"}, "defaults": defaults}
        )  # fmt: skip
        out = df.transform(standardize(spec, table)).orderBy("birth_date_raw")
        return [(r["birth_date"], r["birth_date_status"]) for r in out.collect()]

    import datetime as dt

    # Silver's own floor: a living customer born before 1900 is a typo.
    assert read() == [(None, "invalid"), (None, "invalid"), (dt.date(1985, 4, 2), "ok")]
    assert read(birth_date_min="1600-01-01") == [
        (dt.date(1630, 8, 1), "ok"),
        (dt.date(1899, 12, 31), "ok"),
        (dt.date(1985, 4, 2), "ok"),
    ]
