"""Phone numbers to E.164 with ``phonenumbers`` (see :mod:`cdp.silver.standardize`).

The parse runs in a vectorized pandas UDF (Arrow batches, one Python call per batch rather
than per row) with a per-task cache, because phone columns repeat a lot (households, shared
switchboards, test data) and a parse costs tens of microseconds.
"""

from collections.abc import Iterator

import pandas as pd
import phonenumbers
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf

from cdp.silver.std_common import Transform, clean_text, emit, is_empty, require_columns, temp
from cdp.silver.std_location import country_code

# Entries kept per Python worker task before the cache is dropped (bounded memory).
_CACHE_LIMIT = 200_000


def phone_to_e164(value: str | None, region: str | None) -> str | None:
    """E.164 form of ``value`` ("+442079460958"), or None when empty, unparsable or invalid.

    ``region`` (ISO alpha-2) is how a national number ("020 7946 0958") is read; numbers
    written with "+" or an international prefix ("0044 ...") ignore it. Validity is
    ``phonenumbers.is_valid_number``: the number must fall in an allocated range for its
    country, not merely have plausible length. Extensions ("x123", "ext. 123") are parsed
    and dropped: E.164 has no extension, and the raw value keeps it.
    """
    if not isinstance(value, str):  # None, or NaN from pandas
        return None
    text = value.strip()
    if not text:
        return None
    region_code = region.strip().upper() if isinstance(region, str) and region.strip() else None
    try:
        parsed = phonenumbers.parse(text, region_code)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def e164_series(values: pd.Series, regions: pd.Series, cache: dict | None = None) -> pd.Series:
    """:func:`phone_to_e164` over two aligned Series, parsing each (value, region) pair once."""
    memo: dict = {} if cache is None else cache
    out = []
    for value, region in zip(values.tolist(), regions.tolist(), strict=True):
        key = (value, region)
        if key in memo:
            out.append(memo[key])
        else:
            result = memo[key] = phone_to_e164(value, region)
            out.append(result)
    return pd.Series(out, index=values.index, dtype=object)


def _phone_udf():  # type: ignore[no-untyped-def]
    # Built on first use, not at import: creating a pandas UDF checks for pyarrow, which
    # importing this module for its plain-Python helpers should not require.
    @pandas_udf("string")  # type: ignore[call-overload]
    def phone_e164(batches: Iterator[tuple[pd.Series, pd.Series]]) -> Iterator[pd.Series]:
        # Iterator form: the cache lives for the whole task (all batches of a partition).
        cache: dict = {}
        for values, regions in batches:
            if len(cache) > _CACHE_LIMIT:
                cache.clear()
            yield e164_series(values, regions, cache)

    return phone_e164


def standardize_phone(
    col: str = "phone",
    *,
    default_region: str | None = "GB",
    region_col: str | None = None,
    out: str | None = None,
) -> Transform:
    """Phone numbers to E.164 ("020 7946 0958" -> "+442079460958").

    National numbers are read in the row's region: ``region_col`` (a country column, raw or
    standardized; it goes through :func:`country_code`) when it names a known country, else
    ``default_region``. With neither, only numbers in international form can be valid.

    Status rules:

    * empty: null, blank, a placeholder word ("n/a", "none"...), no letter or digit at all,
      or a number made of one repeated digit ("0000000000", "999 9999"): form fillers that
      carry no number, like "n/a".
    * invalid: anything else that does not parse to a valid number for its region, including
      short or made-up digit strings ("123456") and numbers valid only elsewhere.
    """
    target = out or col

    def transform(df: DataFrame) -> DataFrame:
        require_columns(df, col, region_col)
        staged = df.withColumn(temp(target, "clean"), clean_text(col))
        cleaned = F.col(temp(target, "clean"))
        digits = F.regexp_replace(cleaned, r"[^0-9]", "")
        empty = is_empty(cleaned) | (digits.rlike(r"^([0-9])\1*$") & ~cleaned.rlike(r"\p{L}"))
        default = F.lit(default_region).cast("string")
        region: Column = F.coalesce(country_code(region_col), default) if region_col else default
        # Empty rows send null to the UDF: no parse, and they do not fill the cache.
        value = _phone_udf()(F.when(~empty, cleaned), region)
        return emit(staged, src=col, out=target, value=value, empty=empty)

    return transform
