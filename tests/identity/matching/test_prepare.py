"""The input of probabilistic matching (lib/cdp/identity/matching/prepare.py): how silver
records become the compared values."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import SparkSession

from cdp.identity.matching.config import parse_matching
from cdp.identity.matching.prepare import matching_input

NICKNAMES = Path(__file__).resolve().parents[3] / "conf" / "rules" / "nicknames.yaml"


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
    got = {
        r["member_key"].rsplit("|", 1)[-1]: r["address_line1"]
        for r in matching_input({"person_records": df}, rules).collect()
    }
    assert got == {rid: want for rid, (_, want) in written.items()}
