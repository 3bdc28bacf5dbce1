"""Amounts and currencies (``cdp.silver.std_money``)."""

from __future__ import annotations

from decimal import Decimal

from pyspark.sql import SparkSession
from std_helpers import check, expect, run

from cdp.silver import standardize as S
from cdp.silver.std_reference import CURRENCIES

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
