"""Countries and postcodes (``cdp.silver.std_location``)."""

from __future__ import annotations

from pyspark.sql import SparkSession
from std_helpers import check, expect, run

from cdp.silver import standardize as S
from cdp.silver.std_reference import COUNTRIES

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
