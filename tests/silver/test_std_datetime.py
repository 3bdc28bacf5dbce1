"""Timestamps and dates (``cdp.silver.std_datetime``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from std_helpers import UTC, check, expect, raw_of, run

from cdp.silver import standardize as S

# --- timestamps and dates ------------------------------------------------------------------


def _check_timestamps(spark: SparkSession, got: Any, rows: list[Any], expected: list[Any]) -> None:
    """``got`` holds, per id, the expected (value, status) and the row's raw text."""
    raw = raw_of(rows)
    check(
        got,
        expect(
            spark,
            [(i, v, raw[i], s) for i, v, s in expected],
            "id int, v timestamp, v_raw string, v_status string",
        ),
    )


def test_parse_timestamp_order_zone_and_plausibility(spark: SparkSession) -> None:
    formats = ["yyyy-MM-dd HH:mm:ss", "dd/MM/yyyy HH:mm", "yyyy-MM-dd'T'HH:mm:ssXXX"]
    rows = [
        (1, "2024-01-15 10:00:00"),  # winter: London = UTC
        (2, "2024-07-15 10:00:00"),  # summer: London = UTC+1
        (3, "01/02/2024 09:30"),  # declared order: day first -> 1 February
        (4, "2024-07-15T10:00:00+02:00"),  # offset in the text wins over source_tz
        (5, "2024-02-30 10:00:00"),  # no such day
        (6, "yesterday"),
        (7, "1899-12-31 23:59:59"),  # before 1900: implausible
        (8, "NULL"),
    ]
    got = run(
        spark,
        S.parse_timestamp("v", formats=formats, source_tz="Europe/London"),
        rows,
        "id int, v string",
    )
    expected = [
        (1, dt.datetime(2024, 1, 15, 10, 0, tzinfo=UTC), "ok"),
        (2, dt.datetime(2024, 7, 15, 9, 0, tzinfo=UTC), "ok"),
        (3, dt.datetime(2024, 2, 1, 9, 30, tzinfo=UTC), "ok"),
        (4, dt.datetime(2024, 7, 15, 8, 0, tzinfo=UTC), "ok"),
        (5, None, "invalid"),
        (6, None, "invalid"),
        (7, None, "invalid"),
        (8, None, "empty"),
    ]
    _check_timestamps(spark, got, rows, expected)


def test_parse_timestamp_reads_epoch_counts_as_instants_in_utc(spark: SparkSession) -> None:
    rows = [
        (1, "1741100000000"),  # milliseconds: 2025-03-04 14:53:20 UTC, whatever source_tz says
        (2, "1741100000123"),
        (3, "2025-03-04 10:00:00"),  # the next format
        (4, "17411e5"),  # not a count
        (5, ""),
    ]
    got = run(
        spark,
        S.parse_timestamp("v", formats=["epoch_millis", "yyyy-MM-dd HH:mm:ss"], source_tz="+01:00"),
        rows,
        "id int, v string",
    )
    expected = [
        (1, dt.datetime(2025, 3, 4, 14, 53, 20, tzinfo=UTC), "ok"),
        (2, dt.datetime(2025, 3, 4, 14, 53, 20, 123000, tzinfo=UTC), "ok"),
        (3, dt.datetime(2025, 3, 4, 9, 0, tzinfo=UTC), "ok"),
        (4, None, "invalid"),
        (5, None, "empty"),
    ]
    _check_timestamps(spark, got, rows, expected)
    seconds = run(spark, S.parse_timestamp("v", formats=["epoch_seconds"]), [(1, "1741100000")],
                  "id int, v string")  # fmt: skip
    assert seconds.first()["v"] == dt.datetime(2025, 3, 4, 14, 53, 20)


def test_parse_timestamp_does_not_depend_on_session_time_zone(spark: SparkSession) -> None:
    df = spark.createDataFrame([(1, "2024-07-15 10:00:00")], "id int, v string")
    transform = S.parse_timestamp(
        "v", formats=["yyyy-MM-dd HH:mm:ss"], source_tz="Europe/London", out="ts"
    )
    before = spark.conf.get("spark.sql.session.timeZone")
    try:
        spark.conf.set("spark.sql.session.timeZone", "America/New_York")
        got = df.transform(transform).select("id", F.col("ts").cast("long").alias("epoch"))
        rows = got.collect()
    finally:
        spark.conf.set("spark.sql.session.timeZone", before)
    expected_epoch = int(dt.datetime(2024, 7, 15, 9, 0, tzinfo=UTC).timestamp())
    assert [(r["id"], r["epoch"]) for r in rows] == [(1, expected_epoch)]


def test_parse_date_ambiguity_is_resolved_by_declared_order(spark: SparkSession) -> None:
    rows = [(1, "01/02/2024"), (2, "13/01/2024"), (3, "1/2/2024")]
    day_first = run(
        spark, S.parse_date("v", formats=["dd/MM/yyyy"], out="d"), rows, "id int, v string"
    )
    month_first = run(
        spark,
        S.parse_date("v", formats=["MM/dd/yyyy", "dd/MM/yyyy", "M/d/yyyy"], out="d"),
        rows,
        "id int, v string",
    )
    ddl = "id int, v string, d date, d_raw string, d_status string"
    check(
        day_first,
        expect(
            spark,
            [
                (1, "01/02/2024", dt.date(2024, 2, 1), "01/02/2024", "ok"),
                (2, "13/01/2024", dt.date(2024, 1, 13), "13/01/2024", "ok"),
                # "dd" needs two digits: declare "d/M/yyyy" for such sources
                (3, "1/2/2024", None, "1/2/2024", "invalid"),
            ],
            ddl,
        ),
    )
    check(
        month_first,
        expect(
            spark,
            [
                (1, "01/02/2024", dt.date(2024, 1, 2), "01/02/2024", "ok"),
                (2, "13/01/2024", dt.date(2024, 1, 13), "13/01/2024", "ok"),  # falls through
                (3, "1/2/2024", dt.date(2024, 1, 2), "1/2/2024", "ok"),
            ],
            ddl,
        ),
    )


def test_parse_date_rejects_implausible_birth_dates(spark: SparkSession) -> None:
    rows = [
        (1, "1985-06-30"),
        (2, "1899-12-31"),
        (3, "2031-01-01"),  # after max_date
        (4, "2030-12-31"),
        (5, "31.06.1985"),  # no 31 June
        (6, " n/a "),
    ]
    transform = S.parse_date(
        "v", formats=["yyyy-MM-dd", "dd.MM.yyyy"], max_date=dt.date(2030, 12, 31)
    )
    got = run(spark, transform, rows, "id int, v string")
    raw = raw_of(rows)
    expected = [
        (1, dt.date(1985, 6, 30), "ok"),
        (2, None, "invalid"),
        (3, None, "invalid"),
        (4, dt.date(2030, 12, 31), "ok"),
        (5, None, "invalid"),
        (6, None, "empty"),
    ]
    check(
        got,
        expect(
            spark,
            [(i, v, raw[i], s) for i, v, s in expected],
            "id int, v date, v_raw string, v_status string",
        ),
    )
    # Default upper bound: today.
    future = (dt.date.today() + dt.timedelta(days=400)).isoformat()
    got = run(spark, S.parse_date("v", formats=["yyyy-MM-dd"]), [(1, future)], "id int, v string")
    assert got.first()["v_status"] == "invalid"  # type: ignore[index]


def test_parse_formats_are_required() -> None:
    with pytest.raises(ValueError):
        S.parse_date("v", formats=[])
    with pytest.raises(ValueError):
        S.parse_timestamp("v", formats="yyyy-MM-dd")  # type: ignore[arg-type]


def test_parse_year_keeps_plausible_four_digit_years(spark: SparkSession) -> None:
    rows = [(1, "1979"), (2, "1979.0"), (3, " 1962 "), (4, "79"), (5, "1899"), (6, "2999")]
    rows += [(7, "n/a")]
    got = run(spark, S.parse_year("v"), rows, "id int, v string")
    raw = raw_of(rows)
    expected = [(1, "1979", "ok"), (2, "1979", "ok"), (3, "1962", "ok"), (4, None, "invalid")]
    expected += [(5, None, "invalid"), (6, None, "invalid"), (7, None, "empty")]
    check(
        got,
        expect(
            spark,
            [(i, v, raw[i], s) for i, v, s in expected],
            "id int, v string, v_raw string, v_status string",
        ),
    )
