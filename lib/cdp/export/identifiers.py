"""The rows an export delivers: identifiers normalized and, by default, hashed in Spark.

Ad platforms match customers on SHA-256 digests of normalized identifiers: the e-mail address
trimmed and lower-cased, the phone number in E.164 (``+`` and digits, country code first). The
profile's values are already standardized by silver; normalizing again here makes the export
correct on its own terms, whatever wrote the profile. Plain SHA-256 is what those platforms
require, and it can be reversed by hashing a list of candidate addresses: the files stay
personal data.

The customer id is never exported as it is: when asked for, it is an HMAC-SHA256 under a key
derived per destination (:func:`destination_key`), so two destinations cannot join their
audiences on it, and nobody holding the internal ids (or the CRM ids they derive from) can
recompute it without the pseudonymisation key.
"""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdp.privacy.columns import hmac_sha256
from cdp.privacy.keys import derive_key

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


# The per-destination pseudonym of the customer id, added by :func:`with_export_id`.
EXPORT_ID = "_export_id"


def destination_key(key: bytes, destination: str) -> bytes:
    """The key of one destination's customer-id pseudonyms (``destination``: the target's
    root URI, so the same target keeps the same pseudonyms from run to run)."""
    return derive_key(key, "export:" + destination)


def with_export_id(key: bytes) -> Callable[[DataFrame], DataFrame]:
    """Add :data:`EXPORT_ID`: HMAC-SHA256 of ``customer_id`` under ``key`` (a
    :func:`destination_key`)."""

    def transform(df: DataFrame) -> DataFrame:
        return df.withColumn(EXPORT_ID, hmac_sha256(F.col("customer_id"), key))

    return transform


def export_rows(
    *, hash_identifiers: bool = True, include_customer_id: bool = False
) -> Callable[[DataFrame], DataFrame]:
    """Members with ``email`` and ``phone`` -> the delivered columns.

    Hashed: ``email_sha256``, ``phone_sha256``; otherwise the normalized ``email``, ``phone``.
    With ``include_customer_id``, ``customer_id`` first: the :data:`EXPORT_ID` pseudonym (the
    frame must carry it, see :func:`with_export_id`), never the internal id. A projection
    only: row order is kept, so a caller that sorted the rows gets sorted files.
    """

    def transform(df: DataFrame) -> DataFrame:
        email = normalize_email(F.col("email"))
        phone = normalize_phone(F.col("phone"))
        cols: list[Column] = []
        if include_customer_id:
            if EXPORT_ID not in df.columns:
                raise ValueError(
                    "customer ids are exported only as per-destination pseudonyms: "
                    "apply with_export_id first"
                )
            cols.append(F.col(EXPORT_ID).alias("customer_id"))
        if hash_identifiers:
            cols += [
                sha256_hex(email).alias("email_sha256"),
                sha256_hex(phone).alias("phone_sha256"),
            ]
        else:
            cols += [email.alias("email"), phone.alias("phone")]
        return df.select(*cols)

    return transform
