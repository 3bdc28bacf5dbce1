"""Names: case, honorifics, splitting, match keys (``cdp.silver.std_names``)."""

from __future__ import annotations

from pyspark.sql import SparkSession
from std_helpers import check, expect, raw_of, run

from cdp.silver import standardize as S

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
        (21, "Sir"),  # an honorific alone: the given name was not known
        (22, "MISS."),
        (23, "Drew"),  # starts like one, is a name
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
        (21, None, "empty"),
        (22, None, "empty"),
        (23, "Drew", "ok"),
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
