"""Lineage columns of bronze rows: where each record came from and what it was.

Declared once here: the stage adds them, and silver (:mod:`cdp.silver.canonical`) leaves them
out of a source's free ``attributes``. Only pyspark and :mod:`cdp.expressions` (a leaf) are
imported, so any layer may use this.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import MapType, StructType

from cdp.expressions import quote_identifier

CORRUPT = "_corrupt_record"
RESCUED = "_rescued_data"
LINEAGE_COLUMNS = (
    "_source",
    "_file_path",
    "_file_size",
    "_file_modified_at",
    "_file_offset",
    "_row_number",
    "_ingest_run_id",
    "_ingested_at",
    "_record_hash",
    RESCUED,
)
_ROW_INDEX_MASK = (1 << 33) - 1  # monotonically_increasing_id: partition id << 33 | row index


def with_file_columns(df: DataFrame) -> DataFrame:
    """Source columns plus the file's lineage from the scan's ``_metadata`` (batch or stream)."""
    cols = [F.col(quote_identifier(c)) for c in df.columns]
    if CORRUPT not in df.columns:
        cols.append(F.lit(None).cast("string").alias(CORRUPT))
    return df.select(
        *cols,
        F.col("_metadata.file_path").alias("_file_path"),
        F.col("_metadata.file_size").alias("_file_size"),
        F.col("_metadata.file_modification_time").alias("_file_modified_at"),
        F.col("_metadata.file_block_start").alias("_file_offset"),
    )


def with_row_number(df: DataFrame) -> DataFrame:
    """1-based row within its file split; (``_file_offset``, ``_row_number``) is the position.

    Relies on one file split per scan partition (see
    :func:`cdp.bronze.readers.one_file_per_partition`): the low 33 bits of
    ``monotonically_increasing_id`` are the row's index inside its partition.
    """
    return df.withColumn(
        "_row_number", F.monotonically_increasing_id().bitwiseAND(F.lit(_ROW_INDEX_MASK)) + 1
    )


def with_lineage(df: DataFrame) -> DataFrame:
    """File columns and row number: every batch read needs both, in this order."""
    return with_row_number(with_file_columns(df))


def record_hash(schema: StructType, columns: Iterable[str]) -> Any:
    """A 128-bit hash of the record's source columns (names sorted), as 32 hex characters.

    Two xxhash64 values with different seeds, computed on the typed values directly: several
    times cheaper than SHA-256 over the record's JSON, and plenty to tell records apart within
    one source key. Each value is preceded by its null flag, because Spark's hash skips nulls
    and ("x", null) would otherwise hash like (null, "x"). Maps, which Spark cannot hash, are
    hashed as their JSON.
    """
    types = {f.name: f.dataType for f in schema.fields}
    parts: list[Any] = []
    for name in sorted(columns):
        col = F.col(quote_identifier(name))
        value = F.to_json(col) if isinstance(types.get(name), MapType) else col
        parts += [col.isNull(), value]
    if not parts:
        parts = [F.lit("")]

    def half(seed: str) -> Any:
        return F.lpad(F.hex(F.xxhash64(F.lit(seed), *parts)), 16, "0")

    return F.concat(half("cdp-record-a"), half("cdp-record-b"))
