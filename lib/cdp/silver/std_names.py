"""Person-name standardizers (see :mod:`cdp.silver.standardize` for the conventions).

Casing rules, kept deliberately simple and predictable:

* A word part that is all lower case or all upper case is re-cased: first letter upper, the
  rest lower. Parts are split after an apostrophe, hyphen or dot, so "o'brien" -> "O'Brien",
  "smith-jones" -> "Smith-Jones", "j.r.r." -> "J.R.R.".
* A part in mixed case is kept as written: the source knew better ("McDonald", "DeVito",
  "MacKenzie", "van der Berg" stay as they are).
* "Mc" + letter: "mcdonald" / "MCDONALD" -> "McDonald". "Mac" is not touched ("Macy",
  "Mackey" are not "MacY"), so "macdonald" -> "Macdonald".
* Particles (:data:`PARTICLES`: van, von, de, del, la, le, ...) are lower-cased when they
  are neither the first nor the last word and were not written in mixed case:
  "LUDWIG VAN BEETHOVEN" -> "Ludwig van Beethoven", while a last name standing alone keeps
  a capital ("van der berg" -> "Van der Berg", the Dutch convention).

Honorifics before the name (Mr, Mrs, Ms, Miss, Mx, Dr, Prof, Sir, Dame, Rev, Herr, Frau, Mme,
Mlle, Sr, Sra, Srta) and suffixes after it (Jr, Sr, II, III, IV, PhD, MD, Esq, ...) are removed
when ``strip_honorifics`` is on. A name is invalid when, after that, it holds anything but
letters, combining marks, blanks, apostrophes, hyphens, dots and commas (digits, "@", ...).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdp.silver.std_common import (
    PLACEHOLDERS,
    ColumnOrName,
    Transform,
    clean_text,
    emit,
    fold_key,
    is_empty,
    require_columns,
    temp,
)

PARTICLES: tuple[str, ...] = (
    "van", "von", "der", "den", "de", "del", "della", "di", "da", "du", "la", "le", "dos",
    "ter", "ten", "zu",
)  # fmt: skip

# "Na" and "Nan" are given names; only the unambiguous placeholders apply to names.
_NAME_PLACEHOLDERS = PLACEHOLDERS - {"na", "nan"}

_HONORIFICS = "mr|mrs|ms|miss|mx|mstr|dr|prof|sir|dame|rev|revd|herr|frau|mme|mlle|sr|sra|srta"
_SUFFIXES = r"jr|jnr|sr|snr|ii|iii|iv|phd|ph\.d|md|m\.d|dds|esq|mba|obe|mbe|cbe|kbe|qc|kc"
# Leading honorifics need a dot, a blank or the end after them, so "Drew" or "Misses" are
# left alone; a name field that holds nothing but one ("Sir", a register's first name where
# the given name was not known) is no name: empty, not a given name that 1 in 40 people share.
_PREFIX_RE = rf"(?i)^(?:(?:{_HONORIFICS})(?:\.\s*|\s+|$))+"
_SUFFIX_RE = rf"(?i)(?:(?:\s*,\s*|\s+)(?:{_SUFFIXES})\.?)+$"
_VALID_RE = r"^[\p{L}\p{M}'.,\- ]+$"
# Typographic apostrophes and dashes seen in names, mapped to ASCII ' and -.
_APOSTROPHES = "\u2019\u2018\u02bc\u00b4`"
_DASHES = "\u2010\u2011\u2012\u2013\u2014"


def _prepare(c: ColumnOrName, strip_honorifics: bool) -> Column:
    """Clean text, unify apostrophes and hyphens, drop honorifics; not yet re-cased."""
    value = clean_text(c)
    value = F.translate(value, _APOSTROPHES + _DASHES, "'" * len(_APOSTROPHES) + "-" * len(_DASHES))
    value = F.regexp_replace(value, r"\s*-\s*", "-")
    value = F.regexp_replace(value, r"\s+,", ",")
    if strip_honorifics:
        value = F.regexp_replace(value, _PREFIX_RE, "")
        value = F.regexp_replace(value, _SUFFIX_RE, "")
    return F.trim(value)


def _is_valid(value: Column) -> Column:
    return value.rlike(_VALID_RE) & value.rlike(r"\p{L}")


def _recase_part(part: Column) -> Column:
    lower = F.lower(part)
    single_case = (part == lower) | (part == F.upper(part))
    capitalized = F.when(
        lower.rlike(r"^mc\p{L}{2,}"),
        F.concat(
            F.lit("Mc"), F.upper(F.substring(part, 3, 1)), F.lower(F.substring(part, 4, 1 << 20))
        ),
    ).otherwise(F.concat(F.upper(F.substring(part, 1, 1)), F.lower(F.substring(part, 2, 1 << 20))))
    return F.when(single_case, capitalized).otherwise(part)


def title_case_name(c: ColumnOrName) -> Column:
    """Re-case a cleaned name by the module's rules (no cleaning, no honorific stripping)."""
    words = F.split(c if isinstance(c, Column) else F.col(c), " ")
    count = F.size(words)

    def word(w: Column, i: Column) -> Column:
        lower = F.lower(w)
        is_particle = (
            (i > 0) & (i < count - 1) & lower.isin(*PARTICLES) & ((w == lower) | (w == F.upper(w)))
        )
        # Split after ' - . keeping the delimiter with the part before it ("o'" + "brien").
        parts = F.split(w, r"(?<=['.\-])")
        return F.when(is_particle, lower).otherwise(
            F.array_join(F.transform(parts, _recase_part), "")
        )

    return F.array_join(F.transform(words, word), " ")


def name_match_key(c: ColumnOrName) -> Column:
    """Key for matching names across spellings: lower case, accents folded, letters only.

    "José García-O'Neill", "JOSE GARCIA ONEILL" and "Jose\u0301 Garci\u0301a O'Neill" all give
    "josegarciaoneill". Null when nothing is left. Apply it to a standardized name so that
    honorifics are already gone.
    """
    return fold_key(c)


def standardize_name(
    col: str, *, strip_honorifics: bool = True, out: str | None = None
) -> Transform:
    """Clean and re-case a name: "  JOSÉ  garcía " -> "José García", "o'neill" -> "O'Neill".

    Unicode NFKC (so a combining accent and its precomposed letter give the same text),
    invisible characters removed, blanks collapsed, typographic apostrophes/dashes unified,
    honorifics and suffixes stripped ("Dr. Jane Smith-Jones Jr." -> "Jane Smith-Jones").
    """
    target = out or col

    def transform(df: DataFrame) -> DataFrame:
        require_columns(df, col)
        staged = df.withColumn(temp(target, "prep"), _prepare(col, strip_honorifics))
        prepared = F.col(temp(target, "prep"))
        value = F.when(_is_valid(prepared), title_case_name(prepared))
        return emit(
            staged, src=col, out=target, value=value, empty=is_empty(prepared, _NAME_PLACEHOLDERS)
        )

    return transform


def split_full_name(
    col: str = "full_name",
    first: str = "first_name",
    last: str = "last_name",
    *,
    strip_honorifics: bool = True,
    out: str | None = None,
) -> Transform:
    """Standardize a one-field name and split it into first and last name.

    Writes the convention's ``<out>``/``<out>_raw``/``<out>_status`` for the whole name (in
    "First Last" order) plus ``first`` and ``last``. Accepted forms:

    * "Smith, John Paul" -> first "John Paul", last "Smith" (all before the comma is the last
      name, so "Smith Jones, Mary" keeps a two-word last name);
    * "John Paul Smith" -> first "John Paul", last "Smith": the last word is the last name,
      unless a particle starts it earlier ("Juan de la Cruz" -> "Juan" / "de la Cruz");
    * one word ("Madonna") -> first name only, last name null.
    """
    target = out or col

    def transform(df: DataFrame) -> DataFrame:
        require_columns(df, col)
        staged = df.withColumn(temp(target, "prep"), _prepare(col, strip_honorifics))
        prepared = F.col(temp(target, "prep"))
        has_comma = prepared.contains(",")
        before = F.trim(F.substring_index(prepared, ",", 1))
        after = F.trim(F.regexp_replace(F.regexp_extract(prepared, r"^[^,]*,(.*)$", 1), ",", " "))
        ordered = F.when(has_comma, F.trim(F.concat_ws(" ", after, before))).otherwise(prepared)
        valid = _is_valid(prepared) & (ordered != "")
        value = F.when(valid, title_case_name(ordered))
        last_words = F.size(F.split(before, " "))

        def first_of(full: Column) -> Column:
            return _part(full, has_comma, last_words, first=True)

        def last_of(full: Column) -> Column:
            return _part(full, has_comma, last_words, first=False)

        return emit(
            staged,
            src=col,
            out=target,
            value=value,
            empty=is_empty(prepared, _NAME_PLACEHOLDERS),
            extra={first: first_of, last: last_of},
        )

    return transform


def _part(full: Column, has_comma: Column, last_words: Column, *, first: bool) -> Column:
    """First or last name out of a standardized "First ... Last" string (null stays null)."""
    words = F.split(full, " ")
    count = F.size(words)
    particle_at = F.array_position(
        F.transform(words, lambda w, i: (i > 0) & (i < count - 1) & F.lower(w).isin(*PARTICLES)),
        True,
    )
    # 1-based index of the first word of the last name.
    start = (
        F.when(has_comma, count - last_words + 1)
        .when(particle_at > 0, particle_at)
        .otherwise(count)
    )
    if first:
        single = (count == 1) & ~has_comma
        first_part = F.when(start > 1, F.array_join(F.slice(words, F.lit(1), start - 1), " "))
        return F.when(single, full).otherwise(first_part)
    last_part = F.array_join(F.slice(words, start, count - start + 1), " ")
    return F.when((count > 1) | has_comma, F.when(last_part != "", last_part))
