"""The checks every backend runs on a merge's source before it touches the table.

Both backends promise the same contract (:meth:`cdp.storage.base.TableStore.merge`): at
least one key, every key a source column, and at most one source row per key unless the caller
vouches for it. Delta Lake's own MERGE fails on duplicate keys only when they hit an existing
target row (and inserts both otherwise), so the check cannot be left to the engine: it lives
here, once, so the backends cannot drift apart again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from pyspark import StorageLevel
from pyspark.sql import DataFrame

from cdp.storage.base import MergeError


def check_merge_keys(name: str, columns: Sequence[str], keys: Sequence[str]) -> None:
    """MergeError unless ``keys`` is non-empty and every key is one of ``columns``."""
    if not keys:
        raise MergeError("merge needs at least one key column")
    missing = [k for k in keys if k not in columns]
    if missing:
        raise MergeError(f"merge into '{name}': source lacks key columns {missing}")


def check_unique_keys(name: str, source: DataFrame, keys: Sequence[str]) -> None:
    """MergeError naming one example key that several source rows share (a Spark job)."""
    dup = source.groupBy(*keys).count().where("count > 1").limit(1).collect()
    if dup:
        example = {k: dup[0][k] for k in keys}
        raise MergeError(
            f"merge into '{name}': several source rows have the same key {example}; "
            "de-duplicate the source first"
        )


@contextmanager
def checked_merge_source(
    name: str, source: DataFrame, keys: Sequence[str], *, source_keys_unique: bool
) -> Iterator[DataFrame]:
    """The merge's source, checked and persisted for the duration of the merge.

    Persisted because the duplicate check and the merge both compute it: a source built from
    a window or a join would otherwise run twice (and could differ between the two runs).
    ``source_keys_unique=True`` skips the duplicate check (the caller guarantees one row per
    key), which saves a shuffle of the whole source.
    """
    check_merge_keys(name, source.columns, keys)
    src = source.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        if not source_keys_unique:
            check_unique_keys(name, src, keys)
        yield src
    finally:
        src.unpersist()
