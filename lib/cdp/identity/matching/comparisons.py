"""Comparisons as small objects that describe themselves and translate to Splink settings.

Each comparison kind is a list of levels, strongest first, each a SQL condition over the pair's
``<column>_l`` / ``<column>_r`` values. The same levels translate to Spark SQL (the stage) and
DuckDB SQL (the single-machine peer in the benchmark): only the similarity functions' names
differ between the two.

Values reach the comparisons standardized by :mod:`cdp.identity.matching.prepare`: names
folded (case, accents, punctuation), dates as ``yyyy-MM-dd``, postcodes upper-case.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from cdp.identity.matching.config import (
    CROSS,
    KEY_FUNCTIONS,
    ComparisonSpec,
    MatchingRules,
    block_sides,
    parse_side,
)

Dialect = Literal["spark", "duckdb"]

# The similarity functions of each backend (Spark: the Scala UDFs in Splink's jar).
_FUNCTIONS: dict[str, dict[str, str]] = {
    "spark": {"jw": "jaro_winkler", "dl": "damerau_levenshtein"},
    "duckdb": {"jw": "jaro_winkler_similarity", "dl": "damerau_levenshtein"},
}

# The column a forename's nickname forms are reduced to (see prepare.nickname_root).
CANON_SUFFIX = "_canon"
# The labels of the two levels every comparison has: a value missing on either side, and no
# level met (what `levels` and person_checks read).
NULL_LABEL = "null"
ELSE_LABEL = "else"


# Cheap necessary conditions in front of the similarity functions. Scoring at 1M person
# records spent 1,126 s in Splink's Scala UDFs, 14 to 16 calls per non-matching pair
# (benchmarks/RESULTS.md); a level's SQL is an AND, which Spark and DuckDB evaluate left to
# right and stop at the first false, so a guard that fails skips the UDF. Each guard follows
# from the function's definition, so a level holds with it exactly when it holds without:
# - ONE_EDIT(a, b), Damerau-Levenshtein <= 1: the lengths differ by at most one, and the
#   first or the last characters agree unless both are at most 2 long (one substitution,
#   insertion, deletion or adjacent swap cannot touch both ends of a longer string). For two
#   unrelated names that should leave roughly one pair in ten to the UDF (an estimate). (Spark's native
#   levenshtein(a, b, 2) would cut closer, but sqlglot, through which Splink passes the SQL,
#   knows no threshold argument and warns on every query.)
# - JW_MIN(a, b, t), Jaro-Winkler >= t: Jaro <= (m/|a| + m/|b| + 1) / 3 with m matching
#   characters, m <= min(|a|, |b|), so Jaro <= (2 + min/max) / 3; Winkler's prefix bonus
#   (at most 4 characters x 0.1) gives JW <= 0.4 + 0.6 Jaro <= 0.8 + 0.2 min/max. Hence
#   JW >= t needs min/max >= 5t - 4 (0.6 for 0.92): no cut at all for t <= 0.8.
# tests/identity/matching/test_comparisons.py checks guarded against bare levels on pairs
# of real-looking and noisy values.
_ONE_EDIT = re.compile(r"ONE_EDIT\((\w+), (\w+)\)")
_JW_MIN = re.compile(r"JW_MIN\((\w+), (\w+), ([0-9.]+)\)")


def _expand_guards(sql: str, dialect: Dialect, *, guarded: bool = True) -> str:
    """``sql`` with its ONE_EDIT / JW_MIN macros written out for ``dialect`` (``guarded``
    False: the similarity function alone, what the guards must agree with)."""
    fn = _FUNCTIONS[dialect]

    def one_edit(m: re.Match[str]) -> str:
        a, b = m.group(1), m.group(2)
        bare = f"{fn['dl']}({a}, {b}) <= 1"
        if not guarded:
            return bare
        ends = (
            f"(substr({a}, 1, 1) = substr({b}, 1, 1) OR right({a}, 1) = right({b}, 1)"
            f" OR greatest(length({a}), length({b})) <= 2)"
        )
        near = f"abs(length({a}) - length({b})) <= 1 AND {ends}"
        return f"{near} AND {bare}"

    def jw_min(m: re.Match[str]) -> str:
        a, b, t = m.group(1), m.group(2), m.group(3)
        bare = f"{fn['jw']}({a}, {b}) >= {t}"
        ratio = Fraction(t) * 5 - 4
        if not guarded or ratio <= 0:
            return bare
        # min/max >= p/q as q*min >= p*max: integers, no rounding.
        lo, hi = f"least(length({a}), length({b}))", f"greatest(length({a}), length({b}))"
        return f"{ratio.denominator} * {lo} >= {ratio.numerator} * {hi} AND {bare}"

    return _JW_MIN.sub(jw_min, _ONE_EDIT.sub(one_edit, sql))


@dataclass(frozen=True)
class Level:
    label: str
    # With {l} / {r} for the pair's two values, {jw} / {dl} for the functions, and the
    # guarded forms ONE_EDIT(a, b) / JW_MIN(a, b, t) over plain columns (_expand_guards).
    sql: str
    tf: bool = False  # term-frequency adjusted (exact levels only)
    tf_column: str | None = None  # the column whose frequency adjusts it (default: the field)


@dataclass(frozen=True)
class Comparison:
    """One comparison of a pair of records: a name, a field and its levels."""

    name: str
    field: str
    kind: str
    levels: tuple[Level, ...]
    # A location's three columns (street, postcode, city); else just ``field``.
    columns: tuple[str, ...] = ()
    # A field whose values on both records make this comparison's null level (a birth year
    # where both records carry the full birth date: that comparison weighs it).
    defer_to: str | None = None

    def describe(self) -> str:
        return f"{self.name} ({self.kind} on {self.field}): " + " > ".join(
            lv.label for lv in self.levels
        )

    def level_labels(self) -> dict[int, str]:
        """Splink's comparison vector value (gamma) -> level label; -1 is the null level."""
        n = len(self.levels)
        out = {-1: NULL_LABEL}
        for i, level in enumerate(self.levels):
            out[n - i] = level.label  # levels above ELSE count down to 1
        out[0] = ELSE_LABEL
        return out

    def to_splink(self, dialect: Dialect = "spark", *, guarded: bool = True) -> dict[str, Any]:
        """Splink's comparison dictionary. ``guarded`` False drops the cheap conditions in
        front of the similarity functions (the same levels, slower; for the tests)."""
        fn = _FUNCTIONS[dialect]
        col = self.field
        left, right = f"{col}_l", f"{col}_r"

        def sql(template: str) -> str:
            text = template.format(
                l=left, r=right, jw=fn["jw"], dl=fn["dl"], c=col, canon=col + CANON_SUFFIX
            )
            return _expand_guards(text, dialect, guarded=guarded)

        cols = self.columns or (col,)
        null = " AND ".join(f"({c}_l IS NULL OR {c}_r IS NULL)" for c in cols)
        if self.defer_to:
            d = self.defer_to
            null = f"({null}) OR ({d}_l IS NOT NULL AND {d}_r IS NOT NULL)"
        levels: list[dict[str, Any]] = [
            {
                "sql_condition": null,
                "label_for_charts": NULL_LABEL,
                "is_null_level": True,
            }
        ]
        for level in self.levels:
            entry: dict[str, Any] = {
                "sql_condition": sql(level.sql),
                "label_for_charts": level.label,
            }
            if level.tf:
                entry["tf_adjustment_column"] = level.tf_column or col
                entry["tf_adjustment_weight"] = 1.0
            levels.append(entry)
        levels.append({"sql_condition": "ELSE", "label_for_charts": ELSE_LABEL})
        return {
            "output_column_name": self.name,
            "comparison_description": self.describe(),
            "comparison_levels": levels,
        }


_EXACT = "{l} = {r}"


def _levels(spec: ComparisonSpec, partner: str | None) -> tuple[Level, ...]:
    """The levels of one comparison kind. ``partner``: the other name field, for swaps."""
    tf = spec.term_frequency
    exact = Level("exact", _EXACT, tf=tf)
    kind = spec.kind
    if kind in ("forename", "surname"):
        out = [exact]
        if kind == "forename":
            # Known forms of one name (Bob / Robert), from the nickname list.
            out.append(Level("nickname", "{canon}_l = {canon}_r"))
        if partner:
            # First and last name written the other way round.
            swap = f"{{l}} = {partner}_r AND {partner}_l = {{r}}"
            out.append(Level("swapped", swap))
            # Written the other way round and one of them mistyped: the swap is as rare by
            # chance, and "one edit" between a first and a last name would miss it.
            near = f"ONE_EDIT({{l}}, {partner}_r) AND ONE_EDIT({partner}_l, {{r}})"
            out.append(Level("swapped, one edit", near))
        out += [
            Level("one edit", "ONE_EDIT({l}, {r})"),
            Level("similar", "JW_MIN({l}, {r}, 0.92)"),
        ]
        if kind == "forename":
            out.append(
                Level(
                    "initial",
                    "(length({l}) = 1 OR length({r}) = 1) AND substr({l}, 1, 1) = substr({r}, 1, 1)",
                )
            )
        out.append(Level("alike", "{jw}({l}, {r}) >= 0.8"))
        return tuple(out)
    if kind == "birth_date":
        return (
            exact,
            Level(
                "day and month transposed",
                "substr({l}, 1, 4) = substr({r}, 1, 4) AND substr({l}, 6, 2) = substr({r}, 9, 2)"
                " AND substr({l}, 9, 2) = substr({r}, 6, 2)",
            ),
            # A year one off either way (1959 / 1960: an age turned into a birth year) or
            # with one digit mistyped (1959 / 1958, 1969), day and month the same.
            Level(
                "year off",
                "substr({l}, 6, 5) = substr({r}, 6, 5)"
                " AND ({dl}(substr({l}, 1, 4), substr({r}, 1, 4)) <= 1"
                " OR abs(try_cast(substr({l}, 1, 4) AS INT)"
                " - try_cast(substr({r}, 1, 4) AS INT)) = 1)",
            ),
            Level("one character off", "ONE_EDIT({l}, {r})"),
        )
    if kind == "year":
        return (exact, Level("one off", "abs(try_cast({l} AS INT) - try_cast({r} AS INT)) = 1"))
    if kind == "postcode":
        return (
            exact,
            Level("one character off", "ONE_EDIT({l}, {r})"),
            Level("same district", "split_part({l}, ' ', 1) = split_part({r}, ' ', 1)"),
        )
    if kind == "location":
        # One piece of evidence, not three: a street line, its postcode and its city agree
        # together for the members of a household, so counted apart they would outweigh a
        # different first name and birth date.
        a, p, c = spec.columns()
        return (
            Level("same street and postcode", f"{a}_l = {a}_r AND {p}_l = {p}_r"),
            Level("same street", f"{a}_l = {a}_r AND ({c}_l = {c}_r OR {p}_l = {p}_r)"),
            # One side gives its street alone: nothing disagrees, and without this level the
            # equal streets fell to ELSE and counted against the pair.
            Level(
                "same street, nothing else to compare",
                f"{a}_l = {a}_r AND ({p}_l IS NULL OR {p}_r IS NULL)"
                f" AND ({c}_l IS NULL OR {c}_r IS NULL)",
            ),
            Level(
                "similar street, same postcode",
                f"{p}_l = {p}_r AND JW_MIN({a}_l, {a}_r, 0.9)",
            ),
            Level("same postcode", f"{p}_l = {p}_r", tf=tf, tf_column=p),
            Level("same city", f"{c}_l = {c}_r", tf=tf, tf_column=c),
        )
    if kind == "city":
        return (exact, Level("similar", "JW_MIN({l}, {r}, 0.9)"))
    if kind == "address":
        return (
            exact,
            Level("similar", "JW_MIN({l}, {r}, 0.92)"),
            Level("alike", "{jw}({l}, {r}) >= 0.8"),
        )
    if kind == "email":
        return (
            exact,
            Level("same local part", "split_part({l}, '@', 1) = split_part({r}, '@', 1)"),
            Level("similar", "JW_MIN({l}, {r}, 0.9)"),
        )
    if kind == "phone":
        return (
            exact,
            Level("same last 8 digits", "right({l}, 8) = right({r}, 8)"),
            Level("one digit off", "ONE_EDIT({l}, {r})"),
        )
    if kind == "identifier":
        return (exact, Level("one character off", "ONE_EDIT({l}, {r})"))
    if kind == "exact":
        return (exact,)
    raise ValueError(f"unknown comparison kind {kind!r}")  # pragma: no cover - Literal-checked


def build_comparisons(rules: MatchingRules) -> list[Comparison]:
    """The comparisons of ``rules``; a forename and a surname know each other for swaps."""
    by_kind = {c.kind: c.columns()[0] for c in rules.comparisons}
    out = []
    for spec in rules.comparisons:
        partner = None
        if spec.kind == "forename":
            partner = by_kind.get("surname")
        elif spec.kind == "surname":
            partner = by_kind.get("forename")
        cols = tuple(spec.columns())
        defer_to = rules.birth_date_field() if spec.kind == "year" else None
        levels = _levels(spec, partner)
        out.append(Comparison(spec.name, cols[0], spec.kind, levels, cols, defer_to))
    return out


def block_columns(
    rule: Sequence[str], forename_fields: Sequence[str] = (), alias: tuple[str, str] = ("", "")
) -> tuple[list[str], list[str]]:
    """The left and right record's SQL expressions a blocking rule equates, in order
    (``alias``: the two records' table prefixes, ``("l.", "r.")`` in Splink's rules). A
    forename, or a key derived from it, reads its nickname root; a crosswise entry ``a=b``
    the raw values (a surname has no nickname root to meet)."""
    left: list[str] = []
    right: list[str] = []
    for entry in rule:
        sides = block_sides(entry)
        crosswise = sides[0] != sides[1]
        for side, prefix, out in zip(sides, alias, (left, right), strict=True):
            fn, field = parse_side(side)
            col = field + CANON_SUFFIX if field in forename_fields and not crosswise else field
            out.append(KEY_FUNCTIONS[fn].format(prefix + col) if fn else prefix + col)
    return left, right


def blocking_variants(rule: Sequence[str]) -> list[list[str]]:
    """``rule``, and its mirror when it has crosswise entries: a pair is compared when the
    rule holds either way round (Splink keeps one orientation of each pair per rule)."""
    rule = list(rule)
    mirror = []
    for entry in rule:
        a, b = block_sides(entry)
        mirror.append(f"{b}{CROSS}{a}" if CROSS in entry else entry)
    return [rule] if sorted(mirror) == sorted(rule) else [rule, mirror]


def blocking_sql(fields: Sequence[str], forename_fields: Sequence[str] = ()) -> str:
    """A blocking rule: every field equal (a forename through its nickname root), a
    crosswise entry ``a=b`` as ``l.a = r.b``, a derived key on both sides."""
    left, right = block_columns(fields, forename_fields, ("l.", "r."))
    return " AND ".join(f"{a} = {b}" for a, b in zip(left, right, strict=True))


def prediction_rules(rules: MatchingRules) -> list[list[str]]:
    """The blocking rules Splink applies: each configured rule, then its mirror if any."""
    return [v for b in rules.blocking for v in blocking_variants(b)]


def splink_settings(
    rules: MatchingRules,
    dialect: Dialect = "spark",
    *,
    unique_id: str = "unique_id",
    guarded: bool = True,
) -> dict[str, Any]:
    """The Splink settings dictionary (untrained) of ``rules`` (``guarded``: see
    :func:`_expand_guards`)."""
    comparisons = build_comparisons(rules)
    forenames = [str(c.field) for c in rules.comparisons if c.kind == "forename"]
    return {
        "link_type": "dedupe_only",
        "unique_id_column_name": unique_id,
        "probability_two_random_records_match": 1e-5,
        "comparisons": [c.to_splink(dialect, guarded=guarded) for c in comparisons],
        "blocking_rules_to_generate_predictions": [
            {"blocking_rule": blocking_sql(b, forenames), "sql_dialect": dialect}
            for b in prediction_rules(rules)
        ],
        "retain_matching_columns": False,
        "retain_intermediate_calculation_columns": False,
        "additional_columns_to_retain": [],
    }
