"""The cheap guards in front of the similarity functions change no level: every comparison of
the shipped configuration gives each pair the same level with and without them, on Spark
(Splink's Scala UDFs) and on DuckDB, over values with the typos a register has."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from cdp.identity.matching.comparisons import Dialect, build_comparisons, splink_settings
from cdp.identity.matching.config import load_matching

SHIPPED = Path(__file__).resolve().parents[3] / "conf" / "rules" / "matching.yaml"

# "li" / "il": two letters swapped, where neither end agrees and the guard lets the pair by.
FIRST = ["anna", "hannah", "jon", "john", "johnathan", "mary", "maria", "li", "il", "lee"]
LAST = ["smith", "smyth", "schmidt", "o connor", "connor", "nguyen", "ng", "van der berg"]
STREETS = ["12 high street", "12 high st", "21 high street", "4 mill lane", "4 mill ln"]
POSTCODES = ["sw1a 1aa", "sw1a 1ab", "sw1a1aa", "e1 6an", "e16an"]
CITIES = ["london", "londn", "leeds", "lees"]
DATES = ["1959-03-31", "1959-03-13", "1959-03-21", "1969-03-31", "1960-03-31", "1985-12-01"]
PHONES = ["+447700900123", "+447700900124", "+447700900213", "+4477009001"]
EMAILS = ["anna.smith@example.com", "anna.smyth@example.com", "a.smith@example.org"]
IDS = ["AB123456C", "AB123465C", "AB12345C", "ZZ999999Z"]


def _typos(value: str, rng: random.Random) -> list[str]:
    """A value with one deletion, insertion, substitution, adjacent transposition and two
    edits at once: the noise the one-edit and Jaro-Winkler levels are for."""
    if len(value) < 2:
        return [value + "a"]
    i = rng.randrange(len(value) - 1)
    out = [
        value[:i] + value[i + 1 :],
        value[:i] + "x" + value[i:],
        value[:i] + "q" + value[i + 1 :],
        value[:i] + value[i + 1] + value[i] + value[i + 2 :],
        value[: max(1, i)] + "zz" + value[i + 2 :],
    ]
    return out


def _records() -> Iterator[dict[str, str | None]]:
    rng = random.Random(7)
    firsts = FIRST + [t for v in FIRST[:5] for t in _typos(v, rng)]
    lasts = LAST + [t for v in LAST[:4] for t in _typos(v, rng)]
    grid = list(itertools.product(firsts, lasts))
    for k, (first, last) in enumerate(grid[::8]):  # an eighth of the grid: ~15k pairs
        yield {
            "first_name": first,
            "first_name_canon": {"jon": "john", "johnathan": "john"}.get(first, first),
            "last_name": last,
            "birth_date": DATES[k % len(DATES)] if k % 5 else None,
            "birth_year": ["1959", "1960", "1985", None][k % 4],
            "address_line1": STREETS[k % len(STREETS)],
            "postcode": POSTCODES[(k // 2) % len(POSTCODES)],
            "city": CITIES[(k // 3) % len(CITIES)],
            "birth_place": CITIES[(k // 7) % len(CITIES)],
            "email": EMAILS[k % len(EMAILS)] if k % 4 else None,
            "phone": PHONES[k % len(PHONES)],
            "national_id": IDS[(k // 5) % len(IDS)],
            "gender": [None, "female", "male"][k % 3],
        }


def _level_sql(levels: list[dict]) -> str:
    """Splink's gamma as one CASE: null level -1, then the levels best first, ELSE 0."""
    n = len(levels) - 2
    whens = [f"WHEN {levels[0]['sql_condition']} THEN -1"]
    whens += [f"WHEN {lv['sql_condition']} THEN {n - i}" for i, lv in enumerate(levels[1:-1])]
    return "CASE " + " ".join(whens) + " ELSE 0 END"


def _pairs_sql(names: list[str], dialect: Dialect) -> tuple[str, list[str]]:
    """The pair frame (every ordered pair of the records, ``<col>_l`` / ``<col>_r``) and one
    guarded and one bare gamma column per comparison."""
    rules = load_matching(SHIPPED)
    guarded = splink_settings(rules, dialect)["comparisons"]
    bare = splink_settings(rules, dialect, guarded=False)["comparisons"]
    cols = []
    for g, b in zip(guarded, bare, strict=True):
        name = g["output_column_name"]
        cols += [f"{_level_sql(g['comparison_levels'])} AS g_{name}"]
        cols += [f"{_level_sql(b['comparison_levels'])} AS b_{name}"]
    sides = ", ".join(f"l.{c} AS {c}_l, r.{c} AS {c}_r" for c in names)
    pairs = f"SELECT {sides} FROM records l CROSS JOIN records r"
    return f"SELECT {', '.join(cols)} FROM ({pairs})", [c["output_column_name"] for c in guarded]


def test_guards_are_written_in_front_of_the_similarity_functions() -> None:
    spark_sql = str(splink_settings(load_matching(SHIPPED), "spark")["comparisons"])
    assert (
        "abs(length(first_name_l) - length(first_name_r)) <= 1"
        " AND (substr(first_name_l, 1, 1) = substr(first_name_r, 1, 1)"
        " OR right(first_name_l, 1) = right(first_name_r, 1)"
        " OR greatest(length(first_name_l), length(first_name_r)) <= 2)"
        " AND damerau_levenshtein(first_name_l, first_name_r) <= 1"
    ) in spark_sql
    assert (
        "5 * least(length(first_name_l), length(first_name_r)) >= "
        "3 * greatest(length(first_name_l), length(first_name_r))"
        " AND jaro_winkler(first_name_l, first_name_r) >= 0.92"
    ) in spark_sql
    # No length bound exists for Jaro-Winkler >= 0.8: that level stays bare.
    assert "jaro_winkler(first_name_l, first_name_r) >= 0.8" in spark_sql
    assert "ONE_EDIT" not in spark_sql and "JW_MIN" not in spark_sql
    bare = str(splink_settings(load_matching(SHIPPED), "spark", guarded=False)["comparisons"])
    assert "abs(length(" not in bare and "least(length(" not in bare


def test_guarded_levels_equal_bare_levels_on_spark(spark: SparkSession) -> None:
    records = list(_records())
    names = list(records[0])
    from splink.internals.spark.jar_location import get_scala_udfs

    for udf in get_scala_udfs():  # what Splink's Spark backend registers for its linker
        spark.udf.registerJavaFunction(*udf)
    frame = spark.createDataFrame(records, schema=", ".join(f"{c} string" for c in names))
    frame.createOrReplaceTempView("records")
    query, comparisons = _pairs_sql(names, "spark")
    levels = spark.sql(query)
    checks = ", ".join(
        f"sum(CASE WHEN g_{c} <> b_{c} THEN 1 ELSE 0 END) AS diff_{c}" for c in comparisons
    )
    spread = ", ".join(f"count(DISTINCT b_{c}) AS levels_{c}" for c in comparisons)
    row = levels.selectExpr("count(*) AS pairs", *checks.split(", "), *spread.split(", ")).first()
    assert row is not None
    assert row["pairs"] == len(records) ** 2
    assert {c: row[f"diff_{c}"] for c in comparisons} == {c: 0 for c in comparisons}
    # The data reaches most levels of every comparison, so the equality says something.
    assert all(row[f"levels_{c}"] >= 3 for c in comparisons), row
    spark.catalog.dropTempView("records")


def test_guarded_levels_equal_bare_levels_on_duckdb() -> None:
    duckdb = pytest.importorskip("duckdb")
    records = list(_records())
    names = list(records[0])
    con = duckdb.connect()
    con.execute(f"CREATE TABLE records ({', '.join(f'{c} VARCHAR' for c in names)})")
    con.executemany(
        f"INSERT INTO records VALUES ({', '.join('?' for _ in names)})",
        [[r[c] for c in names] for r in records],
    )
    query, comparisons = _pairs_sql(names, "duckdb")
    diffs = ", ".join(f"sum(CASE WHEN g_{c} <> b_{c} THEN 1 ELSE 0 END)" for c in comparisons)
    got = con.execute(f"SELECT count(*), {diffs} FROM ({query})").fetchone()
    assert got is not None and got[0] == len(records) ** 2
    assert list(got[1:]) == [0] * len(comparisons)


def test_every_comparison_of_the_shipped_config_is_checked() -> None:
    compared = {c.name for c in build_comparisons(load_matching(SHIPPED))}
    assert compared == {
        "first_name",
        "last_name",
        "birth_date",
        "birth_year",
        "location",
        "birth_place",
        "email",
        "phone",
        "national_id",
        "gender",
    }


def test_a_birth_year_counts_only_where_a_pair_lacks_a_full_birth_date(
    spark: SparkSession,
) -> None:
    rules = load_matching(SHIPPED)
    (year,) = [
        c for c in splink_settings(rules, "spark")["comparisons"]
        if c["output_column_name"] == "birth_year"
    ]  # fmt: skip
    rows = [  # birth_date_l, birth_date_r, birth_year_l, birth_year_r -> level
        ("1959-03-31", "1959-03-31", "1959", "1959", -1),  # the birth date weighs it
        ("1959-03-31", None, "1959", "1959", 2),  # a year alone on one side: exact
        (None, None, "1959", "1960", 1),  # one off
        (None, None, "1959", "1985", 0),
        (None, None, "1959", None, -1),
    ]
    df = spark.createDataFrame(
        [r[:4] for r in rows],
        "birth_date_l string, birth_date_r string, birth_year_l string, birth_year_r string",
    )
    got = [r[0] for r in df.selectExpr(_level_sql(year["comparison_levels"])).collect()]
    assert got == [r[4] for r in rows]
