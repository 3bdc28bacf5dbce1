"""Silver records -> the input of probabilistic matching (pure transformations).

One row per live record of the compared tables: ``unique_id`` (the record's graph node),
``member_key`` (its readable key) and one standardized column per compared field:

* names folded (case, accents, punctuation: :func:`cdp.silver.std_common.fold_key`), a
  forename also as ``<field>_canon``, the root of its known forms (Bob, Bobby -> robert);
* dates as ``yyyy-MM-dd``; postcodes upper-case with one blank; cities and street lines
  folded word by word, a street type in one short form whether written out or abbreviated
  ("Mill Lane" / "Mill Ln", "Goethestraße" / "Goethestr."); e-mails and phones as silver
  standardized them;
* custom identifiers (``attributes[<name>]`` of sources that declare them) upper-case, letters
  and digits only ("qq 12 34 56 c" -> "QQ123456C").

A field whose silver status is not ``ok`` is null: an invalid value is no evidence. Records
with fewer than ``min_fields`` compared values take no part (a lone first name matches
everyone).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdp.identity.matching.comparisons import CANON_SUFFIX
from cdp.identity.matching.config import MatchingRules
from cdp.identity.nodes import custom_identifier, field_value, live, member_key, record_node
from cdp.identity.rules import RECORD_TABLES
from cdp.silver.std_common import fold_key, fold_key_py, map_literal

NAME_KINDS = ("forename", "surname")
WORD_KINDS = ("city", "address")
# Street types in the short form postal standards use (USPS Publication 28 for English,
# "Str." for German and Dutch), keyed by the folded word: one person's two records write
# "Church Lane" and "Church Ln", "Schillerstraße" and "Schillerstr.", and only an equal street
# line reaches the location comparison's strongest levels.
STREET_TYPES = {
    "avenue": "ave",
    "av": "ave",
    "boulevard": "blvd",
    "bd": "blvd",
    "close": "cl",
    "court": "ct",
    "crescent": "cres",
    "drive": "dr",
    "gardens": "gdns",
    "highway": "hwy",
    "lane": "ln",
    "mount": "mt",
    "parkway": "pkwy",
    "place": "pl",
    "platz": "pl",
    "road": "rd",
    "saint": "st",
    "square": "sq",
    "street": "st",
    "terrace": "ter",
    "strasse": "str",
    "straat": "str",
}
# A German or Dutch street name is one word ending in its type: the ending is abbreviated.
_STREET_SUFFIX = r"(strasse|straat)$"


def nickname_roots(nicknames: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Folded form -> the root of its entry (the smallest entry name holding it), so that
    every form of one name shares a root."""
    roots: dict[str, str] = {}
    for name, forms in sorted(nicknames.items()):
        root = fold_key_py(name)
        for form in [name, *forms]:
            key = fold_key_py(form)
            if key and (key not in roots or root < roots[key]):
                roots[key] = root
    return roots


def _folded_words(c: Column) -> Column:
    """Lower-case words of letters and digits, accents folded, one blank between."""
    words = F.split(F.lower(F.trim(c)), r"[^\p{L}\p{N}]+")
    folded = F.transform(words, lambda w: F.coalesce(fold_key(w), F.regexp_extract(w, r"\d+", 0)))
    return F.nullif(F.array_join(F.filter(folded, lambda w: w != ""), " "), F.lit(""))


def _street_words(c: Column) -> Column:
    """:func:`_folded_words` of a street line, each street type in its short form."""
    types = map_literal(STREET_TYPES)
    words = F.split(_folded_words(c), " ")
    short = F.transform(
        words,
        lambda w: F.coalesce(
            F.try_element_at(types, w), F.regexp_replace(w, _STREET_SUFFIX, "str")
        ),
    )
    return F.array_join(short, " ")


def _value(df: DataFrame, field: str, kind: str) -> Column:
    canonical = set().union(*(t.fields for t in RECORD_TABLES.values()))
    if field not in canonical:
        return custom_identifier(df, field)
    if field not in df.columns:
        return F.lit(None).cast("string")
    if kind in NAME_KINDS:
        return field_value(df, field)  # folded
    value = field_value(df, field)
    if kind == "birth_date":
        return F.date_format(F.to_date(value), "yyyy-MM-dd")
    if kind == "year":
        return F.when(F.trim(value).rlike(r"^[0-9]{4}$"), F.trim(value))
    if kind == "postcode":
        return F.nullif(F.upper(F.regexp_replace(F.trim(value), r"\s+", " ")), F.lit(""))
    if kind == "address":
        return _street_words(value)
    if kind in WORD_KINDS:
        return _folded_words(value)
    return value


def matching_input(
    frames: Mapping[str, DataFrame],
    rules: MatchingRules,
    nicknames: Mapping[str, Sequence[str]] | None = None,
) -> DataFrame:
    """``unique_id, member_key, <field>..., [<forename>_canon]`` of every live record of
    ``rules.tables`` carrying at least ``rules.min_fields`` compared values."""
    roots = nickname_roots(nicknames or {})
    root_map = map_literal(roots) if roots else None
    comparisons = rules.comparisons
    parts = []
    for table in sorted(set(rules.tables) & set(frames)):
        df = live(frames[table])
        cols = [
            record_node(table).alias("unique_id"),
            member_key(F.lit(table), F.col("source"), F.col("source_record_id")).alias(
                "member_key"
            ),
        ]
        for c in comparisons:
            if c.kind == "location":
                roles = zip(c.columns(), ("address", "postcode", "city"), strict=True)
                cols += [_value(df, f, kind).alias(f) for f, kind in roles]
            else:
                cols.append(_value(df, str(c.field), c.kind).alias(str(c.field)))
        parts.append(df.select(*cols))
    if not parts:
        raise ValueError(f"none of the compared tables {rules.tables} is present")
    out = reduce(DataFrame.unionByName, parts).dropDuplicates(["unique_id"])
    # A record's birth year is its birth date's where it has one (a ``year`` comparison
    # meets a register's year alone); counted toward min_fields only where it stands alone.
    birth_date = rules.birth_date_field()
    years = {str(c.field) for c in comparisons if c.kind == "year"}
    if birth_date is not None:
        for y in sorted(years):
            out = out.withColumn(y, F.coalesce(F.col(y), F.substring(birth_date, 1, 4)))

    def counts(f: str) -> Column:
        if f in years and birth_date is not None:
            return (F.col(f).isNotNull() & F.col(birth_date).isNull()).cast("int")
        return F.col(f).isNotNull().cast("int")

    present = reduce(lambda a, b: a + b, [counts(f) for f in rules.identifying_fields()])
    out = out.where(present >= rules.min_fields)
    for c in comparisons:
        if c.kind == "forename":
            root: Callable[[Column], Column] = (
                (lambda v: F.coalesce(F.try_element_at(root_map, v), v))
                if root_map is not None
                else (lambda v: v)
            )
            out = out.withColumn(f"{c.field}{CANON_SUFFIX}", root(F.col(str(c.field))))
    return out
