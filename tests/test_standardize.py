"""Tests of the silver standardizers (:mod:`cdp.silver.standardize`), chispa style.

Every test builds its input and its expected DataFrame inline and compares them with
``assert_df_equality``. The choices, on purpose:

* ``ignore_row_order=False``: a standardizer is a narrow, per-row projection (no shuffle),
  so rows come back in input order; comparing in order is stricter and avoids the two sort
  jobs per comparison that ``ignore_row_order=True`` costs. Rows also carry an ``id``, so a
  failure names the row.
* ``ignore_nullable=True``: Spark derives nullability from the expressions (``_status`` is
  never null, literals are not nullable...), an implementation detail the tests do not pin.
* Column order is compared: the output convention (``<f>``, ``<f>_raw``, ``<f>_status``)
  includes where the columns go, so tests select them explicitly or check it as is.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp.silver import standardize as S
from cdp.silver.std_common import fold_key_py
from cdp.silver.std_reference import COUNTRIES, CURRENCIES, GENDERS

UTC = dt.timezone.utc
OUT_DDL = "id int, v string, v_raw string, v_status string"


def run(spark: SparkSession, transform: S.Transform, rows: list[tuple], ddl: str) -> DataFrame:
    return spark.createDataFrame(rows, ddl).transform(transform)


def check(actual: DataFrame, expected: DataFrame) -> None:
    assert_df_equality(actual, expected, ignore_row_order=False, ignore_nullable=True)


def expect(spark: SparkSession, rows: list[tuple[Any, ...]], ddl: str = OUT_DDL) -> DataFrame:
    return spark.createDataFrame(rows, ddl)


def raw_of(rows: list[tuple]) -> dict[int, Any]:
    return {r[0]: r[1] for r in rows}


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


# --- email ---------------------------------------------------------------------------------


def test_email_syntax_cleaning_and_placeholders(spark: SparkSession) -> None:
    rows = [
        (1, " John.Doe@Example.COM "),
        (2, "a@b"),  # no top-level domain
        (3, "john..doe@x.com"),  # consecutive dots
        (4, "x @y.com"),  # blank inside
        (5, "a@b@c.com"),  # two @
        (6, ".john@x.com"),  # leading dot
        (7, "john@x.c"),  # one-letter TLD
        (8, "john@-x.com"),  # label starting with a hyphen
        (9, "n/a"),
        (10, None),
        (11, "   "),
        (12, "mailto:Ann@X.org"),
        (13, "\uff4a\uff4f\uff48\uff4e\uff20\uff58\uff0e\uff43\uff4f\uff4d"),  # full-width
        (14, "john\u200b@x.com"),  # zero-width space pasted from a web page
        (15, "José@Exämple.de"),  # internationalized address
        (16, "john+news@x.com"),  # tags are kept by default
    ]
    got = run(spark, S.standardize_email("v"), rows, "id int, v string")
    raw = raw_of(rows)
    expected = [
        (1, "john.doe@example.com", "ok"),
        (2, None, "invalid"),
        (3, None, "invalid"),
        (4, None, "invalid"),
        (5, None, "invalid"),
        (6, None, "invalid"),
        (7, None, "invalid"),
        (8, None, "invalid"),
        (9, None, "empty"),
        (10, None, "empty"),
        (11, None, "empty"),
        (12, "ann@x.org", "ok"),
        (13, "john@x.com", "ok"),
        (14, "john@x.com", "ok"),
        (15, "josé@exämple.de", "ok"),
        (16, "john+news@x.com", "ok"),
    ]
    check(got, expect(spark, [(i, v, raw[i], s) for i, v, s in expected]))


def test_email_provider_rules(spark: SparkSession) -> None:
    rows = [
        (1, "J.O.Doe+promo@GoogleMail.com"),
        (2, "j.doe+x@outlook.com"),  # dots kept outside Gmail, tag removed everywhere
        (3, "+only@x.com"),  # nothing before the tag: kept
        (4, "jo..doe@gmail.com"),  # invalid before any provider rule
    ]
    got = run(
        spark,
        S.standardize_email("v", gmail_dots=True, plus_addressing=True),
        rows,
        "id int, v string",
    )
    raw = raw_of(rows)
    expected = [
        (1, "jodoe@gmail.com", "ok"),
        (2, "j.doe@outlook.com", "ok"),
        (3, "+only@x.com", "ok"),
        (4, None, "invalid"),
    ]
    check(got, expect(spark, [(i, v, raw[i], s) for i, v, s in expected]))


# --- phone ---------------------------------------------------------------------------------


def test_phone_to_e164_international(spark: SparkSession) -> None:
    rows = [
        (1, "020 7946 0958", None),  # GB national, default region
        (2, "+44 (0)20 7946 0958", "US"),  # international form wins over the row's region
        (3, "0044 20 7946 0958", None),  # international prefix
        (4, "(415) 555-2671", "US"),  # US punctuation, row region
        (5, "415.555.2671", "United States"),  # region given as a country name
        (6, "030 901820", "DE"),  # Berlin
        (7, "+49 30 901820", None),
        (8, "06 12 34 56 78", "FR"),  # French mobile, valid with the row's region...
        (9, "06 12 34 56 78", None),  # ...invalid with the default (GB)
        (10, "+44 20 7946 0958 ext. 123", None),  # extension dropped by E.164
        (11, "+1 415 555 2671 x12", "GB"),
        (12, "0000000000", None),  # placeholder: empty
        (13, "000-000-0000", "US"),  # placeholder: empty
        (14, "123456", None),  # too short: invalid
        (15, "n/a", None),
        (16, None, "GB"),
        (17, "call me", None),
        (18, "\uff10\uff12\uff10 \uff17\uff19\uff14\uff16 \uff10\uff19\uff15\uff18", None),
        (19, "07911 123456", "Narnia"),  # unknown region: default applies
    ]
    got = run(
        spark,
        S.standardize_phone("v", default_region="GB", region_col="country"),
        rows,
        "id int, v string, country string",
    )
    by_id = {r[0]: r for r in rows}
    expected = [
        (1, "+442079460958", "ok"),
        (2, "+442079460958", "ok"),
        (3, "+442079460958", "ok"),
        (4, "+14155552671", "ok"),
        (5, "+14155552671", "ok"),
        (6, "+4930901820", "ok"),
        (7, "+4930901820", "ok"),
        (8, "+33612345678", "ok"),
        (9, None, "invalid"),
        (10, "+442079460958", "ok"),
        (11, "+14155552671", "ok"),
        (12, None, "empty"),
        (13, None, "empty"),
        (14, None, "invalid"),
        (15, None, "empty"),
        (16, None, "empty"),
        (17, None, "invalid"),
        (18, "+442079460958", "ok"),
        (19, "+447911123456", "ok"),
    ]
    check(
        got,
        expect(
            spark,
            [(i, v, by_id[i][2], by_id[i][1], s) for i, v, s in expected],
            "id int, v string, country string, v_raw string, v_status string",
        ),
    )


def test_phone_without_default_region_needs_international_form(spark: SparkSession) -> None:
    rows = [(1, "020 7946 0958"), (2, "+44 20 7946 0958")]
    got = run(spark, S.standardize_phone("v", default_region=None), rows, "id int, v string")
    check(
        got,
        expect(
            spark,
            [(1, None, "020 7946 0958", "invalid"), (2, "+442079460958", "+44 20 7946 0958", "ok")],
        ),
    )


def test_phone_repeated_values_in_one_batch(spark: SparkSession) -> None:
    # Same value under two regions must not share a cache entry.
    rows = [(i, "06 12 34 56 78", "FR" if i % 2 else "GB") for i in range(200)]
    got = run(spark, S.standardize_phone("v", region_col="c"), rows, "id int, v string, c string")
    counts = {r["v_status"]: r["count"] for r in got.groupBy("v_status").count().collect()}
    assert counts == {"ok": 100, "invalid": 100}


def test_phone_to_e164_plain_python() -> None:
    assert S.phone_to_e164("020 7946 0958", "GB") == "+442079460958"
    assert S.phone_to_e164("020 7946 0958", "gb") == "+442079460958"
    assert S.phone_to_e164("+1 (415) 555-2671", None) == "+14155552671"
    assert S.phone_to_e164("020 7946 0958", None) is None
    assert S.phone_to_e164("06 12 34 56 78", "GB") is None
    assert S.phone_to_e164("not a number", "GB") is None
    assert S.phone_to_e164("  ", "GB") is None
    assert S.phone_to_e164(None, "GB") is None
    assert S.phone_to_e164(float("nan"), "GB") is None  # type: ignore[arg-type]


# --- names ---------------------------------------------------------------------------------


def test_name_unicode_case_and_honorifics(spark: SparkSession) -> None:
    rows = [
        (1, "  JOSÉ  garcía "),  # precomposed accents, mixed case, extra blanks
        (2, "JOSE\u0301 garci\u0301a"),  # combining accents: same result after NFKC
        (3, "o'neill"),
        (4, "O\u2019BRIEN"),  # typographic apostrophe
        (5, "Dr. Jane Smith-Jones Jr."),
        (6, "smith - jones"),
        (7, "mcdonald"),
        (8, "MacKenzie"),  # mixed case is kept as written
        (9, "macdonald"),  # "Mac" is not split (documented)
        (10, "LUDWIG VAN BEETHOVEN"),
        (11, "van der berg"),  # a last name alone keeps its capital
        (12, "j.r.r. tolkien"),
        (13, "Mrs Anna\u00a0Maria\tLopez, PhD"),  # no-break space and tab
        (14, "Jo\u200bhn"),  # zero-width space
        (15, "John123"),
        (16, "n/a"),
        (17, "Na"),  # a real given name, not a placeholder here
        (18, "-"),
        (19, None),
        (20, "ŁUKASZ ŻÓŁW"),
    ]
    got = run(spark, S.standardize_name("v"), rows, "id int, v string")
    raw = raw_of(rows)
    expected = [
        (1, "José García", "ok"),
        (2, "José García", "ok"),
        (3, "O'Neill", "ok"),
        (4, "O'Brien", "ok"),
        (5, "Jane Smith-Jones", "ok"),
        (6, "Smith-Jones", "ok"),
        (7, "McDonald", "ok"),
        (8, "MacKenzie", "ok"),
        (9, "Macdonald", "ok"),
        (10, "Ludwig van Beethoven", "ok"),
        (11, "Van der Berg", "ok"),
        (12, "J.R.R. Tolkien", "ok"),
        (13, "Anna Maria Lopez", "ok"),
        (14, "John", "ok"),
        (15, None, "invalid"),
        (16, None, "empty"),
        (17, "Na", "ok"),
        (18, None, "empty"),
        (19, None, "empty"),
        (20, "Łukasz Żółw", "ok"),
    ]
    check(got, expect(spark, [(i, v, raw[i], s) for i, v, s in expected]))
    # NFKC really composed the accents: same code points as the precomposed input.
    names = {r["id"]: r["v"] for r in got.where("id IN (1, 2)").collect()}
    assert names[1] == names[2] == "Jos\u00e9 Garc\u00eda"


def test_name_keeps_honorifics_when_asked(spark: SparkSession) -> None:
    rows = [(1, "dr. jane smith jr.")]
    got = run(spark, S.standardize_name("v", strip_honorifics=False), rows, "id int, v string")
    check(got, expect(spark, [(1, "Dr. Jane Smith Jr.", "dr. jane smith jr.", "ok")]))


def test_split_full_name(spark: SparkSession) -> None:
    rows = [
        (1, "Smith, John"),
        (2, "John Smith"),
        (3, "john paul SMITH"),
        (4, "Smith Jones, Mary"),  # before the comma: the whole last name
        (5, "Dr. Maria de la Cruz"),
        (6, "Ludwig van Beethoven"),
        (7, "Madonna"),
        (8, "John Smith Jr."),
        (9, "GARCÍA, josé"),
        (10, "  "),
        (11, "R2-D2"),
    ]
    got = run(spark, S.split_full_name("v", "first", "last"), rows, "id int, v string")
    raw = raw_of(rows)
    expected = [
        (1, "John Smith", "ok", "John", "Smith"),
        (2, "John Smith", "ok", "John", "Smith"),
        (3, "John Paul Smith", "ok", "John Paul", "Smith"),
        (4, "Mary Smith Jones", "ok", "Mary", "Smith Jones"),
        (5, "Maria de la Cruz", "ok", "Maria", "de la Cruz"),
        (6, "Ludwig van Beethoven", "ok", "Ludwig", "van Beethoven"),
        (7, "Madonna", "ok", "Madonna", None),
        (8, "John Smith", "ok", "John", "Smith"),
        (9, "José García", "ok", "José", "García"),
        (10, None, "empty", None, None),
        (11, None, "invalid", None, None),
    ]
    check(
        got,
        expect(
            spark,
            [(i, v, raw[i], s, f, la) for i, v, s, f, la in expected],
            "id int, v string, v_raw string, v_status string, first string, last string",
        ),
    )


def test_name_match_key(spark: SparkSession) -> None:
    rows = [
        (1, "José García-O'Neill"),
        (2, "JOSE GARCIA ONEILL"),
        (3, "Jose\u0301 Garci\u0301a O\u2019Neill"),
        (4, "Łukasz Øster Straße"),
        (5, "--"),
        (6, None),
    ]
    df = spark.createDataFrame(rows, "id int, v string")
    got = df.select("id", S.name_match_key("v").alias("k"))
    expected = expect(
        spark,
        [
            (1, "josegarciaoneill"),
            (2, "josegarciaoneill"),
            (3, "josegarciaoneill"),
            (4, "lukaszosterstrasse"),
            (5, None),
            (6, None),
        ],
        "id int, k string",
    )
    check(got, expected)


# --- timestamps and dates ------------------------------------------------------------------


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
    raw = raw_of(rows)
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
    check(
        got,
        expect(
            spark,
            [(i, v, raw[i], s) for i, v, s in expected],
            "id int, v timestamp, v_raw string, v_status string",
        ),
    )


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


# --- country and postcode ------------------------------------------------------------------


def test_country_common_variants(spark: SparkSession) -> None:
    rows = [
        (1, "UK", "GB"),
        (2, "United Kingdom", "GB"),
        (3, "Great Britain", "GB"),
        (4, " england "),
        (5, "Deutschland", "DE"),
        (6, "USA", "US"),
        (7, "U.S.A.", "US"),
        (8, "Holland", "NL"),
        (9, "gbr", "GB"),
        (10, "ESPAÑA", "ES"),
        (11, "Türkiye", "TR"),
        (12, "fr", "FR"),
    ]
    rows = [r if len(r) == 3 else (r[0], r[1], "GB") for r in rows]
    got = run(spark, S.standardize_country("v"), [(i, v) for i, v, _ in rows], "id int, v string")
    check(got, expect(spark, [(i, c, v, "ok") for i, v, c in rows]))

    odd = [(1, "Narnia"), (2, "n/a"), (3, "NA"), (4, None), (5, "?")]
    got = run(spark, S.standardize_country("v"), odd, "id int, v string")
    statuses = [(1, "invalid"), (2, "empty"), (3, "empty"), (4, "empty"), (5, "empty")]
    check(got, expect(spark, [(i, None, dict(odd)[i], s) for i, s in statuses]))


def test_country_table_covers_every_entry(spark: SparkSession) -> None:
    assert len(COUNTRIES) >= 60
    rows = [
        (text, alpha2)
        for alpha2, (alpha3, name, variants) in COUNTRIES.items()
        for text in (alpha2, alpha3, name, *variants)
    ]
    df = spark.createDataFrame(rows, "v string, expected string")
    got = df.transform(S.standardize_country("v", out="c")).select("v", "c")
    check(got, df.withColumnRenamed("expected", "c"))


def test_postcode_per_country(spark: SparkSession) -> None:
    rows = [
        (1, "sw1a1aa", "GB", "SW1A 1AA", "ok"),
        (2, " ec1a-1bb ", "United Kingdom", "EC1A 1BB", "ok"),
        (3, "M1 1AE", "GB", "M1 1AE", "ok"),
        (4, "SW1A 1A", "GB", None, "invalid"),
        (5, "123456789", "US", "12345-6789", "ok"),
        (6, "90210", "USA", "90210", "ok"),
        (7, "2134", "US", None, "invalid"),  # leading zero lost: not guessed
        (8, "10115", "DE", "10115", "ok"),
        (9, "1011", "DE", None, "invalid"),
        (10, "75001", "FR", "75001", "ok"),
        (11, "1234ab", "NL", "1234 AB", "ok"),
        (12, "k1a0b1", "CA", "K1A 0B1", "ok"),
        (13, "d02x285", "IE", "D02 X285", "ok"),
        (14, "28013", "ES", "28013", "ok"),
        (15, "99999", "ES", None, "invalid"),
        (16, "00184", "IT", "00184", "ok"),
        (17, "2000", "AU", "2000", "ok"),
        (18, "100-0001", "JP", "100-0001", "ok"),  # no rule: normalized, passed through
        (19, "abc  12", None, "ABC 12", "ok"),
        (20, "n/a", "GB", None, "empty"),
    ]
    got = run(
        spark,
        S.standardize_postcode("v", country_col="country"),
        [(i, v, c) for i, v, c, _, _ in rows],
        "id int, v string, country string",
    )
    check(
        got,
        expect(
            spark,
            [(i, out, c, v, s) for i, v, c, out, s in rows],
            "id int, v string, country string, v_raw string, v_status string",
        ),
    )


# --- money ---------------------------------------------------------------------------------

AMOUNT_DDL = "id int, v decimal(18,2), v_raw string, v_status string"


def test_amount_decimal_point(spark: SparkSession) -> None:
    rows = [
        (1, "1,234.50", Decimal("1234.50"), "ok"),
        (2, "12,50", Decimal("12.50"), "ok"),  # cannot be grouping: decimal comma
        (3, "$12.50", Decimal("12.50"), "ok"),
        (4, "  12 ", Decimal("12.00"), "ok"),
        (5, "-1 234.5 EUR", Decimal("-1234.50"), "ok"),
        (6, "(12.50)", Decimal("-12.50"), "ok"),
        (7, "12.345", Decimal("12.35"), "ok"),  # rounded half-up to the scale
        (8, "1'234.50", Decimal("1234.50"), "ok"),
        (9, "1.234,50", None, "invalid"),  # needs decimal_comma
        (10, "1,23,4", None, "invalid"),
        (11, "12 apples", None, "invalid"),
        (12, "1e3", None, "invalid"),
        (13, "--12", None, "invalid"),
        (14, "99999999999999999", None, "invalid"),  # overflows decimal(18, 2)
        (15, "n/a", None, "empty"),
        (16, "-", None, "empty"),
        (17, None, None, "empty"),
    ]
    got = run(spark, S.standardize_amount("v"), [(i, v) for i, v, _, _ in rows], "id int, v string")
    check(got, expect(spark, [(i, d, v, s) for i, v, d, s in rows], AMOUNT_DDL))


def test_amount_decimal_comma_and_scale(spark: SparkSession) -> None:
    rows = [
        (1, "1.234,50", Decimal("1234.50"), "ok"),
        (2, "12,50 €", Decimal("12.50"), "ok"),
        (3, "1 234,5", Decimal("1234.50"), "ok"),
        (4, "1.234", Decimal("1234.00"), "ok"),  # grouping, not decimals
        (5, "12.50", Decimal("12.50"), "ok"),  # one dot + two digits: decimal point
        (6, "1,234.50", None, "invalid"),
    ]
    got = run(
        spark,
        S.standardize_amount("v", decimal_comma=True),
        [(i, v) for i, v, _, _ in rows],
        "id int, v string",
    )
    check(got, expect(spark, [(i, d, v, s) for i, v, d, s in rows], AMOUNT_DDL))

    got = run(spark, S.standardize_amount("v", scale=0), [(1, "12.5")], "id int, v string")
    check(got, expect(spark, [(1, Decimal(13), "12.5", "ok")], AMOUNT_DDL.replace("18,2", "18,0")))


def test_amount_with_currency_column(spark: SparkSession) -> None:
    rows = [
        (1, "£12", None, Decimal("12.00"), "ok", "GBP"),  # currency taken from the text
        (2, "12", "usd", Decimal("12.00"), "ok", "USD"),
        (3, "€12", "USD", None, "invalid", None),  # text and column disagree
        (4, "$12", None, Decimal("12.00"), "ok", None),  # "$": which dollar?
        (5, "12 EUR", "EUR", Decimal("12.00"), "ok", "EUR"),
    ]
    got = run(
        spark,
        S.standardize_amount("v", currency_col="cur"),
        [(i, v, c) for i, v, c, *_ in rows],
        "id int, v string, cur string",
    )
    check(
        got,
        expect(
            spark,
            [(i, d, c, v, s, code) for i, v, c, d, s, code in rows],
            "id int, v decimal(18,2), cur string, v_raw string, v_status string, v_currency string",
        ),
    )


def test_currency(spark: SparkSession) -> None:
    assert len(CURRENCIES) >= 30
    rows = [
        (1, "usd", "USD", "ok"),
        (2, " eur ", "EUR", "ok"),
        (3, "€", "EUR", "ok"),
        (4, "£", "GBP", "ok"),
        (5, "rmb", "CNY", "ok"),
        (6, "$", None, "invalid"),  # ambiguous symbol
        (7, "XYZ", None, "invalid"),
        (8, "n/a", None, "empty"),
        (9, None, None, "empty"),
    ]
    got = run(
        spark, S.standardize_currency("v"), [(i, v) for i, v, _, _ in rows], "id int, v string"
    )
    check(got, expect(spark, [(i, c, v, s) for i, v, c, s in rows]))


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
