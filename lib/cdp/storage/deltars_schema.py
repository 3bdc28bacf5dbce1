"""Schema mapping, file statistics and partition values for the embedded (delta-rs) backend.

Pure functions, no I/O and no table state: how a Spark schema becomes a Delta schema (and
back), which Parquet footer statistics may go into a Delta ``add`` action, and how partition
values are read from Hive-style paths and written as the Delta log's text. The snapshot,
commit and operation modules of the backend all build on these.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any
from urllib.parse import unquote

import pyarrow.parquet as pq
from deltalake import Schema as DeltaSchema
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ByteType,
    DataType,
    DateType,
    IntegerType,
    LongType,
    ShortType,
    StringType,
    StructType,
)

from cdp.storage.base import StorageError

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
_STAT_TYPES = (ByteType, ShortType, IntegerType, LongType, StringType, DateType)
_MAX_STAT_STRING = 32


def conform(frame: DataFrame, schema: StructType) -> DataFrame:
    """``frame`` with exactly ``schema``'s columns, in order (missing ones null)."""
    have = set(frame.columns)
    return frame.select(
        *[
            F.col(f.name).cast(f.dataType)
            if f.name in have
            else F.lit(None).cast(f.dataType).alias(f.name)
            for f in schema.fields
        ]
    )


def _nullable_json(node: Any) -> Any:
    """Delta schema JSON with every field nullable (Parquet read back by Spark is nullable)."""
    if isinstance(node, dict):
        out = {k: _nullable_json(v) for k, v in node.items()}
        if "nullable" in out:
            out["nullable"] = True
        if "containsNull" in out:
            out["containsNull"] = True
        if "valueContainsNull" in out:
            out["valueContainsNull"] = True
        return out
    if isinstance(node, list):
        return [_nullable_json(v) for v in node]
    return node


def to_delta_schema(schema: StructType) -> DeltaSchema:
    """Spark and Delta share one schema JSON format; only nullability is relaxed."""
    return DeltaSchema.from_json(json.dumps(_nullable_json(schema.jsonValue())))


def to_spark_schema(schema: DeltaSchema) -> StructType:
    """The Spark schema of a Delta schema (the two share one JSON format)."""
    return StructType.fromJson(json.loads(schema.to_json()))


def types_equal(a: DataType, b: DataType) -> bool:
    """Same type once nullability is ignored (the table's columns are all nullable)."""
    return json.dumps(_nullable_json(a.jsonValue()), sort_keys=True) == json.dumps(
        _nullable_json(b.jsonValue()), sort_keys=True
    )


def _stat_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return None
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if isinstance(value, str) and len(value) > _MAX_STAT_STRING:
        return None
    return value


def file_stats(
    meta: pq.FileMetaData, schema: StructType, partition_by: Sequence[str]
) -> dict[str, Any]:
    """Delta ``stats`` for one file from its Parquet footer.

    Only statistics that are exact for Delta's comparison rules are written (integers, dates,
    short strings); a reader that lacks a statistic simply reads the file.
    """
    eligible = {
        f.name
        for f in schema.fields
        if isinstance(f.dataType, _STAT_TYPES) and f.name not in partition_by
    }
    stats: dict[str, Any] = {"numRecords": meta.num_rows}
    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    for i in range(meta.num_columns):
        name = meta.schema.column(i).path
        if name not in eligible:
            continue
        lo: Any = None
        hi: Any = None
        null_count: int | None = 0
        exact = True
        for rg in range(meta.num_row_groups):
            st = meta.row_group(rg).column(i).statistics
            if st is None:
                exact = False
                null_count = None
                break
            if st.has_null_count and null_count is not None:
                null_count += st.null_count
            else:
                null_count = None
            if st.has_min_max:
                rg_lo, rg_hi = _stat_value(st.min), _stat_value(st.max)
                if rg_lo is None or rg_hi is None:
                    exact = False
                    continue
                lo = rg_lo if lo is None else min(lo, rg_lo)
                hi = rg_hi if hi is None else max(hi, rg_hi)
        if null_count is not None:
            nulls[name] = null_count
        if exact and lo is not None and hi is not None:
            mins[name] = lo
            maxs[name] = hi
    if mins:
        stats["minValues"] = mins
        stats["maxValues"] = maxs
    if nulls:
        stats["nullCount"] = nulls
    return stats


def partition_values(rel_path: str, partition_by: Sequence[str]) -> dict[str, str | None]:
    """The partition values of a file from its Hive-style relative path (``k=v/.../f``)."""
    values: dict[str, str | None] = {}
    segments = rel_path.split("/")[:-1]
    for segment in segments:
        if "=" not in segment:
            continue
        key, raw = segment.split("=", 1)
        key = unquote(key)
        if key in partition_by:
            text = unquote(raw)
            values[key] = None if text == HIVE_NULL else text
    missing = [c for c in partition_by if c not in values]
    if missing:
        raise StorageError(f"file {rel_path} has no partition value for {missing}")
    return values


def partition_text(value: Any) -> str | None:
    """A partition value as the Delta log writes it: delta-rs hands back typed values (dates,
    numbers), while new add actions carry the text of the partition directory."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)
