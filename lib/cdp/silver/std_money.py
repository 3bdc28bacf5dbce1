"""Amount and currency standardizers (see :mod:`cdp.silver.standardize` for the conventions)."""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DecimalType

from cdp.silver.std_common import (
    ColumnOrName,
    Transform,
    case_when,
    clean_text,
    emit,
    is_empty,
    lookup,
    map_literal,
    require_columns,
    temp,
)
from cdp.silver.std_reference import CURRENCIES, CURRENCY_MARKERS

# Every accepted currency marker -> ISO code ("" for symbols that name no single currency).
_MARKERS: dict[str, str] = {**{code: code for code in CURRENCIES}, **CURRENCY_MARKERS}

# After removing blanks: optional "(", sign, marker, sign, number, marker, trailing "-", ")".
# "-$1,234.50", "$-12", "(12.50)", "12,50€", "EUR12.50", "12.50-" all fit.
_SEP = "\u0001"  # cannot occur in cleaned text: control characters are removed
_GROUPS = [f"${i}" for i in range(1, 9)]
_AMOUNT_RE = r"^(\()?([+-])?([^0-9.,'()+-]*)([+-])?([0-9.,']+)([^0-9.,'()+-]*)(-)?(\))?$"


def currency_code(c: ColumnOrName) -> Column:
    """ISO 4217 code for a code, symbol or alias ("usd", "€", "RMB"); null when unknown.

    Only codes in :data:`cdp.silver.std_reference.CURRENCIES` are returned; symbols shared by
    several currencies ("$", "¥", "kr") give null.
    """
    key = F.upper(F.regexp_replace(clean_text(c), r"\s+", ""))
    code = lookup(map_literal(_MARKERS), key)
    return F.when(code != "", code)


def standardize_currency(col: str = "currency", *, out: str | None = None) -> Transform:
    """Currency to its upper-case ISO 4217 code, validated against the embedded list.

    "usd" -> "USD", "€" -> "EUR", "£" -> "GBP"; "$" (which dollar?) and unknown codes such
    as "XYZ" are invalid.
    """
    target = out or col

    def transform(df: DataFrame) -> DataFrame:
        require_columns(df, col)
        staged = df.withColumn(temp(target, "clean"), clean_text(col))
        cleaned = F.col(temp(target, "clean"))
        # Symbols such as "€" hold no letter or digit, yet they are values, not placeholders.
        symbols = [m for m in _MARKERS if not any(ch.isalnum() for ch in m)]
        empty = is_empty(cleaned) & ~F.coalesce(cleaned.isin(*symbols), F.lit(False))
        return emit(staged, src=col, out=target, value=currency_code(cleaned), empty=empty)

    return transform


def _number_text(body: Column, decimal_comma: bool) -> Column:
    """Digits with "." as decimal point, or null when grouping and separators do not fit.

    Grouping must be regular (1-3 digits, then groups of 3). One separator followed by one or
    two digits and nothing else ("12,50" with decimal_comma off) cannot be a thousands
    separator, so it is read as the decimal separator whatever the setting.
    """
    if decimal_comma:
        grouped = r"^([0-9]{1,3}(\.[0-9]{3})+|[0-9]*)(,[0-9]*)?$"
        other = r"^[0-9]+\.[0-9]{1,2}$"
        normal = F.translate(F.regexp_replace(body, r"\.", ""), ",", ".")
    else:
        grouped = r"^([0-9]{1,3}([,'][0-9]{3})+|[0-9]*)(\.[0-9]*)?$"
        other = r"^[0-9]+,[0-9]{1,2}$"
        normal = F.regexp_replace(body, r"[,']", "")
    swapped = F.translate(body, ",.", ".,")
    has_digit = body.rlike(r"[0-9]")
    return case_when(
        [
            (~has_digit, F.lit(None).cast("string")),
            (body.rlike(grouped), normal),
            (body.rlike(other), swapped if not decimal_comma else body),
        ],
        otherwise=F.lit(None).cast("string"),
    )


def standardize_amount(
    col: str,
    *,
    decimal_comma: bool = False,
    scale: int = 2,
    currency_col: str | None = None,
    out: str | None = None,
) -> Transform:
    """Parse money text into ``DecimalType(18, scale)``, rounded half-up.

    Accepts "1,234.50", "1'234.50", "12", "  12 ", ".5", "$12.50", "12,50 €", "EUR 12.50",
    "-12.50", "12.50-", "(12.50)" (accounting negative). With ``decimal_comma`` the roles of
    "." and "," swap ("1.234,50"); blanks (also no-break/thin spaces) are ignored in either
    mode. A currency code or symbol may stand before or after the number; an unknown word
    ("12 apples") makes the value invalid, as do irregular grouping ("1,23,4") and overflow.

    ``currency_col``: the row's currency column. Then ``<out>_currency`` is also written: the
    ISO code from that column, else the one the amount text names ("£12" -> "GBP"); a text
    naming another currency than the column ("€12" with "USD") makes the amount invalid.
    """
    if not 0 <= scale <= 18:
        raise ValueError(f"scale must be between 0 and 18, got {scale}")
    target = out or col

    def transform(df: DataFrame) -> DataFrame:
        require_columns(df, col, currency_col)
        clean, compact, parts, mark = (
            temp(target, p) for p in ("clean", "compact", "parts", "mark")
        )
        cur = temp(target, "currency")
        first: dict[str, Column] = {clean: clean_text(col)}
        if currency_col is not None:
            first[cur] = currency_code(currency_col)
        # One projection per step, so each regex runs once per row (see emit()).
        staged = (
            df.withColumns(first)
            .withColumn(compact, F.upper(F.regexp_replace(F.col(clean), r"\s+", "")))
            .withColumn(
                parts,
                # All eight groups in one regex pass: rewrite to "g1 SEP g2 ... g8", split.
                F.when(
                    F.col(compact).rlike(_AMOUNT_RE),
                    F.split(
                        F.regexp_replace(F.col(compact), _AMOUNT_RE, _SEP.join(_GROUPS)), _SEP, -1
                    ),
                ),
            )
        )
        group = F.col(parts).getItem
        staged = staged.withColumn(
            mark, lookup(map_literal(_MARKERS), F.concat(group(2), group(5)))
        )
        paren_open, paren_close = group(0) != "", group(7) != ""
        signs = [group(1), group(3), group(6)]
        prefix, suffix = group(2), group(5)
        marker_code = F.col(mark)
        n_signs = F.lit(0)
        for sign in signs:
            n_signs = n_signs + F.when(sign != "", 1).otherwise(0)
        negative = paren_open | F.array_contains(F.array(*signs), "-")
        well_formed = (
            F.col(parts).isNotNull()
            & (paren_open == paren_close)
            & (n_signs <= 1)
            & ~(paren_open & (n_signs > 0))
            & ((prefix == "") | (suffix == ""))
            & (((prefix == "") & (suffix == "")) | marker_code.isNotNull())
        )
        number = _number_text(group(4), decimal_comma)
        signed = F.concat(F.when(negative, F.lit("-")).otherwise(F.lit("")), number)
        # Parse wide, round, then narrow: try_cast gives null (invalid) on overflow under ANSI.
        wide = signed.try_cast(DecimalType(38, 18))
        value = F.when(well_formed, F.round(wide, scale).try_cast(DecimalType(18, scale)))

        extra: dict[str, Callable[[Column], Column]] = {}
        if currency_col is not None:
            text_code = F.when(well_formed & (marker_code != ""), marker_code)
            column_code = F.col(cur)
            conflict = F.coalesce(text_code != column_code, F.lit(False))
            value = F.when(~conflict, value)
            resolved = F.coalesce(column_code, text_code)

            def currency_of(final: Column) -> Column:
                return F.when(final.isNotNull(), resolved)

            extra[f"{target}_currency"] = currency_of
        empty = is_empty(F.col(clean))
        return emit(staged, src=col, out=target, value=value, empty=empty, extra=extra)

    return transform
