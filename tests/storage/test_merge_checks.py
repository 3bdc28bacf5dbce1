"""The merge preamble shared by both backends (``cdp.storage.merge_checks``).

The delta-spark backend cannot run a merge here (Delta's JVM jar is absent), but its checks
run before any Delta call, so its ``merge`` is exercised up to the point where the preamble
must already have refused a bad source.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql.types import LongType, StringType, StructField, StructType

from cdp.storage import MergeError, TableStore
from cdp.storage.merge_checks import check_merge_keys, check_unique_keys, checked_merge_source

SCHEMA = StructType([StructField("id", LongType()), StructField("name", StringType())])


def test_keys_must_be_given_and_present() -> None:
    with pytest.raises(MergeError, match="at least one key"):
        check_merge_keys("t", ["id", "name"], [])
    with pytest.raises(MergeError, match=r"'t': source lacks key columns \['email'\]"):
        check_merge_keys("t", ["id", "name"], ["id", "email"])
    check_merge_keys("t", ["id", "name"], ["id"])


def test_duplicate_keys_name_an_example(spark: SparkSession) -> None:
    dup = spark.createDataFrame([(1, "a"), (1, "b"), (2, "c")], SCHEMA)
    with pytest.raises(MergeError, match=r"same key \{'id': 1\}"):
        check_unique_keys("t", dup, ["id"])
    check_unique_keys("t", dup, ["id", "name"])


def test_checked_source_is_persisted_then_released(spark: SparkSession) -> None:
    source = spark.createDataFrame([(1, "a"), (2, "b")], SCHEMA)
    with checked_merge_source("t", source, ["id"], source_keys_unique=False) as src:
        assert src.is_cached
    assert not source.is_cached
    # The caller's guarantee of unique keys skips the (shuffling) duplicate check.
    dup = spark.createDataFrame([(1, "a"), (1, "b")], SCHEMA)
    with checked_merge_source("t", dup, ["id"], source_keys_unique=True) as src:
        assert src.count() == 2
    with (
        pytest.raises(MergeError, match="same key"),
        checked_merge_source("t", dup, ["id"], source_keys_unique=False),
    ):
        pass
    assert not dup.is_cached


def _store(backend: str, spark: SparkSession, root: Path) -> TableStore:
    if backend == "delta-spark":
        pytest.importorskip("delta.tables", reason="the delta-spark Python package is absent")
        from cdp.storage.deltaspark import DeltaSparkStore

        return DeltaSparkStore(spark, str(root))
    from cdp.storage.deltars import DeltaRsStore

    return DeltaRsStore(spark, str(root))


@pytest.mark.parametrize("backend", ["delta-rs", "delta-spark"])
def test_both_backends_refuse_the_same_bad_sources(
    backend: str, spark: SparkSession, tmp_path: Path
) -> None:
    """Same errors, same messages, from both backends, before the table is touched."""
    store = _store(backend, spark, tmp_path / "tables")
    dup = spark.createDataFrame([(1, "a"), (1, "b")], SCHEMA)
    with pytest.raises(MergeError, match=r"merge into 'silver/x': several source rows"):
        store.merge("silver/x", dup, keys=["id"])
    with pytest.raises(MergeError, match=r"merge into 'silver/x': source lacks key columns"):
        store.merge("silver/x", dup, keys=["email"])
    with pytest.raises(MergeError, match="at least one key"):
        store.merge("silver/x", dup, keys=[])
    assert not (tmp_path / "tables" / "silver" / "x").exists()
