"""Building blocks shared by the silver-layer standardizers (see :mod:`cdp.silver.standardize`).

Column helpers here are pure expressions: no session, no I/O, no Python UDF.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Literal

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

Transform = Callable[[DataFrame], DataFrame]
"""What every factory returns: a function for ``df.transform(...)``."""

ColumnOrName = Column | str

STATUS_OK = "ok"
STATUS_EMPTY = "empty"
STATUS_INVALID = "invalid"
STATUSES = (STATUS_OK, STATUS_EMPTY, STATUS_INVALID)

# Lower-cased, trimmed values that mean "no value was given". Compared after clean_text().
PLACEHOLDERS: frozenset[str] = frozenset(
    {
        "n/a",
        "n.a.",
        "n.a",
        "na",
        "nan",
        "none",
        "null",
        "nil",
        "unknown",
        "undefined",
        "not available",
        "not applicable",
        "not provided",
        "not known",
        "not given",
        "tbd",
        "tba",
        "#n/a",
    }
)

_ICU_NORMALIZER = "com.ibm.icu.text.Normalizer"
NormalForm = Literal["NFC", "NFD", "NFKC", "NFKD"]
_ICU_METHODS: dict[str, tuple[str, bool]] = {
    # form -> (static method, compatibility flag) of com.ibm.icu.text.Normalizer
    "NFC": ("compose", False),
    "NFKC": ("compose", True),
    "NFD": ("decompose", False),
    "NFKD": ("decompose", True),
}

# Letters that Unicode decomposition does not turn into a base letter plus marks, folded by hand
# so that match keys agree across spellings ("Øster" ~ "Oster", "Łukasz" ~ "Lukasz").
_FOLD_SINGLE_FROM = "øłđħıŧ"
_FOLD_SINGLE_TO = "oldhit"
_FOLD_MULTI: dict[str, str] = {"ß": "ss", "æ": "ae", "œ": "oe", "þ": "th", "ð": "d"}


def col_of(c: ColumnOrName) -> Column:
    return F.col(c) if isinstance(c, str) else c


def unicode_normalize(
    c: ColumnOrName, form: NormalForm = "NFKC", *, check: ColumnOrName | None = None
) -> Column:
    """Unicode normalization (NFC/NFD/NFKC/NFKD) as a JVM expression, without a Python UDF.

    Spark has no built-in normalization function; a Python UDF would cost a round trip to a
    Python worker per batch. Spark 4 ships ICU4J (it backs collations), so its static
    ``Normalizer.compose/decompose(String, boolean)`` is called through ``reflect``. Only rows
    with a non-ASCII character take that path: ASCII text is already in every normal form, which
    keeps the (interpreted, reflective) call off the common case. ``check`` is the column tested
    for non-ASCII characters (default: the value itself); pass a cheaper column that is
    non-ASCII whenever the value is, to avoid computing an expensive value twice.

    Note: Spark flags ``reflect`` as non-deterministic, so filters written after a projection
    that uses it are not pushed below it. The function itself is deterministic.
    """
    method, compat = _ICU_METHODS[form]
    value = col_of(c)
    guard = value if check is None else col_of(check)
    return F.when(
        guard.rlike(r"[^\x00-\x7F]"),
        F.reflect(F.lit(_ICU_NORMALIZER), F.lit(method), value, F.lit(compat)),
    ).otherwise(value)


def clean_text(c: ColumnOrName) -> Column:
    """Remove invisible characters, NFKC-normalize, turn any Unicode space into one blank, trim.

    Null stays null; an all-blank value becomes "". Spark's ``trim`` only strips ASCII blanks,
    so tabs, newlines, no-break and full-width spaces are handled by regex here.
    """
    raw = col_of(c)
    # Control and format characters (zero-width space, BOM, soft hyphen...), but not whitespace,
    # which becomes a blank below so that "John\tSmith" keeps its word break.
    value = F.regexp_replace(raw, r"[\p{Cc}\p{Cf}&&[^\s]]", "")
    value = unicode_normalize(value, "NFKC", check=raw)
    value = F.regexp_replace(value, r"[\s\p{Z}]+", " ")
    return F.trim(value)


def is_empty(c: ColumnOrName, placeholders: Iterable[str] = PLACEHOLDERS) -> Column:
    """True for null, blank, a placeholder word or a value without any letter or digit ("-", "?").

    Expects a value already passed through :func:`clean_text`. Never null.
    """
    value = col_of(c)
    words = sorted(placeholders)
    return (
        value.isNull() | (value == "") | F.lower(value).isin(*words) | ~value.rlike(r"[\p{L}\p{N}]")
    )


def fold_key(c: ColumnOrName, *, cleaned: bool = False) -> Column:
    """Accent-folded, lower-case, letters-only key ("José-María" -> "josemaria"); "" -> null.

    ``cleaned=True`` when ``c`` already went through :func:`clean_text`.
    """
    value = col_of(c) if cleaned else clean_text(c)
    value = unicode_normalize(value, "NFKD", check=c)
    value = F.lower(F.regexp_replace(value, r"\p{M}+", ""))
    value = F.translate(value, _FOLD_SINGLE_FROM, _FOLD_SINGLE_TO)
    for src, dst in _FOLD_MULTI.items():
        value = F.regexp_replace(value, src, dst)
    return F.nullif(F.regexp_replace(value, r"[^\p{L}]+", ""), F.lit(""))


def fold_key_py(text: str) -> str:
    """The Python twin of :func:`fold_key`, used to build lookup tables with matching keys."""
    decomposed = unicodedata.normalize("NFKD", text)
    value = "".join(ch for ch in decomposed if not unicodedata.category(ch).startswith("M"))
    value = value.lower().translate(str.maketrans(_FOLD_SINGLE_FROM, _FOLD_SINGLE_TO))
    for src, dst in _FOLD_MULTI.items():
        value = value.replace(src, dst)
    return "".join(ch for ch in value if unicodedata.category(ch).startswith("L"))


def sql_literal(value: str) -> str:
    """``value`` as a Spark SQL string literal that reads the same whatever
    ``spark.sql.parser.escapedStringLiterals`` says: quoted as it is when it holds no quote
    and no backslash (the only characters the two settings read differently), else as
    UTF-8 bytes in hex (constant-folded like any literal)."""
    if "'" not in value and "\\" not in value:
        return f"'{value}'"
    return f"decode(unhex('{value.encode('utf-8').hex()}'), 'UTF-8')"


def map_literal(mapping: Mapping[str, str]) -> Column:
    """A constant Spark map built from a Python dict (sorted, so plans are stable).

    Written as one SQL expression, parsed by the JVM in one call: built literal by literal,
    a lookup table of a few hundred entries took a few hundred Py4J round trips, and the
    identity stage spent 15 of its 100 seconds building its nickname table (on a 300-person
    demo). The optimizer folds it into one constant map either way."""
    return _constant_map({k: sql_literal(v) for k, v in mapping.items()}, "string")


def map_of_lists_literal(mapping: Mapping[str, Sequence[str]]) -> Column:
    """A constant ``map<string, array<string>>`` (see :func:`map_literal`)."""
    values = {
        k: f"cast(array({', '.join(sql_literal(x) for x in v)}) as array<string>)"
        for k, v in mapping.items()
    }
    return _constant_map(values, "array<string>")


def _constant_map(sql_values: Mapping[str, str], value_type: str) -> Column:
    """``map<string, value_type>`` from string keys to values already written as SQL."""
    items = sorted(sql_values.items())
    if not items:
        return F.expr(f"cast(map() as map<string,{value_type}>)")
    keys = ", ".join(sql_literal(k) for k, _ in items)
    values = ", ".join(v for _, v in items)
    return F.expr(f"map_from_arrays(array({keys}), array({values}))")


def lookup(mapping: Column, key: Column) -> Column:
    # try_element_at: a missing key is null, also under ANSI mode.
    return F.try_element_at(mapping, key)


def case_when(branches: Sequence[tuple[Column, Column]], *, otherwise: Column) -> Column:
    """One flat CASE WHEN ... END from (condition, value) pairs."""
    if not branches:
        return otherwise
    expr = F.when(*branches[0])
    for condition, value in branches[1:]:
        expr = expr.when(condition, value)
    return expr.otherwise(otherwise)


def require_columns(df: DataFrame, *names: str | None) -> None:
    """Fail early, naming the missing column, instead of with a Spark analysis error later."""
    present = {c.lower() for c in df.columns}
    missing = [n for n in names if n is not None and n.lower() not in present]
    if missing:
        raise ValueError(f"column(s) {missing} not found; the DataFrame has {df.columns}")


def temp(out: str, part: str) -> str:
    """Name of a temporary column of the standardizer writing ``out``; :func:`emit` drops it."""
    return f"__std_{out}_{part}"


def emit(
    df: DataFrame,
    *,
    src: str,
    out: str,
    value: Column,
    empty: Column,
    extra: Mapping[str, Callable[[Column], Column]] | None = None,
) -> DataFrame:
    """Write ``out``, ``out_raw`` and ``out_status`` following the module convention.

    ``value`` is the standardized value (null where it could not be standardized), ``empty``
    a boolean saying the input carried no value. Both are materialized first in temporary
    columns, so an expensive expression (a UDF, a regex chain) is evaluated once per row even
    though the value and the status both depend on it. ``extra`` adds columns computed from the
    final value (for example the parts of a split name). Temporary columns named with
    :func:`temp` for ``out`` are dropped at the end.

    Why stages: Spark does not reliably share a sub-expression used several times in one
    projection (never when it is non-deterministic, like ``reflect``), while a column computed
    in one projection and read by the next is computed once. Spark's optimizer keeps such
    projections apart when merging them would duplicate non-trivial work.
    """
    tmp_value, tmp_empty = temp(out, "value"), temp(out, "empty")
    staged = df.withColumns({tmp_value: value, tmp_empty: F.coalesce(empty, F.lit(False))})
    v, e = F.col(tmp_value), F.col(tmp_empty)
    final = F.when(~e, v)
    # All expressions below see `staged`, where `src` still holds the input even when out == src.
    columns: dict[str, Column] = {
        out: final,
        f"{out}_raw": F.col(src).cast("string"),
        f"{out}_status": F.when(e, F.lit(STATUS_EMPTY))
        .when(v.isNull(), F.lit(STATUS_INVALID))
        .otherwise(F.lit(STATUS_OK)),
    }
    for name, build in (extra or {}).items():
        columns[name] = build(final)
    # One projection for what `withColumns(columns).drop(temporaries)` would give, in the same
    # column order (replaced columns in place, new ones at the end): every projection is a
    # plan Spark analyses again at each later step, and a source's standardizers stack a few
    # dozen (measured: 20 ms per step on a shallow plan, 80 ms at 300 deep).
    # Names match as Spark's resolver matches them (case-insensitively by default), and a
    # replaced column takes the new name, as in `withColumns`.
    prefix = temp(out, "")
    present = staged.columns
    case_sensitive = staged.sparkSession.conf.get("spark.sql.caseSensitive", "false") == "true"

    def key(name: str) -> str:
        return name if case_sensitive else name.lower()

    by_key = {key(name): name for name in columns}
    kept = [
        columns[by_key[key(c)]].alias(by_key[key(c)]) if key(c) in by_key else F.col(f"`{c}`")
        for c in present
        if not c.startswith(prefix)
    ]
    present_keys = {key(c) for c in present}
    added = [value.alias(name) for name, value in columns.items() if key(name) not in present_keys]
    return staged.select(*kept, *added)


def no_value(out: str) -> Transform:
    """``out``, ``out_raw`` and ``out_status`` for a field the source does not carry.

    The same columns any standardizer emits for a null input (null value and raw form, status
    ``empty``), as literals: a field absent from a source's mapping never reaches a
    standardizer's expressions or UDF.
    """

    def transform(df: DataFrame) -> DataFrame:
        null = F.lit(None).cast("string")
        return df.withColumns({out: null, f"{out}_raw": null, f"{out}_status": F.lit(STATUS_EMPTY)})

    return transform
