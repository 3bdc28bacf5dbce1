"""Country and postcode standardizers (see :mod:`cdp.silver.standardize` for the conventions)."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdp.silver.std_common import (
    ColumnOrName,
    Transform,
    case_when,
    clean_text,
    emit,
    fold_key,
    is_empty,
    lookup,
    map_literal,
    require_columns,
    temp,
)
from cdp.silver.std_reference import COUNTRY_KEYS

# "NA" is a placeholder far more often than Namibia (which is not in the table anyway).
_COUNTRY_PLACEHOLDERS = frozenset({"n/a", "n.a.", "none", "null", "nil", "unknown", "na", "nan"})


def country_code(c: ColumnOrName, *, cleaned: bool = False) -> Column:
    """ISO 3166-1 alpha-2 for a country code, name or variant; null when unknown or empty.

    Idempotent ("GB" -> "GB"), so it can be applied to a column standardized earlier. The
    lookup is a constant map: a few hundred keys, no join, no shuffle. ``cleaned=True`` when
    ``c`` already went through :func:`~cdp.silver.std_common.clean_text`.
    """
    return lookup(map_literal(COUNTRY_KEYS), fold_key(c, cleaned=cleaned))


def standardize_country(col: str = "country", *, out: str | None = None) -> Transform:
    """Country names, alpha-3/alpha-2 codes and common variants -> ISO 3166-1 alpha-2.

    "UK", "Great Britain", "England" -> "GB"; "Deutschland" -> "DE"; "U.S.A." -> "US";
    "Holland" -> "NL". Matching ignores case, accents, spaces and punctuation. A non-empty
    value not in the embedded table (:data:`cdp.silver.std_reference.COUNTRIES`) is invalid.
    """
    target = out or col

    def transform(df: DataFrame) -> DataFrame:
        require_columns(df, col)
        staged = df.withColumn(temp(target, "clean"), clean_text(col))
        cleaned = F.col(temp(target, "clean"))
        return emit(
            staged,
            src=col,
            out=target,
            value=country_code(cleaned, cleaned=True),
            empty=is_empty(cleaned, _COUNTRY_PLACEHOLDERS),
        )

    return transform


# alpha-2 -> (regex on the compact form: upper case, no blanks or hyphens; replacement giving
# the canonical spacing). Formats from the national postal operators, kept pragmatic.
POSTCODE_RULES: dict[str, tuple[str, str]] = {
    # GB: outward code (A9, A99, A9A, AA9, AA99, AA9A, or GIR) + inward code (9AA).
    "GB": (r"^([A-Z]{1,2}[0-9][A-Z0-9]?|GIR)([0-9][A-Z]{2})$", "$1 $2"),
    "US": (r"^([0-9]{5})(?:([0-9]{4}))?$", "$1-$2"),  # "-$2" trimmed below for 5-digit ZIPs
    "DE": (r"^([0-9]{5})$", "$1"),
    "FR": (r"^([0-9]{5})$", "$1"),
    "IT": (r"^([0-9]{5})$", "$1"),
    "ES": (r"^((?:0[1-9]|[1-4][0-9]|5[0-2])[0-9]{3})$", "$1"),
    "NL": (r"^([1-9][0-9]{3})([A-Z]{2})$", "$1 $2"),
    "CA": (r"^([ABCEGHJ-NPRSTVXY][0-9][ABCEGHJ-NPRSTV-Z])([0-9][ABCEGHJ-NPRSTV-Z][0-9])$", "$1 $2"),
    # IE Eircode: routing key (letter + 2 digits, or D6W) + 4-character unique identifier.
    "IE": (r"^([AC-FHKNPRTV-Y][0-9]{2}|D6W)([0-9AC-FHKNPRTV-Y]{4})$", "$1 $2"),
    "AU": (r"^([0-9]{4})$", "$1"),
    "BE": (r"^([1-9][0-9]{3})$", "$1"),
    "AT": (r"^([1-9][0-9]{3})$", "$1"),
    "CH": (r"^([1-9][0-9]{3})$", "$1"),
    "DK": (r"^([1-9][0-9]{3})$", "$1"),
    "NO": (r"^([0-9]{4})$", "$1"),
    "SE": (r"^([1-9][0-9]{2})([0-9]{2})$", "$1 $2"),
    "PL": (r"^([0-9]{2})([0-9]{3})$", "$1-$2"),
    "PT": (r"^([1-9][0-9]{3})([0-9]{3})$", "$1-$2"),
}


def standardize_postcode(
    col: str = "postcode", *, country_col: str | None = "country", out: str | None = None
) -> Transform:
    """Normalize (upper case, trimmed, canonical spacing) and validate postcodes per country.

    The row's country (``country_col``, raw or already standardized: it goes through
    :func:`country_code`) selects a rule from :data:`POSTCODE_RULES`: "sw1a1aa" -> "SW1A 1AA",
    "123456789" (US) -> "12345-6789", "1234ab" (NL) -> "1234 AB". A value that breaks its
    country's rule is invalid. Leading zeros lost by spreadsheets ("2134" for US "02134") are
    not guessed back: invalid. Other or unknown countries: upper-cased, blanks collapsed, ok.
    ``country_col=None`` treats every row as an unknown country.
    """
    target = out or col

    def transform(df: DataFrame) -> DataFrame:
        require_columns(df, col, country_col)
        cleaned_upper = F.upper(clean_text(col))
        staged = df.withColumns(
            {
                temp(target, "clean"): cleaned_upper,
                temp(target, "country"): (
                    country_code(country_col) if country_col else F.lit(None).cast("string")
                ),
            }
        ).withColumn(
            temp(target, "compact"),
            F.regexp_replace(F.col(temp(target, "clean")), r"[\s\-]", ""),
        )
        cleaned = F.col(temp(target, "clean"))
        compact = F.col(temp(target, "compact"))
        country = F.col(temp(target, "country"))
        # One CASE over the country; inside it, a value that fails the rule becomes null.
        branches: list[tuple[Column, Column]] = []
        for code, (pattern, replacement) in POSTCODE_RULES.items():
            formatted = F.regexp_replace(compact, pattern, replacement)
            if code == "US":
                formatted = F.regexp_replace(formatted, r"-$", "")
            branches.append((country == code, F.when(compact.rlike(pattern), formatted)))
        value = case_when(branches, otherwise=cleaned)
        return emit(staged, src=col, out=target, value=value, empty=is_empty(cleaned))

    return transform
