"""Standardizers for the silver layer: factories of ``DataFrame -> DataFrame`` transformations.

Convention for a standardized field ``f`` (input column configurable, default ``f``):

* ``f`` — the standardized value, or null when the input was empty or could not be standardized;
* ``f_raw`` — the input exactly as received, as text (always kept: nothing is silently lost);
* ``f_status`` — ``"ok"``, ``"empty"`` (null, blank or a placeholder such as "n/a") or
  ``"invalid"`` (a value was given but could not be standardized).

Everything is a Spark SQL expression except phone numbers, which use the ``phonenumbers``
library in a vectorized pandas UDF (parse results are cached per batch, as the same numbers
recur).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DecimalType, StringType

from cdp.silver.std_common import (
    PLACEHOLDERS,
    Transform,
    clean_text,
    emit,
    fold_key,
    fold_key_py,
    is_empty,
    lookup,
    map_literal,
    require_columns,
)

# --------------------------------------------------------------------------------------------
# Email
# --------------------------------------------------------------------------------------------

EMAIL_PATTERN = (
    r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}$"
)
GMAIL_DOMAINS = ("gmail.com", "googlemail.com")


def standardize_email(
    col: str = "email",
    *,
    out: str | None = None,
    gmail_dots: bool = False,
    plus_addressing: bool = False,
) -> Transform:
    """Trim, lower-case, validate syntax; optionally apply provider rules.

    ``gmail_dots``: dots in a Gmail local part are ignored by Gmail, so they are removed and
    googlemail.com becomes gmail.com. ``plus_addressing``: "+tag" suffixes are dropped.
    """
    target = out or col

    def transform(df: DataFrame) -> DataFrame:
        require_columns(df, col)
        text = F.lower(clean_text(F.col(col)))
        text = F.regexp_replace(text, r"^mailto:", "")
        local = F.substring_index(text, "@", 1)
        domain = F.substring_index(text, "@", -1)
        if plus_addressing:
            local = F.regexp_replace(local, r"\+.*$", "")
        if gmail_dots:
            is_gmail = domain.isin(*GMAIL_DOMAINS)
            local = F.when(is_gmail, F.regexp_replace(local, r"\.", "")).otherwise(local)
            domain = F.when(is_gmail, F.lit("gmail.com")).otherwise(domain)
        candidate = F.concat(local, F.lit("@"), domain)
        valid = (
            text.rlike(EMAIL_PATTERN) & (F.size(F.split(text, "@")) == 2) & (F.length(text) <= 254)
        )
        return emit(df, src=col, out=target, value=F.when(valid, candidate), empty=is_empty(text))

    return transform


# --------------------------------------------------------------------------------------------
# Phone
# --------------------------------------------------------------------------------------------

_JUNK_DIGITS = re.compile(r"^(\d)\1+$")


def phone_to_e164(value: str | None, region: str | None) -> str | None:
    """E.164 for a valid number, else None (the plain-Python core of the phone UDF)."""
    import phonenumbers

    if value is None:
        return None
    text = value.strip()
    digits = re.sub(r"\D", "", text)
    if (
        len(digits) < 6
        or _JUNK_DIGITS.match(digits)
        or digits in ("123456", "1234567", "12345678", "123456789")
    ):
        return None
    try:
        parsed = phonenumbers.parse(text, (region or "").upper() or None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


@F.pandas_udf(StringType())  # type: ignore[call-overload]
def _e164_udf(values: pd.Series, regions: pd.Series) -> pd.Series:
    cache: dict[tuple[str | None, str | None], str | None] = {}
    out = []
    for value, region in zip(values, regions, strict=True):
        v = None if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
        r = (
            None
            if region is None or (isinstance(region, float) and pd.isna(region))
            else str(region)
        )
        key = (v, r)
        if key not in cache:
            cache[key] = phone_to_e164(v, r)
        out.append(cache[key])
    return pd.Series(out, dtype=object)


def standardize_phone(
    col: str = "phone",
    *,
    out: str | None = None,
    default_region: str | None = "GB",
    region_col: str | None = None,
) -> Transform:
    """Phone numbers to E.164. National numbers are read in the row's region (``region_col``,
    an ISO alpha-2 country, when present) or else ``default_region``. Repeated-digit junk
    ("0000000000") and sequences ("123456") are invalid; placeholders are empty."""
    target = out or col

    def transform(df: DataFrame) -> DataFrame:
        require_columns(df, col, region_col)
        text = clean_text(F.col(col))
        region = F.upper(F.col(region_col)) if region_col else F.lit(None).cast("string")
        region = F.coalesce(F.when(F.length(region) == 2, region), F.lit(default_region))
        empty = is_empty(text)
        value = F.when(~empty, _e164_udf(text, region))
        return emit(df, src=col, out=target, value=value, empty=empty)

    return transform


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------

HONORIFICS = (
    "mr",
    "mrs",
    "ms",
    "miss",
    "mx",
    "dr",
    "prof",
    "professor",
    "sir",
    "dame",
    "madam",
    "mme",
    "mlle",
    "herr",
    "frau",
    "sr",
    "sra",
    "srta",
    "rev",
    "fr",
)
SUFFIXES = ("jr", "sr", "ii", "iii", "iv", "phd", "md", "esq")
_HONORIFIC_RE = r"^(?i)((" + "|".join(HONORIFICS) + r")\.?\s+)+"
_SUFFIX_RE = r"(?i)(,?\s+(" + "|".join(SUFFIXES) + r")\.?)+$"


def _capitalize_after(text: Column, sep: str) -> Column:
    """Upper-case the first letter of every part after ``sep`` ("smith-jones" -> "smith-Jones")."""
    parts = F.split(text, re.escape(sep))
    return F.array_join(
        F.transform(
            parts,
            lambda p, i: F.when(i == 0, p).otherwise(
                F.concat(F.upper(F.substring(p, 1, 1)), F.substring(p, 2, 10_000))
            ),
        ),
        sep,
    )


def _title_case(text: Column) -> Column:
    """Title case that also capitalizes after hyphens and apostrophes ("o'brien" ->
    "O'Brien", "smith-jones" -> "Smith-Jones") and after a leading "Mc" ("mcdonald" ->
    "McDonald"). Particles such as "van" or "de" are capitalized too (a known simplification)."""
    words = F.split(F.initcap(F.lower(text)), " ")
    fixed = F.transform(
        words,
        lambda w: _capitalize_after(
            _capitalize_after(
                F.when(
                    w.rlike(r"^Mc[a-z]"),
                    F.concat(F.lit("Mc"), F.upper(F.substring(w, 3, 1)), F.substring(w, 4, 10_000)),
                ).otherwise(w),
                "-",
            ),
            "'",
        ),
    )
    return F.array_join(fixed, " ")


def clean_name(c: Column, *, strip_honorifics: bool = True) -> Column:
    text = clean_text(c)
    if strip_honorifics:
        text = F.trim(F.regexp_replace(F.regexp_replace(text, _HONORIFIC_RE, ""), _SUFFIX_RE, ""))
    return _title_case(text)


def standardize_name(
    col: str, *, out: str | None = None, strip_honorifics: bool = True
) -> Transform:
    """Trim, NFKC-normalize, collapse blanks, strip honorifics and suffixes, title-case."""
    target = out or col

    def transform(df: DataFrame) -> DataFrame:
        require_columns(df, col)
        text = clean_text(F.col(col))
        value = clean_name(F.col(col), strip_honorifics=strip_honorifics)
        value = F.when(value.rlike(r"\p{L}"), value)
        return emit(df, src=col, out=target, value=value, empty=is_empty(text))

    return transform


def split_full_name(
    col: str = "full_name", *, first: str = "first_name", last: str = "last_name"
) -> Transform:
    """Split one name field into first and last ("Smith, John" and "John Smith" forms).

    The input column is left as it is; ``first`` and ``last`` are raw text for
    :func:`standardize_name` to clean.
    """

    def transform(df: DataFrame) -> DataFrame:
        require_columns(df, col)
        text = clean_text(F.col(col))
        text = F.trim(F.regexp_replace(F.regexp_replace(text, _HONORIFIC_RE, ""), _SUFFIX_RE, ""))
        comma = F.instr(text, ",") > 0
        first_part = F.when(comma, F.trim(F.substring_index(text, ",", -1))).otherwise(
            F.regexp_extract(text, r"^(.*)\s+\S+$", 1)
        )
        last_part = F.when(comma, F.trim(F.substring_index(text, ",", 1))).otherwise(
            F.regexp_extract(text, r"(\S+)$", 1)
        )
        single = ~comma & ~text.rlike(r"\s")
        return df.withColumns(
            {
                first: F.when(single, text).otherwise(F.when(first_part != "", first_part)),
                last: F.when(single, F.lit(None).cast("string")).otherwise(
                    F.when(last_part != "", last_part)
                ),
            }
        )

    return transform


def name_match_key(col: str) -> Column:
    """Lower-case, accent-free, letters-only key for matching names across spellings."""
    return fold_key(F.col(col))


# --------------------------------------------------------------------------------------------
# Dates and times
# --------------------------------------------------------------------------------------------


def _first_parse(
    text: Column, formats: list[str], parse: Callable[[Column, Column], Column]
) -> Column:
    return F.coalesce(*[parse(text, F.lit(fmt)) for fmt in formats]) if formats else F.lit(None)


def _has_zone(pattern: str) -> bool:
    """Whether a Spark datetime pattern carries an offset or zone (outside quoted text)."""
    unquoted = re.sub(r"'[^']*'", "", pattern)
    return bool(re.search(r"[XxZzOV]", unquoted))


def parse_timestamp(
    col: str, *, formats: list[str], source_tz: str = "UTC", out: str | None = None
) -> Transform:
    """Text to a UTC timestamp, trying each declared pattern in order (the first that parses
    wins, so an ambiguous "01/02/2024" means what the first matching pattern says). Patterns
    without a zone are read in ``source_tz``. Timestamps already typed pass through."""
    target = out or col

    def transform(df: DataFrame) -> DataFrame:
        require_columns(df, col)
        text = clean_text(F.col(col).cast("string"))
        attempts = []
        for fmt in formats:
            parsed = F.try_to_timestamp(text, F.lit(fmt))
            # Zone-less patterns read a wall clock, taken as UTC by Spark: move it from the
            # source's zone. Patterns with an offset or zone are exact already.
            if source_tz.upper() != "UTC" and not _has_zone(fmt):
                parsed = F.to_utc_timestamp(parsed, source_tz)
            attempts.append(parsed)
        parsed = F.coalesce(*attempts) if attempts else F.lit(None).cast("timestamp")
        return emit(df, src=col, out=target, value=parsed, empty=is_empty(text))

    return transform


def parse_date(
    col: str,
    *,
    formats: list[str],
    out: str | None = None,
    min_year: int = 1900,
    allow_future: bool = False,
) -> Transform:
    """Text to a date by the declared patterns in order; implausible dates (before
    ``min_year``, or in the future unless allowed) are invalid."""
    target = out or col

    def transform(df: DataFrame) -> DataFrame:
        require_columns(df, col)
        text = clean_text(F.col(col).cast("string"))
        parsed = _first_parse(text, formats, lambda t, f: F.to_date(F.try_to_timestamp(t, f)))
        plausible = F.year(parsed) >= min_year
        if not allow_future:
            plausible = plausible & (parsed <= F.current_date())
        return emit(df, src=col, out=target, value=F.when(plausible, parsed), empty=is_empty(text))

    return transform


# --------------------------------------------------------------------------------------------
# Countries and postcodes
# --------------------------------------------------------------------------------------------

# alpha-2: (alpha-3, English name, other names and variants)
_COUNTRIES: dict[str, tuple[str, ...]] = {
    "GB": (
        "GBR",
        "United Kingdom",
        "UK",
        "U.K.",
        "Great Britain",
        "Britain",
        "England",
        "Scotland",
        "Wales",
        "Northern Ireland",
    ),
    "US": ("USA", "United States", "United States of America", "U.S.A.", "U.S.", "America"),
    "DE": ("DEU", "Germany", "Deutschland", "Allemagne"),
    "FR": ("FRA", "France", "Frankreich"),
    "NL": ("NLD", "Netherlands", "The Netherlands", "Holland", "Nederland"),
    "BE": ("BEL", "Belgium", "Belgique", "België"),
    "LU": ("LUX", "Luxembourg"),
    "IE": ("IRL", "Ireland", "Eire", "Éire"),
    "ES": ("ESP", "Spain", "España", "Espana"),
    "PT": ("PRT", "Portugal"),
    "IT": ("ITA", "Italy", "Italia"),
    "CH": ("CHE", "Switzerland", "Schweiz", "Suisse", "Svizzera"),
    "AT": ("AUT", "Austria", "Österreich", "Osterreich"),
    "DK": ("DNK", "Denmark", "Danmark"),
    "SE": ("SWE", "Sweden", "Sverige"),
    "NO": ("NOR", "Norway", "Norge"),
    "FI": ("FIN", "Finland", "Suomi"),
    "IS": ("ISL", "Iceland"),
    "PL": ("POL", "Poland", "Polska"),
    "CZ": ("CZE", "Czechia", "Czech Republic"),
    "SK": ("SVK", "Slovakia"),
    "HU": ("HUN", "Hungary"),
    "RO": ("ROU", "Romania"),
    "BG": ("BGR", "Bulgaria"),
    "GR": ("GRC", "Greece", "Hellas"),
    "HR": ("HRV", "Croatia"),
    "SI": ("SVN", "Slovenia"),
    "RS": ("SRB", "Serbia"),
    "UA": ("UKR", "Ukraine"),
    "RU": ("RUS", "Russia", "Russian Federation"),
    "TR": ("TUR", "Turkey", "Türkiye", "Turkiye"),
    "EE": ("EST", "Estonia"),
    "LV": ("LVA", "Latvia"),
    "LT": ("LTU", "Lithuania"),
    "MT": ("MLT", "Malta"),
    "CY": ("CYP", "Cyprus"),
    "CA": ("CAN", "Canada"),
    "MX": ("MEX", "Mexico", "México"),
    "BR": ("BRA", "Brazil", "Brasil"),
    "AR": ("ARG", "Argentina"),
    "CL": ("CHL", "Chile"),
    "CO": ("COL", "Colombia"),
    "PE": ("PER", "Peru"),
    "AU": ("AUS", "Australia"),
    "NZ": ("NZL", "New Zealand"),
    "JP": ("JPN", "Japan"),
    "CN": ("CHN", "China", "People's Republic of China"),
    "HK": ("HKG", "Hong Kong"),
    "TW": ("TWN", "Taiwan"),
    "KR": ("KOR", "South Korea", "Korea, Republic of", "Korea"),
    "IN": ("IND", "India"),
    "PK": ("PAK", "Pakistan"),
    "SG": ("SGP", "Singapore"),
    "MY": ("MYS", "Malaysia"),
    "TH": ("THA", "Thailand"),
    "VN": ("VNM", "Vietnam", "Viet Nam"),
    "ID": ("IDN", "Indonesia"),
    "PH": ("PHL", "Philippines"),
    "AE": ("ARE", "United Arab Emirates", "UAE", "U.A.E."),
    "SA": ("SAU", "Saudi Arabia"),
    "IL": ("ISR", "Israel"),
    "EG": ("EGY", "Egypt"),
    "ZA": ("ZAF", "South Africa"),
    "NG": ("NGA", "Nigeria"),
    "KE": ("KEN", "Kenya"),
    "MA": ("MAR", "Morocco"),
}


def _country_lookup() -> dict[str, str]:
    """Folded name or code -> alpha-2 (keys made by the Python twin of :func:`fold_key`)."""
    table: dict[str, str] = {}
    for alpha2, names in _COUNTRIES.items():
        for key in (alpha2, *names):
            table[fold_key_py(key)] = alpha2
    return table


def _country_key(c: Column) -> Column:
    return F.coalesce(fold_key(c), F.lit(""))


def standardize_country(col: str = "country", *, out: str | None = None) -> Transform:
    """Names, alpha-3 and alpha-2 codes and common variants to ISO-3166 alpha-2."""
    target = out or col
    table = map_literal(_country_lookup())

    def transform(df: DataFrame) -> DataFrame:
        require_columns(df, col)
        text = clean_text(F.col(col))
        value = lookup(table, _country_key(text))
        return emit(df, src=col, out=target, value=value, empty=is_empty(text))

    return transform


POSTCODE_PATTERNS: dict[str, str] = {
    "GB": r"^[A-Z]{1,2}[0-9][A-Z0-9]? [0-9][A-Z]{2}$",
    "US": r"^[0-9]{5}(-[0-9]{4})?$",
    "DE": r"^[0-9]{5}$",
    "FR": r"^[0-9]{5}$",
    "NL": r"^[0-9]{4} [A-Z]{2}$",
    "CA": r"^[A-Z][0-9][A-Z] [0-9][A-Z][0-9]$",
    "IE": r"^[A-Z][0-9][0-9W] [A-Z0-9]{4}$",
    "ES": r"^[0-9]{5}$",
    "IT": r"^[0-9]{5}$",
    "AU": r"^[0-9]{4}$",
    "BE": r"^[0-9]{4}$",
    "AT": r"^[0-9]{4}$",
    "CH": r"^[0-9]{4}$",
}
# Where a country writes a space in a fixed place, insert it into the compacted code.
_POSTCODE_SPACE_BEFORE_LAST: dict[str, int] = {"GB": 3, "CA": 3, "IE": 4}


def standardize_postcode(
    col: str = "postcode", *, country_col: str | None = "country", out: str | None = None
) -> Transform:
    """Upper-case, normalize spacing ("sw1a1aa" -> "SW1A 1AA", "1234ab" -> "1234 AB") and
    validate against the country's pattern; countries without a pattern pass when non-empty."""
    target = out or col

    def transform(df: DataFrame) -> DataFrame:
        require_columns(df, col, country_col)
        text = F.upper(clean_text(F.col(col).cast("string")))
        compact = F.regexp_replace(text, r"[\s\-]", "")
        country = F.upper(F.col(country_col)) if country_col else F.lit(None).cast("string")
        shaped = compact
        for code, tail in _POSTCODE_SPACE_BEFORE_LAST.items():
            shaped = F.when(
                (country == code) & (F.length(compact) > tail),
                F.concat(
                    compact.substr(F.lit(1), F.length(compact) - F.lit(tail)),
                    F.lit(" "),
                    F.substring(compact, -tail, tail),
                ),
            ).otherwise(shaped)
        shaped = F.when(
            (country == "NL") & compact.rlike(r"^[0-9]{4}[A-Z]{2}$"),
            F.concat(F.substring(compact, 1, 4), F.lit(" "), F.substring(compact, 5, 2)),
        ).otherwise(shaped)
        shaped = F.when(
            (country == "US") & compact.rlike(r"^[0-9]{9}$"),
            F.concat(F.substring(compact, 1, 5), F.lit("-"), F.substring(compact, 6, 4)),
        ).otherwise(shaped)
        valid = F.lit(True)
        for code, pattern in POSTCODE_PATTERNS.items():
            valid = F.when(country == code, shaped.rlike(pattern)).otherwise(valid)
        value = F.when(valid & shaped.rlike(r"[A-Z0-9]"), shaped)
        return emit(df, src=col, out=target, value=value, empty=is_empty(text))

    return transform


# --------------------------------------------------------------------------------------------
# Money
# --------------------------------------------------------------------------------------------

CURRENCIES = (
    "EUR",
    "USD",
    "GBP",
    "CHF",
    "JPY",
    "CNY",
    "HKD",
    "SGD",
    "AUD",
    "NZD",
    "CAD",
    "SEK",
    "NOK",
    "DKK",
    "ISK",
    "PLN",
    "CZK",
    "HUF",
    "RON",
    "BGN",
    "TRY",
    "RUB",
    "UAH",
    "ILS",
    "AED",
    "SAR",
    "INR",
    "PKR",
    "KRW",
    "TWD",
    "THB",
    "MYR",
    "IDR",
    "PHP",
    "VND",
    "ZAR",
    "NGN",
    "KES",
    "EGP",
    "MAD",
    "BRL",
    "MXN",
    "ARS",
    "CLP",
    "COP",
    "PEN",
)
_CURRENCY_SYMBOLS = {"€": "EUR", "$": "USD", "£": "GBP", "¥": "JPY", "US$": "USD", "CHF": "CHF"}


def standardize_amount(
    col: str, *, decimal_comma: bool = False, scale: int = 2, out: str | None = None
) -> Transform:
    """Text amounts to ``decimal(18, scale)``: currency symbols, spaces and thousands
    separators removed; ``decimal_comma`` reads "1.234,50" as 1234.50 (a lone comma is read as
    the decimal mark either way when it is followed by one or two digits: "12,50")."""
    target = out or col

    def transform(df: DataFrame) -> DataFrame:
        require_columns(df, col)
        text = clean_text(F.col(col).cast("string"))
        bare = F.regexp_replace(text, r"[^\d,.\-+()]", "")
        negative = bare.rlike(r"^\(.*\)$") | bare.startswith("-")
        bare = F.regexp_replace(bare, r"[()+\-]", "")
        last_comma = F.length(bare) - F.locate(",", F.reverse(bare))
        last_dot = F.length(bare) - F.locate(".", F.reverse(bare))
        has_comma, has_dot = F.instr(bare, ",") > 0, F.instr(bare, ".") > 0
        if decimal_comma:
            comma_is_decimal = F.lit(True)
        else:
            # Both marks: the last one is the decimal mark ("1.234,50", "1,234.50"). A lone
            # comma is decimal unless it groups thousands ("12,50" vs "1,234").
            comma_is_decimal = F.when(has_comma & has_dot, last_comma > last_dot).otherwise(
                has_comma & ~bare.rlike(r"^\d{1,3}(,\d{3})+$")
            )
        number = F.when(
            comma_is_decimal, F.regexp_replace(F.regexp_replace(bare, r"\.", ""), ",", ".")
        ).otherwise(F.regexp_replace(bare, ",", ""))
        parsed = number.try_cast(DecimalType(18, scale))
        parsed = F.when(number.rlike(r"^\d+(\.\d+)?$"), parsed)
        value = F.when(negative, -parsed).otherwise(parsed).cast(DecimalType(18, scale))
        return emit(df, src=col, out=target, value=value, empty=is_empty(text))

    return transform


def standardize_currency(col: str = "currency", *, out: str | None = None) -> Transform:
    """ISO-4217 codes (upper-cased; "€", "£", "$" mapped); unknown codes are invalid."""
    target = out or col
    symbols = map_literal(_CURRENCY_SYMBOLS)

    def transform(df: DataFrame) -> DataFrame:
        require_columns(df, col)
        text = F.upper(clean_text(F.col(col)))
        code = F.coalesce(lookup(symbols, text), text)
        value = F.when(code.isin(*CURRENCIES), code)
        # A bare symbol ("€") is a value, so emptiness is judged on the text, not on letters.
        empty = text.isNull() | (text == "") | F.lower(text).isin(*sorted(PLACEHOLDERS))
        return emit(df, src=col, out=target, value=value, empty=empty)

    return transform


# --------------------------------------------------------------------------------------------
# Gender
# --------------------------------------------------------------------------------------------

_GENDERS = {
    "m": "male",
    "male": "male",
    "man": "male",
    "mr": "male",
    "h": "male",
    "homme": "male",
    "mann": "male",
    "männlich": "male",
    "maennlich": "male",
    "f": "female",
    "female": "female",
    "woman": "female",
    "w": "female",
    "weiblich": "female",
    "femme": "female",
    "v": "female",
    "vrouw": "female",
    "mrs": "female",
    "ms": "female",
    "x": "other",
    "other": "other",
    "nonbinary": "other",
    "non-binary": "other",
    "nb": "other",
    "diverse": "other",
    "divers": "other",
    "d": "other",
    "u": "unknown",
    "unknown": "unknown",
    "prefer not to say": "unknown",
    "undisclosed": "unknown",
}


def standardize_gender(col: str = "gender", *, out: str | None = None) -> Transform:
    """Variants to one of "male", "female", "other", "unknown"."""
    target = out or col
    table = map_literal(_GENDERS)

    def transform(df: DataFrame) -> DataFrame:
        require_columns(df, col)
        text = F.lower(clean_text(F.col(col)))
        value = lookup(table, text)
        empty = (
            text.isNull()
            | (text == "")
            | (text.isin(*sorted(PLACEHOLDERS)) & ~text.isin("unknown"))
        )
        return emit(df, src=col, out=target, value=value, empty=empty)

    return transform


__all__ = [
    "name_match_key",
    "parse_date",
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
]
