"""The rows an export delivers: identifiers normalized and, by default, hashed in Spark.

Ad platforms match customers on SHA-256 digests of normalized identifiers: the e-mail address
trimmed and lower-cased, the phone number in E.164 (``+`` and digits, country code first). The
profile's values are already standardized by silver; normalizing again here makes the export
correct on its own terms, whatever wrote the profile.
"""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

# E.164: "+", a non-zero country-code digit, at most 15 digits in all.
_E164 = r"^\+[1-9][0-9]{6,14}$"


def normalize_email(c: Column) -> Column:
    """Trimmed, lower-cased address; null when empty or without a single '@'."""
    value = F.lower(F.trim(c))
    return F.when(value.rlike(r"^[^@\s]+@[^@\s]+$"), value)


def normalize_phone(c: Column) -> Column:
    """E.164 text (``+447700900123``) with spaces, dashes and brackets removed; null unless
    the result is a plausible E.164 number. National numbers cannot be placed without a
    region, so they are dropped rather than guessed (silver already converted them)."""
    value = F.regexp_replace(F.trim(c), r"[\s().\-/]", "")
    value = F.regexp_replace(value, r"^00", "+")
    return F.when(value.rlike(_E164), value)


def sha256_hex(c: Column) -> Column:
    """Lower-case hex SHA-256 of the UTF-8 text; null stays null."""
    return F.sha2(c, 256)


def export_rows(
    *, hash_identifiers: bool = True, include_customer_id: bool = True
) -> Callable[[DataFrame], DataFrame]:
    """Members with ``email`` and ``phone`` -> the delivered columns.

    Hashed: ``email_sha256``, ``phone_sha256``; otherwise the normalized ``email``, ``phone``.
    ``customer_id`` first when included. A projection only: row order is kept, so a caller
    that sorted by customer id gets sorted files.
    """

    def transform(df: DataFrame) -> DataFrame:
        email = normalize_email(F.col("email"))
        phone = normalize_phone(F.col("phone"))
        cols: list[Column] = [F.col("customer_id")] if include_customer_id else []
        if hash_identifiers:
            cols += [
                sha256_hex(email).alias("email_sha256"),
                sha256_hex(phone).alias("phone_sha256"),
            ]
        else:
            cols += [email.alias("email"), phone.alias("phone")]
        return df.select(*cols)

    return transform
