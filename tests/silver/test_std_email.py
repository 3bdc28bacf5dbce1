"""E-mail standardization (``cdp.silver.standardize.standardize_email``)."""

from __future__ import annotations

from pyspark.sql import SparkSession
from std_helpers import check, expect, raw_of, run

from cdp.silver import standardize as S

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
