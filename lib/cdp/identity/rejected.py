"""Rows of ``gold/identity_rejected_links``: which link merge protection rejected, and why.

The rejected identifier itself (a shared e-mail, a household phone) is personal data and
the table is read to tune rules, not to look people up; so it holds ``value_hash``, an
HMAC of the value under a key derived for this purpose only (:data:`REJECTED_KEY_PURPOSE`).
Unkeyed SHA-256 of an e-mail or phone is recomputed by anyone holding a list of them (or
by dictionary); a keyed hash compares equal across runs for the same key and nothing more.
"""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cdp.privacy.columns import hmac_sha256

# The purpose a rejected-link key is derived for (cdp.privacy.keys.derive_key), so its digests
# join neither export ids nor request subjects.
REJECTED_KEY_PURPOSE = "identity:rejected"


def rejected_rows(rejected: DataFrame, *, run_id: str, at: datetime, key: bytes) -> DataFrame:
    """``rejected`` (rule, id_type, unit_value, reason, links) as table rows, with the value
    replaced by its keyed hash under ``key``."""
    return rejected.select(
        F.lit(run_id).alias("run_id"),
        "rule",
        "id_type",
        hmac_sha256(F.col("unit_value"), key).alias("value_hash"),
        "reason",
        F.col("links").cast("long").alias("links"),
        F.lit(at).cast("timestamp").alias("at"),
    )
