"""The input of probabilistic matching (lib/cdp/identity/matching/prepare.py): how silver
records become the compared values."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp.identity.matching.config import MatchingRules, parse_matching
from cdp.identity.matching.prepare import matching_input

NICKNAMES = Path(__file__).resolve().parents[3] / "conf" / "rules" / "nicknames.yaml"


def _compared(df: DataFrame, rules: MatchingRules, column: str) -> dict[str, str | None]:
    """Source record id -> the compared value of ``column``, for the records that take part."""
    return {
        r["member_key"].rsplit("|", 1)[-1]: r[column]
        for r in matching_input({"person_records": df}, rules).collect()
    }


def _names_and(*compared: dict[str, str]) -> MatchingRules:
    """Rules comparing first and last names and ``compared``, three values at least, blocked
    on the surname and the last comparison's field."""
    return parse_matching(
        {
            "min_fields": 3,
            "comparisons": [
                {"name": "first_name", "kind": "forename", "field": "first_name"},
                {"name": "last_name", "kind": "surname", "field": "last_name"},
                *compared,
            ],
            "blocking": [["last_name", compared[-1]["field"]]],
        },
        origin="m.yaml",
    )


def test_street_lines_compare_with_one_short_form_of_each_street_type(
    spark: SparkSession,
) -> None:
    rules = parse_matching(
        {
            "nicknames_file": str(NICKNAMES),
            "min_fields": 1,
            "comparisons": [
                {
                    "name": "location",
                    "kind": "location",
                    "fields": ["address_line1", "postcode", "city"],
                },
            ],
            "blocking": [["postcode"]],
        },
        origin="m.yaml",
    )
    written = {
        "1": ("123 Mill Lane", "123 mill ln"),
        "2": ("123 Mill Ln.", "123 mill ln"),
        "3": ("Schillerstraße 117", "schillerstr 117"),
        "4": ("Schillerstr. 117", "schillerstr 117"),
        "5": ("Wilhelminastraat 52", "wilhelminastr 52"),
        "6": ("139 Boulevard Saint-Michel", "139 blvd st michel"),
        "7": ("139 bd St Michel", "139 blvd st michel"),
        "8": ("20 Avenue Road", "20 ave rd"),
        # Not a street type: the words stay as they are (a "Lanes" is not a "Lane").
        "9": ("4 The Lanes", "4 the lanes"),
        "10": ("Strasse 5", "str 5"),
        "11": ("  ", None),
    }
    df = spark.createDataFrame(
        [("crm", rid, line, "LS1 1AA", "Leeds", False) for rid, (line, _) in written.items()],
        "source string, source_record_id string, address_line1 string, postcode string, "
        "city string, is_deleted boolean",
    )
    got = _compared(df, rules, "address_line1")
    assert got == {rid: want for rid, (_, want) in written.items()}


def test_a_comparison_that_does_not_identify_is_weighed_but_not_counted_toward_min_fields(
    spark: SparkSession,
) -> None:
    rules = parse_matching(
        {
            "min_fields": 2,
            "comparisons": [
                {"name": "last_name", "kind": "surname", "field": "last_name"},
                {"name": "birth_date", "kind": "birth_date", "field": "birth_date"},
                {"name": "gender", "kind": "exact", "field": "gender", "identifying": False},
            ],
            "blocking": [["last_name"]],
        },
        origin="m.yaml",
    )
    df = spark.createDataFrame(
        [
            ("r", "both", "Lee", "1980-02-01", "female"),
            ("r", "name_and_gender", "Lee", None, "female"),  # one identifying value
            ("r", "name_and_birth", "Lee", "1980-02-01", None),
        ],
        "source string, source_record_id string, last_name string, birth_date string, "
        "gender string",
    ).withColumn("is_deleted", F.lit(False))
    got = _compared(df, rules, "gender")
    # Gender is carried (the model weighs it) but does not make a record a candidate.
    assert got == {"both": "female", "name_and_birth": None}


def test_a_birth_place_is_compared_as_folded_words_and_counts_toward_min_fields(
    spark: SparkSession,
) -> None:
    rules = _names_and({"name": "birth_place", "kind": "city", "field": "birth_place"})
    df = spark.createDataFrame(
        [
            ("r", "1", "Thomas", "Lee", "Stockton-on-Tees"),
            ("r", "2", "Tom", "Lee", "stockton on tees"),
            ("r", "3", "Tom", "Lee", "Saint-Étienne"),
            ("r", "4", "Tom", "Lee", None),  # two values: below min_fields
        ],
        "source string, source_record_id string, first_name string, last_name string, "
        "birth_place string",
    ).withColumn("is_deleted", F.lit(False))
    got = _compared(df, rules, "birth_place")
    assert got == {"1": "stockton on tees", "2": "stockton on tees", "3": "saint etienne"}


def test_a_birth_year_is_a_birth_date_s_year_and_counts_only_alone(spark: SparkSession) -> None:
    rules = _names_and(
        {"name": "birth_date", "kind": "birth_date", "field": "birth_date"},
        {"name": "birth_year", "kind": "year", "field": "birth_year"},
    )
    df = spark.createDataFrame(
        [
            ("r", "1", "Tom", "Lee", "1979-05-02", None),  # the year of its birth date
            ("r", "2", "Tom", "Lee", None, "1979"),  # a year alone: the third value
            ("r", "3", "Tom", None, "1979-05-02", None),  # two values: the year not counted
            ("r", "4", "Tom", "Lee", None, "79"),  # no year: two values
        ],
        "source string, source_record_id string, first_name string, last_name string, "
        "birth_date string, birth_year string",
    ).withColumn("is_deleted", F.lit(False))
    assert _compared(df, rules, "birth_year") == {"1": "1979", "2": "1979"}
