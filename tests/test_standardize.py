"""Unit tests of the silver standardizers, with tricky inputs built inline."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession

from cdp.silver import standardize as S


def run(
    spark: SparkSession, values: list, transform, col: str = "v", ddl: str = "v string", extra=None
):  # type: ignore[no-untyped-def]
    rows = [(v,) if not isinstance(v, tuple) else v for v in values]
    df = spark.createDataFrame(rows, ddl)
    out = df.transform(transform)
    return [(r[col], r[f"{col}_status"]) for r in out.collect()]


def test_email(spark: SparkSession) -> None:
    got = run(
        spark,
        [
            " John.Doe@Example.COM ",
            "a@b",
            "john..doe@x.com",
            "x @y.com",
            "n/a",
            None,
            "mailto:ann@x.org",
        ],
        S.standardize_email("v"),
    )
    assert got == [
        ("john.doe@example.com", "ok"),
        (None, "invalid"),
        (None, "invalid"),
        (None, "invalid"),
        (None, "empty"),
        (None, "empty"),
        ("ann@x.org", "ok"),
    ]


def test_email_provider_rules(spark: SparkSession) -> None:
    got = run(
        spark,
        ["J.O.Doe+promo@GoogleMail.com", "j.doe+x@outlook.com"],
        S.standardize_email("v", gmail_dots=True, plus_addressing=True),
    )
    assert got == [("jodoe@gmail.com", "ok"), ("j.doe@outlook.com", "ok")]


def test_raw_value_is_always_kept(spark: SparkSession) -> None:
    df = spark.createDataFrame([("  BAD@@x ",)], "email string").transform(S.standardize_email())
    expected = spark.createDataFrame(
        [(None, "  BAD@@x ", "invalid")], "email string, email_raw string, email_status string"
    )
    assert_df_equality(df, expected, ignore_nullable=True)


def test_phone_e164_with_default_and_row_region(spark: SparkSession) -> None:
    values = [
        ("020 7946 0958", None),  # GB national, default region
        ("+44 20 7946 0958", "US"),  # international wins over the row's region
        ("(415) 555-2671", "US"),  # US punctuation, row region
        ("030 901820", "DE"),  # valid only as a German number
        ("01 42 68 53 00", "FR"),
        ("+1 415 555 2671 ext. 12", None),  # extension dropped by E.164
        ("0000000000", None),
        ("123456", None),
        ("n/a", None),
    ]
    df = spark.createDataFrame(values, "phone string, country string").transform(
        S.standardize_phone("phone", default_region="GB", region_col="country")
    )
    got = [(r.phone, r.phone_status) for r in df.collect()]
    assert got == [
        ("+442079460958", "ok"),
        ("+442079460958", "ok"),
        ("+14155552671", "ok"),
        ("+4930901820", "ok"),
        ("+33142685300", "ok"),
        ("+14155552671", "ok"),
        (None, "invalid"),
        (None, "invalid"),
        (None, "empty"),
    ]
    assert S.phone_to_e164("030 901820", "GB") is None  # not a GB number


def test_names_unicode_honorifics_and_case(spark: SparkSession) -> None:
    composed, decomposed = "Jos\u00e9", "Jose\u0301"
    got = run(
        spark,
        [
            "dr. JOSÉ  garcía jr",
            "o'neill",
            "SMITH-JONES",
            "mcdonald",
            decomposed,
            "  ",
            "Mrs Anne-Marie  de\tLa Cruz",
        ],
        S.standardize_name("v"),
    )
    assert got == [
        ("José García", "ok"),
        ("O'Neill", "ok"),
        ("Smith-Jones", "ok"),
        ("McDonald", "ok"),
        (composed, "ok"),  # combining accent normalized to the precomposed letter
        (None, "empty"),
        ("Anne-Marie De La Cruz", "ok"),
    ]


def test_split_full_name(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [("Smith, John",), ("Mary Ann Lee",), ("Cher",), ("Dr. Jane Smith-Jones Jr.",)],
        "full_name string",
    )
    out = df.transform(S.split_full_name()).select("first_name", "last_name")
    expected = spark.createDataFrame(
        [("John", "Smith"), ("Mary Ann", "Lee"), ("Cher", None), ("Jane", "Smith-Jones")],
        "first_name string, last_name string",
    )
    assert_df_equality(out, expected, ignore_nullable=True)


def test_dates_follow_the_declared_order(spark: SparkSession) -> None:
    day_first = run(
        spark,
        ["01/02/2024", "2024-02-01", "31.12.1850", "2024-13-01", "", "01/02/2999"],
        S.parse_date("v", formats=["dd/MM/yyyy", "yyyy-MM-dd", "dd.MM.yyyy"]),
    )
    assert day_first == [
        (dt.date(2024, 2, 1), "ok"),  # ambiguous: the first declared pattern decides
        (dt.date(2024, 2, 1), "ok"),
        (None, "invalid"),  # before 1900: implausible birth date
        (None, "invalid"),
        (None, "empty"),
        (None, "invalid"),  # in the future
    ]
    month_first = run(spark, ["01/02/2024"], S.parse_date("v", formats=["MM/dd/yyyy"]))
    assert month_first == [(dt.date(2024, 1, 2), "ok")]


def test_timestamps_to_utc(spark: SparkSession) -> None:
    got = run(
        spark,
        ["2024-03-01T12:30:00+02:00", "01/03/2024 12:30", "garbage"],
        S.parse_timestamp(
            "v", formats=["yyyy-MM-dd'T'HH:mm:ssXXX", "dd/MM/yyyy HH:mm"], source_tz="Europe/Paris"
        ),
    )
    assert got[0] == (dt.datetime(2024, 3, 1, 10, 30), "ok")
    assert got[1] == (dt.datetime(2024, 3, 1, 11, 30), "ok")  # Paris wall clock -> UTC
    assert got[2] == (None, "invalid")


def test_country_variants(spark: SparkSession) -> None:
    got = run(
        spark,
        [
            "UK",
            "United Kingdom",
            "gbr",
            "Deutschland",
            "U.S.A.",
            "Holland",
            "Österreich",
            "Atlantis",
            None,
        ],
        S.standardize_country("v"),
    )
    assert [g[0] for g in got] == ["GB", "GB", "GB", "DE", "US", "NL", "AT", None, None]
    assert got[7][1] == "invalid" and got[8][1] == "empty"


def test_postcode_per_country(spark: SparkSession) -> None:
    values = [
        ("sw1a1aa", "GB"),
        ("1234ab", "NL"),
        ("902101234", "US"),
        ("ABCDE", "DE"),
        ("75008", "FR"),
        ("k1a0b1", "CA"),
        ("x-1", "ZZ"),
    ]
    df = spark.createDataFrame(values, "postcode string, country string").transform(
        S.standardize_postcode()
    )
    got = [(r.postcode, r.postcode_status) for r in df.collect()]
    assert got == [
        ("SW1A 1AA", "ok"),
        ("1234 AB", "ok"),
        ("90210-1234", "ok"),
        (None, "invalid"),
        ("75008", "ok"),
        ("K1A 0B1", "ok"),
        ("X1", "ok"),  # no pattern for the country: normalized and accepted
    ]


def test_amounts_and_currencies(spark: SparkSession) -> None:
    got = run(
        spark,
        ["1,234.50", "1.234,50", "12,50", "$12.50", "  12 ", "(7.25)", "1,234", "abc", None],
        S.standardize_amount("v"),
    )
    assert [g[0] for g in got] == [
        Decimal("1234.50"),
        Decimal("1234.50"),
        Decimal("12.50"),
        Decimal("12.50"),
        Decimal("12.00"),
        Decimal("-7.25"),
        Decimal("1234.00"),
        None,
        None,
    ]
    assert got[7][1] == "invalid" and got[8][1] == "empty"
    comma = run(spark, ["1.234", "3,5"], S.standardize_amount("v", decimal_comma=True))
    assert [g[0] for g in comma] == [Decimal("1234.00"), Decimal("3.50")]
    cur = run(spark, ["eur", "€", "£", "XYZ", ""], S.standardize_currency("v"))
    assert cur == [("EUR", "ok"), ("EUR", "ok"), ("GBP", "ok"), (None, "invalid"), (None, "empty")]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("M", "male"),
        ("Female", "female"),
        ("w", "female"),
        ("non-binary", "other"),
        ("unknown", "unknown"),
        ("n/a", None),
    ],
)
def test_gender(spark: SparkSession, raw: str, expected: str | None) -> None:
    assert run(spark, [raw], S.standardize_gender("v"))[0][0] == expected
