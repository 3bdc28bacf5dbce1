"""Timestamp and date parsing (see :mod:`cdp.silver.standardize` for the conventions).

Formats are Spark datetime patterns, tried in the declared order; the first that parses
wins. Order is the only disambiguation: with ``["dd/MM/yyyy", "MM/dd/yyyy"]`` the value
"01/02/2024" is 1 February 2024, and "01/13/2024" (no month 13) falls through to the US
pattern. Spark's parser is strict about widths: "dd" needs two digits, "d" takes one or two,
so declare "d/M/yyyy" for sources that write "1/2/2024".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Literal

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdp.silver.std_common import Transform, clean_text, emit, is_empty, require_columns, temp

# Pattern letters that carry a zone or offset; such patterns give an instant on their own.
_ZONE_LETTERS = frozenset("VzOXxZ")
_ZONE_SEPARATOR = "\u0001"  # cannot occur in cleaned text (control characters are removed)

DEFAULT_MIN_TIMESTAMP = dt.datetime(1900, 1, 1, tzinfo=dt.timezone.utc)
DEFAULT_MIN_DATE = dt.date(1900, 1, 1)


def _has_zone(pattern: str) -> bool:
    """True when a pattern letter outside quoted literals is a zone/offset letter."""
    quoted = False
    for ch in pattern:
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch in _ZONE_LETTERS:
            return True
    return False


# Formats that are no pattern: whole seconds or milliseconds since 1970-01-01 UTC, as event
# logs and web analytics write them ("1741100000000"); an instant of its own, no zone applied.
EPOCH_FORMATS = {"epoch_seconds": 1, "epoch_millis": 1000}


def _epoch(cleaned: Column, unit: int) -> Column:
    digits = cleaned.rlike(r"^\d{1,16}$")
    return F.when(digits, F.timestamp_millis(cleaned.try_cast("long") * F.lit(1000 // unit)))


def _check_formats(formats: Sequence[str]) -> list[str]:
    if isinstance(formats, str) or not formats:
        raise ValueError("formats must be a non-empty list of Spark datetime patterns")
    return list(formats)


def _as_utc(value: dt.datetime) -> dt.datetime:
    # A naive bound is read as UTC, never as the driver's local zone.
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def parse_timestamp(
    col: str,
    *,
    formats: Sequence[str],
    source_tz: str = "UTC",
    out: str | None = None,
    min_value: dt.datetime | None = DEFAULT_MIN_TIMESTAMP,
    max_value: dt.datetime | None = None,
) -> Transform:
    """Parse text into a TimestampType instant, trying ``formats`` in order (Spark datetime
    patterns, or ``epoch_seconds`` / ``epoch_millis``: a count since 1970 in UTC).

    Wall-clock values are read in ``source_tz`` (an IANA zone such as "Europe/London", or an
    offset such as "+01:00"); patterns with their own zone/offset letters (X, Z, VV, ...) use
    the offset in the text. The result is an absolute instant, independent of the session
    time zone: the zone is appended to the text and parsed with a "VV" field rather than
    shifted with ``to_utc_timestamp``, which would depend on ``spark.sql.session.timeZone``.

    Unparsable values, and instants outside [``min_value``, ``max_value``] (naive bounds are
    UTC; default: not before 1900, no upper bound), are invalid; the raw text is kept.
    """
    patterns = _check_formats(formats)
    target = out or col

    def transform(df: DataFrame) -> DataFrame:
        require_columns(df, col)
        staged = df.withColumn(temp(target, "clean"), clean_text(col))
        cleaned = F.col(temp(target, "clean"))
        zoned = F.concat(cleaned, F.lit(_ZONE_SEPARATOR + source_tz))
        attempts = [
            _epoch(cleaned, EPOCH_FORMATS[p])
            if p in EPOCH_FORMATS
            else F.try_to_timestamp(cleaned, F.lit(p))
            if _has_zone(p)
            else F.try_to_timestamp(zoned, F.lit(f"{p}'{_ZONE_SEPARATOR}'VV"))
            for p in patterns
        ]
        value = F.coalesce(*attempts)
        if min_value is not None:
            value = F.when(value >= F.lit(_as_utc(min_value)), value)
        if max_value is not None:
            value = F.when(value <= F.lit(_as_utc(max_value)), value)
        return emit(staged, src=col, out=target, value=value, empty=is_empty(cleaned))

    return transform


def parse_date(
    col: str,
    *,
    formats: Sequence[str],
    out: str | None = None,
    min_date: dt.date | None = DEFAULT_MIN_DATE,
    max_date: dt.date | Literal["today"] | None = "today",
) -> Transform:
    """Parse text into a DateType, trying ``formats`` in order (see the module docstring).

    Defaults suit birth dates: before 1900-01-01 or after today is implausible, so invalid.
    ``max_date="today"`` uses ``current_date()`` (fixed for one query, in the session time
    zone); pass an explicit date for reproducible re-runs, or None for future dates
    (subscription end dates and the like).
    """
    patterns = _check_formats(formats)
    target = out or col

    def transform(df: DataFrame) -> DataFrame:
        require_columns(df, col)
        staged = df.withColumn(temp(target, "clean"), clean_text(col))
        cleaned = F.col(temp(target, "clean"))
        value = F.coalesce(*[F.try_to_date(cleaned, p) for p in patterns])
        if min_date is not None:
            value = F.when(value >= F.lit(min_date), value)
        if max_date is not None:
            upper: Column = F.current_date() if max_date == "today" else F.lit(max_date)
            value = F.when(value <= upper, value)
        return emit(staged, src=col, out=target, value=value, empty=is_empty(cleaned))

    return transform


def parse_year(
    col: str, *, out: str | None = None, min_year: int = DEFAULT_MIN_DATE.year
) -> Transform:
    """A year written alone (a birth year: "1979", or "1979.0" as a spreadsheet writes it) as
    four-digit text; before ``min_year`` or after the current year is implausible, so
    invalid, as is anything that is no year."""
    target = out or col

    def transform(df: DataFrame) -> DataFrame:
        require_columns(df, col)
        staged = df.withColumn(temp(target, "clean"), clean_text(col))
        cleaned = F.col(temp(target, "clean"))
        digits = F.regexp_extract(cleaned, r"^([0-9]{4})(?:\.0+)?$", 1)
        year = F.when(digits != "", digits.cast("int"))
        plausible = (year >= F.lit(min_year)) & (year <= F.year(F.current_date()))
        value = F.when(plausible, digits)
        return emit(staged, src=col, out=target, value=value, empty=is_empty(cleaned))

    return transform
