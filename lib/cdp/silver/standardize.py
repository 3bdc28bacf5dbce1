"""Standardization transformations for the silver layer.

Every public ``standardize_*`` / ``parse_*`` function is a factory: it takes configuration
and returns a pure ``DataFrame -> DataFrame`` function for ``df.transform(...)``, in the style
of adidas/lakehouse-engine. They never create a session, read or write tables, and are
deterministic (same input rows, same output rows; only ``parse_date``'s default upper bound
"today" depends on the run date, and it can be pinned).

Output convention
-----------------
A standardizer of field ``<f>`` reads its input column (argument ``col``, by default the
field's own name) and writes, keeping every other column:

* ``<f>``: the standardized value, or null when the input is empty or could not be
  standardized. ``<f>`` defaults to the input column (replaced in place); pass ``out=`` to
  write elsewhere and keep the input column as it was.
* ``<f>_raw``: the original input value cast to string, always kept, so nothing is silently
  lost and rejected values can be inspected or re-processed.
* ``<f>_status``: never null, one of

  - ``"ok"``: standardized (the value may or may not differ from the input);
  - ``"empty"``: no value given: null, blank, a placeholder word
    (:data:`~cdp.silver.std_common.PLACEHOLDERS`: "n/a", "null", "none", "unknown", ...)
    or text without any letter or digit ("-", "???");
  - ``"invalid"``: a value was given but could not be standardized.

A few standardizers write more, documented on each (``split_full_name`` writes first and last
name columns, ``standardize_amount`` with ``currency_col`` writes ``<f>_currency``).

All text goes through :func:`~cdp.silver.std_common.clean_text` first: invisible characters
removed, Unicode NFKC, every kind of blank turned into one space, trimmed.

Implementation: Spark SQL expressions throughout, except phone numbers (``phonenumbers`` in a
vectorized pandas UDF). Unicode normalization calls ICU4J, which ships with Spark 4, through
``reflect`` (see :func:`~cdp.silver.std_common.unicode_normalize`); Spark labels ``reflect``
non-deterministic, so a filter placed after a standardizer is not pushed below it: filter
first where that matters. Intermediate values are computed in their own projections
(temporary ``__std_*`` columns, dropped before returning) so that no regex or UDF runs
twice per row.

Contents: :func:`standardize_email` (here), :func:`standardize_gender` (here),
:func:`standardize_phone` / :func:`phone_to_e164` (``std_phone``), :func:`standardize_name` /
:func:`split_full_name` / :func:`name_match_key` (``std_names``), :func:`parse_timestamp` /
:func:`parse_date` (``std_datetime``), :func:`standardize_country` / :func:`country_code` /
:func:`standardize_postcode` (``std_location``), :func:`standardize_amount` /
:func:`standardize_currency` / :func:`currency_code` (``std_money``).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdp.silver.std_common import (
    PLACEHOLDERS,
    STATUS_EMPTY,
    STATUS_INVALID,
    STATUS_OK,
    STATUSES,
    Transform,
    clean_text,
    emit,
    fold_key,
    is_empty,
    lookup,
    map_literal,
    no_value,
    require_columns,
    temp,
    unicode_normalize,
)
from cdp.silver.std_datetime import parse_date, parse_timestamp, parse_year
from cdp.silver.std_location import (
    POSTCODE_RULES,
    country_code,
    standardize_country,
    standardize_postcode,
)
from cdp.silver.std_money import currency_code, standardize_amount, standardize_currency
from cdp.silver.std_names import (
    name_match_key,
    split_full_name,
    standardize_name,
    title_case_name,
)
from cdp.silver.std_phone import phone_to_e164, standardize_phone
from cdp.silver.std_reference import COUNTRIES, CURRENCIES, GENDER_VALUES, GENDERS

__all__ = [
    "COUNTRIES",
    "CURRENCIES",
    "GENDER_VALUES",
    "PLACEHOLDERS",
    "POSTCODE_RULES",
    "STATUSES",
    "STATUS_EMPTY",
    "STATUS_INVALID",
    "STATUS_OK",
    "Transform",
    "clean_text",
    "country_code",
    "no_value",
    "currency_code",
    "email_syntax_ok",
    "name_match_key",
    "parse_date",
    "parse_year",
    "parse_timestamp",
    "phone_to_e164",
    "split_full_name",
    "standardize_amount",
    "standardize_country",
    "standardize_currency",
    "standardize_email",
    "standardize_gender",
    "standardize_name",
    "standardize_phone",
    "standardize_postcode",
    "title_case_name",
    "unicode_normalize",
]

# --- email -------------------------------------------------------------------------------

# Pragmatic address syntax (not full RFC 5322: no quoted local parts, comments or IP
# literals). Local part: dot-separated atoms, so no leading, trailing or doubled dot.
# Domain: two or more labels, letters/digits/hyphens not at a label's ends, and a top-level
# domain of 2+ letters (or an IDN "xn--" label). Unicode letters are allowed (RFC 6531).
_ATOM = r"[\p{L}\p{N}!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[\p{L}\p{N}](?:[\p{L}\p{N}-]{0,61}[\p{L}\p{N}])?"
_TLD = r"(?:\p{L}{2,63}|xn--[a-z0-9-]{1,59})"
EMAIL_RE = "^" + _ATOM + r"(?:\." + _ATOM + ")*@(?:" + _LABEL + r"\.)+" + _TLD + "$"
_GMAIL_DOMAINS = ("gmail.com", "googlemail.com")


def _email_clean(c: Column) -> Column:
    value = F.lower(clean_text(c))
    value = F.regexp_replace(value, r"^mailto:", "")
    return F.regexp_replace(value, r"^<(.*)>$", "$1")


def email_syntax_ok(c: Column) -> Column:
    """True when a cleaned, lower-cased address passes the pragmatic syntax and length rules."""
    local = F.substring_index(c, "@", 1)
    return c.rlike(EMAIL_RE) & (F.length(local) <= 64) & (F.length(c) <= 254)


def standardize_email(
    col: str = "email",
    *,
    gmail_dots: bool = False,
    plus_addressing: bool = False,
    out: str | None = None,
) -> Transform:
    """Trim, NFKC-normalize, lower-case and syntax-check email addresses.

    Invalid: "a@b" (no top-level domain), "john..doe@x.com" (doubled dot), "x @y.com"
    (blank), two "@", quoted local parts. A "mailto:" prefix and surrounding "<...>" are
    removed. Lower-casing the local part is technically lossy (RFC 5321 lets it be case
    sensitive) but no mainstream provider uses that, and it is what makes addresses joinable.

    Optional provider rules, applied after validation (the raw value keeps the original):

    * ``gmail_dots``: Gmail ignores dots in the local part: "j.o.h.n@googlemail.com" ->
      "john@gmail.com" (googlemail.com is the same mailbox as gmail.com).
    * ``plus_addressing``: remove a "+tag" suffix of the local part, for every domain
      ("john+news@x.com" -> "john@x.com"); an address that is only "+tag" is kept.
    """
    target = out or col

    def transform(df: DataFrame) -> DataFrame:
        require_columns(df, col)
        staged = df.withColumn(temp(target, "clean"), _email_clean(F.col(col)))
        cleaned = F.col(temp(target, "clean"))
        value = cleaned
        local = F.substring_index(value, "@", 1)
        domain = F.substring_index(value, "@", -1)
        if plus_addressing:
            local = F.regexp_replace(local, r"^(.+?)\+.*$", "$1")
        if gmail_dots:
            is_gmail = domain.isin(*_GMAIL_DOMAINS)
            local = F.when(is_gmail, F.regexp_replace(local, r"\.", "")).otherwise(local)
            domain = F.when(is_gmail, F.lit("gmail.com")).otherwise(domain)
        if plus_addressing or gmail_dots:
            value = F.concat(local, F.lit("@"), domain)
        return emit(
            staged,
            src=col,
            out=target,
            value=F.when(email_syntax_ok(cleaned), value),
            empty=is_empty(cleaned),
        )

    return transform


# --- gender ------------------------------------------------------------------------------


def clean_id(col: str) -> Transform:
    """An identifier as text, in place: trimmed, blank as null, and an integral number that a
    spreadsheet or pandas wrote as a float (``13085.0``; an id column with gaps is a float
    column in pandas) as the integer (``13085``), so that it joins the same id written
    plainly by another system. Leading zeros and every other character are kept; bronze keeps
    the value as delivered. No ``_raw`` / ``_status`` columns: nothing is judged invalid."""

    def transform(df: DataFrame) -> DataFrame:
        value = F.trim(F.col(col).cast("string"))
        value = F.regexp_replace(value, r"^([+-]?[0-9]+)\.0+$", "$1")
        return df.withColumn(col, F.nullif(value, F.lit("")))

    return transform


def standardize_gender(col: str = "gender", *, out: str | None = None) -> Transform:
    """Map gender variants to "male", "female", "other" or "unknown".

    Case, accents, blanks and punctuation are ignored ("M", "male", "Männlich" -> "male";
    "w", "Frau" -> "female"; "x", "Non-Binary", "divers" -> "other"; "u", "Prefer not to
    say" -> "unknown"). An explicit unknown is a value ("unknown", status ok); "n/a", "-" or
    blank are status empty; anything unmapped (including numeric codes, whose meaning varies
    by source) is invalid. The table is :data:`cdp.silver.std_reference.GENDERS`.
    """
    target = out or col

    def transform(df: DataFrame) -> DataFrame:
        require_columns(df, col)
        staged = df.withColumn(temp(target, "clean"), clean_text(col))
        cleaned = F.col(temp(target, "clean"))
        value = lookup(map_literal(GENDERS), fold_key(cleaned, cleaned=True))
        # The mapping wins over the placeholder list, where "unknown" also appears.
        empty = value.isNull() & is_empty(cleaned)
        return emit(staged, src=col, out=target, value=value, empty=empty)

    return transform
