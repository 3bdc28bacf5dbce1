"""Overlong silver values are invalid with a value-free reason, never cut short and ok."""

from __future__ import annotations

from pyspark.sql import SparkSession

from cdp.silver.field_limits import length_rules, limit_field_lengths, limited_fields
from cdp.silver.rules import VIOLATIONS, apply_rules
from cdp.silver.settings import SilverConfig


def test_an_overlong_value_is_invalid_with_a_reason_that_names_no_value(
    spark: SparkSession,
) -> None:
    cols = ["id", "first_name", "first_name_raw", "first_name_status"]
    cols += ["email", "email_raw", "email_status"]
    long_name = "Zed" * 10
    df = spark.createDataFrame(
        [
            ("1", "Ann", "ann", "ok", "a@x.com", "a@x.com", "ok"),
            ("2", long_name, long_name, "ok", "b@x.com", "b@x.com", "ok"),
            ("3", None, None, "empty", "c" * 30 + "@x.com", "c" * 30 + "@x.com", "ok"),
        ],
        cols,
    )
    assert limited_fields(df.columns) == ["first_name", "email"]
    config = SilverConfig(rules_file=None, max_field_chars=20, field_max_chars={"email": 40})

    out = df.transform(limit_field_lengths(config))
    rules = length_rules(config, out.columns)
    got = {r.id: r for r in out.transform(apply_rules(rules, refs={})).collect()}

    assert got["1"].first_name == "Ann" and got["1"].first_name_status == "ok"
    assert not got["1"][VIOLATIONS]
    two = got["2"]
    assert two.first_name is None and two.first_name_status == "invalid"
    assert two.first_name_raw == long_name  # the text as delivered stays inspectable
    assert [v.rule for v in two[VIOLATIONS]] == ["first_name_length"]
    assert not any(v.blocking for v in two[VIOLATIONS])
    reason = two[VIOLATIONS][0].reason
    assert "first_name" in reason and "20" in reason and "Zed" not in reason
    # email's own limit (40) is above its 36 characters: kept.
    assert got["3"].email_status == "ok" and got["3"].first_name_status == "empty"
