"""Rejected-link values are keyed hashes, not plain SHA-256 (issue 23, item 6)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

from pyspark.sql import SparkSession

from cdp.identity.rejected import REJECTED_KEY_PURPOSE, rejected_rows
from cdp.privacy.keys import derive_key, pseudonym


def test_value_hash_is_an_hmac_under_the_rejected_links_key(spark: SparkSession) -> None:
    rejected = spark.createDataFrame(
        [("email_exact", "email", "shared@x.com", "shared:records", 3)],
        "rule STRING, id_type STRING, unit_value STRING, reason STRING, links INT",
    )
    key = derive_key(b"k" * 32, REJECTED_KEY_PURPOSE)
    at = datetime(2026, 12, 4, tzinfo=timezone.utc)
    (row,) = rejected_rows(rejected, run_id="r1", at=at, key=key).collect()
    assert row.value_hash == pseudonym(key, "shared@x.com")
    assert row.value_hash != hashlib.sha256(b"shared@x.com").hexdigest()
    assert "unit_value" not in row.asDict() and row.links == 3 and row.run_id == "r1"
    other = derive_key(b"k" * 32, "export:crm")
    (row2,) = rejected_rows(rejected, run_id="r1", at=at, key=other).collect()
    assert row2.value_hash != row.value_hash  # another purpose's key does not join
