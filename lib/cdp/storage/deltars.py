"""Embedded Delta backend: Spark writes the Parquet data files, delta-rs commits them.

Why this split: Spark's writers are distributed and fast, and delta-rs (the ``deltalake``
package) implements the Delta transaction log without a JVM jar, which cannot be downloaded
everywhere. Every write here follows one protocol:

1. Spark writes the new files into ``<table>/_staging/<txn>/`` (a hidden directory that no
   Delta reader looks at), partitioned Hive-style.
2. The files are moved into the table directory under the same relative paths; their Parquet
   footers give row counts and column statistics.
3. One delta-rs commit adds them (and removes replaced files) atomically, with the run id in
   the commit metadata. Until that commit succeeds no reader sees any of it: a crash leaves
   the table at its previous version, and :meth:`vacuum` deletes the orphaned files.

Commits never let delta-rs rebase silently: a commit that loses the race for its version
fails, and the store retries. Blind appends are re-committed as they are; operations that read
the table (overwrite, merge, delete) are recomputed from the new version, so a concurrent
change is never lost. After ``commit_retries`` attempts, :class:`ConcurrentWriteError`.

MERGE and DELETE run in Spark as copy-on-write: only files that hold affected rows are
rewritten. Reads go through the snapshot's file list into ``spark.read.parquet``, restoring
partition columns from the Hive-style paths with the table's own schema.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlparse

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from deltalake.transaction import (
    AddAction,
    CommitProperties,
    RemoveAction,
    create_table_with_add_actions,
)
from pyspark import StorageLevel
from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ByteType,
    DataType,
    DateType,
    IntegerType,
    LongType,
    ShortType,
    StringType,
    StructField,
    StructType,
)

from cdp import faults
from cdp.storage._merge import (
    ACTION,
    merge_metrics_columns,
    merge_output_schema,
    plan_merge,
)
from cdp.storage.base import (
    CommitResult,
    ConcurrentWriteError,
    HistoryEntry,
    MergeError,
    SchemaError,
    StorageError,
    TableInfo,
    TableNotFound,
    TableStore,
    UnsupportedTableError,
    _commit_metadata,
    cdp_commit_info,
    run_id_from_commit,
    widen_struct,
)

log = logging.getLogger(__name__)

FILE_COL = "_cdp_file"
STAGING_DIR = "_staging"
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
# Features whose semantics this backend does not implement: reading or writing such a table
# would silently give wrong answers, so it is refused.
UNSUPPORTED_READER_FEATURES = {
    "deletionVectors",
    "columnMapping",
    "variantType",
    "variantType-preview",
}
UNSUPPORTED_WRITER_FEATURES = UNSUPPORTED_READER_FEATURES | {
    "changeDataFeed",
    "generatedColumns",
    "identityColumns",
    "rowTracking",
    "checkConstraints",
    "invariants",
    "icebergCompatV1",
    "icebergCompatV2",
}
_STAT_TYPES = (ByteType, ShortType, IntegerType, LongType, StringType, DateType)
_MAX_STAT_STRING = 32

R = TypeVar("R")
_txn_counter = 0
_txn_lock = threading.Lock()


def _conform(frame: DataFrame, schema: StructType) -> DataFrame:
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


def _txn_id() -> str:
    """Unique name for a staging directory (a name, not a business identifier)."""
    global _txn_counter
    with _txn_lock:
        _txn_counter += 1
        n = _txn_counter
    return f"{time.time_ns()}-{os.getpid()}-{threading.get_ident()}-{n}"


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
    return StructType.fromJson(json.loads(schema.to_json()))


def _types_equal(a: DataType, b: DataType) -> bool:
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


def _partition_values(rel_path: str, partition_by: Sequence[str]) -> dict[str, str | None]:
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


class DeltaRsStore(TableStore):
    """Delta tables on a local (or mounted) filesystem, committed by delta-rs."""

    backend_name = "delta-rs"

    def __init__(
        self,
        spark: SparkSession,
        root: str,
        *,
        commit_retries: int = 5,
        target_file_size_mb: int = 128,
    ) -> None:
        if root.startswith("file://"):
            root = urlparse(root).path
        if "://" in root:
            raise StorageError(
                f"the delta-rs backend writes through the local filesystem; data root {root!r} "
                "is an object-store URI: use storage.backend=delta-spark there (Delta's JVM jar)"
            )
        super().__init__(spark, str(Path(root).resolve()), commit_retries=commit_retries)
        self.target_file_size_mb = target_file_size_mb

    # ------------------------------------------------------------------------------------
    # Snapshots
    # ------------------------------------------------------------------------------------
    def exists(self, name: str) -> bool:
        log_dir = Path(self.table_uri(name)) / "_delta_log"
        return log_dir.is_dir() and any(log_dir.glob("*.json"))

    def _load(
        self, name: str, *, version: int | None = None, timestamp: datetime | str | None = None
    ) -> DeltaTable:
        uri = self.table_uri(name)
        if not self.exists(name):
            raise TableNotFound(f"table '{name}' does not exist (no Delta log at {uri})")
        try:
            dt = DeltaTable(uri, version=version) if version is not None else DeltaTable(uri)
            if timestamp is not None:
                dt.load_as_version(timestamp)
        except TableNotFoundError as exc:
            raise TableNotFound(f"table '{name}' does not exist at {uri}: {exc}") from exc
        except DeltaError as exc:
            raise StorageError(f"table '{name}': cannot load version/timestamp: {exc}") from exc
        return dt

    def _check_features(self, dt: DeltaTable, name: str, *, for_write: bool) -> None:
        proto = dt.protocol()
        used = set(proto.reader_features or [])
        if for_write:
            used |= set(proto.writer_features or [])
        blocked = UNSUPPORTED_WRITER_FEATURES if for_write else UNSUPPORTED_READER_FEATURES
        bad = sorted(used & blocked)
        conf = dt.metadata().configuration or {}
        mapping_mode = conf.get("delta.columnMapping.mode", "none")
        if mapping_mode not in ("none", None):
            bad.append(f"columnMapping(mode={mapping_mode})")
        if for_write and str(conf.get("delta.enableChangeDataFeed", "false")).lower() == "true":
            bad.append("changeDataFeed")
        if proto.min_reader_version > 3 or (for_write and proto.min_writer_version > 7):
            bad.append(f"protocol({proto.min_reader_version},{proto.min_writer_version})")
        if bad:
            action = "write" if for_write else "read"
            raise UnsupportedTableError(
                f"table '{name}' uses Delta features the delta-rs backend cannot {action} "
                f"correctly: {', '.join(sorted(set(bad)))}; use storage.backend=delta-spark"
            )

    def _frame(self, dt: DeltaTable, name: str, *, with_file: bool = False) -> DataFrame:
        self._check_features(dt, name, for_write=False)
        schema = to_spark_schema(dt.schema())
        partition_by = list(dt.metadata().partition_columns)
        files = dt.file_uris()
        if not files:
            empty = self.spark.createDataFrame([], schema)
            return empty.withColumn(FILE_COL, F.lit(None).cast("string")) if with_file else empty
        uri = self.table_uri(name)
        if partition_by:
            for f in files:
                rel = os.path.relpath(f, uri).split(os.sep)
                if [seg.split("=", 1)[0] for seg in rel[: len(partition_by)]] != partition_by:
                    raise UnsupportedTableError(
                        f"table '{name}': file {f} is not laid out as {'/'.join(partition_by)}=…; "
                        "this backend restores partition values from Hive-style paths"
                    )
            reader = self.spark.read.schema(schema).option("basePath", uri)
        else:
            reader = self.spark.read.schema(schema)
        df = reader.parquet(*files)
        cols = [F.col(f"`{c}`") for c in schema.fieldNames()]
        if with_file:
            cols.append(F.col("_metadata.file_path").alias(FILE_COL))
        return df.select(*cols)

    def read(
        self, name: str, *, version: int | None = None, timestamp: datetime | str | None = None
    ) -> DataFrame:
        return self._frame(self._load(name, version=version, timestamp=timestamp), name)

    def version(self, name: str) -> int | None:
        if not self.exists(name):
            return None
        return self._load(name).version()

    def schema(self, name: str) -> StructType:
        return to_spark_schema(self._load(name).schema())

    def history(self, name: str, limit: int | None = None) -> list[HistoryEntry]:
        entries = []
        for info in self._load(name).history(limit):
            ts = info.get("timestamp")
            entries.append(
                HistoryEntry(
                    version=int(info.get("version", -1)),
                    timestamp=datetime.fromtimestamp(ts / 1000, tz=timezone.utc) if ts else None,
                    operation=str(info.get("cdp.operation") or info.get("operation")),
                    run_id=run_id_from_commit(info),
                    parameters=dict(info.get("operationParameters") or {}),
                    metrics=dict(info.get("operationMetrics") or {}),
                    info=cdp_commit_info(info),
                )
            )
        return entries

    def info(self, name: str) -> TableInfo:
        dt = self._load(name)
        adds = pa.table(dt.get_add_actions(flatten=True))
        sizes = adds.column("size_bytes").to_pylist() if adds.num_rows else []
        rows: int | None = None
        if adds.num_rows and "num_records" in adds.schema.names:
            counts = adds.column("num_records").to_pylist()
            rows = None if any(c is None for c in counts) else int(sum(counts))
        elif not adds.num_rows:
            rows = 0
        last = dt.history(1)[0] if dt.version() >= 0 else {}
        ts = last.get("timestamp")
        return TableInfo(
            name=name,
            uri=self.table_uri(name),
            version=dt.version(),
            num_files=adds.num_rows,
            size_bytes=int(sum(sizes)),
            num_rows=rows,
            partition_columns=list(dt.metadata().partition_columns),
            last_run_id=run_id_from_commit(last),
            last_operation=str(last.get("cdp.operation") or last.get("operation")),
            last_commit=datetime.fromtimestamp(ts / 1000, tz=timezone.utc) if ts else None,
        )

    # ------------------------------------------------------------------------------------
    # Files
    # ------------------------------------------------------------------------------------
    def _write_files(
        self, df: DataFrame, name: str, partition_by: Sequence[str], schema: StructType
    ) -> list[AddAction]:
        """Spark writes ``df``; the files move into the table; their add actions come back."""
        uri = self.table_uri(name)
        staging = os.path.join(uri, STAGING_DIR, _txn_id())
        writer = df.write.mode("errorifexists")
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        writer.parquet(staging)
        faults.checkpoint("storage.after_write")
        return self._adopt_staged(staging, uri, partition_by, schema)

    def _adopt_staged(
        self, staging: str, uri: str, partition_by: Sequence[str], schema: StructType
    ) -> list[AddAction]:
        """Move the Parquet files of ``staging`` into the table; their add actions come back."""
        adds: list[AddAction] = []
        try:
            for dirpath, _dirs, files in os.walk(staging):
                for fname in sorted(files):
                    if not fname.endswith(".parquet"):
                        continue
                    src = os.path.join(dirpath, fname)
                    meta = pq.read_metadata(src)
                    if meta.num_rows == 0:
                        continue
                    rel = os.path.relpath(src, staging).replace(os.sep, "/")
                    dest = os.path.join(uri, rel)
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    os.replace(src, dest)
                    st = os.stat(dest)
                    adds.append(
                        AddAction(
                            quote(rel, safe="/="),
                            st.st_size,
                            _partition_values(rel, partition_by),
                            int(st.st_mtime * 1000),
                            True,
                            json.dumps(file_stats(meta, schema, partition_by)),
                        )
                    )
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return sorted(adds, key=lambda a: a.path)

    def _discard(self, name: str, adds: Sequence[AddAction]) -> None:
        """Delete files of a commit that did not happen (nobody references them)."""
        uri = self.table_uri(name)
        for add in adds:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(uri, unquote(add.path)))

    @staticmethod
    def _remove_action(add: Mapping[str, Any]) -> RemoveAction:
        pv = add.get("partition_values")
        return RemoveAction(
            str(add["path"]),
            True,
            int(time.time() * 1000),
            int(add["size"]) if add.get("size") is not None else None,
            dict(pv) if pv else None,
        )

    @staticmethod
    def _snapshot_files(dt: DeltaTable) -> list[dict[str, Any]]:
        """Add actions of a snapshot as plain dicts (path as stored in the log, size, partitions)."""
        adds = pa.table(dt.get_add_actions(flatten=False))
        if adds.num_rows == 0:
            return []
        cols = ["path", "size_bytes"] + (["partition"] if "partition" in adds.schema.names else [])
        return [
            {
                "path": r["path"],
                "size": r["size_bytes"],
                "partition_values": (
                    {k: _partition_text(v) for k, v in r["partition"].items()}
                    if r.get("partition")
                    else None
                ),
            }
            for r in adds.select(cols).to_pylist()
        ]

    def _spark_path_to_rel(self, name: str, spark_path: str) -> str:
        """``_metadata.file_path`` (a URI) -> the file's path relative to the table, decoded."""
        path = (
            unquote(urlparse(spark_path).path)
            if "://" in spark_path or spark_path.startswith("file:")
            else spark_path
        )
        if path.startswith("file:"):
            path = path[len("file:") :]
        return os.path.relpath(path, self.table_uri(name)).replace(os.sep, "/")

    # ------------------------------------------------------------------------------------
    # Commits
    # ------------------------------------------------------------------------------------
    def _props(
        self, operation: str, read_version: int | None, extra: Mapping[str, Any] | None = None
    ) -> CommitProperties:
        meta = _commit_metadata(self.run_id, operation, extra)
        if read_version is not None and read_version >= 0:
            meta["readVersion"] = int(read_version)
        return CommitProperties(custom_metadata=meta, max_commit_retries=0)

    def _evolve(
        self, dt: DeltaTable, name: str, incoming: StructType, *, merge_schema: bool
    ) -> StructType:
        """Add the incoming frame's new columns to the table (when allowed); return the schema."""
        current = to_spark_schema(dt.schema())
        known = {f.name: f for f in current.fields}
        new_fields = []
        for f in incoming.fields:
            if f.name not in known:
                new_fields.append(f)
            elif _types_equal(known[f.name].dataType, f.dataType):
                continue
            elif (widened := widen_struct(known[f.name].dataType, f.dataType)) is not None:
                # New nested fields in a struct column: the column's type is widened.
                new_fields.append(StructField(f.name, widened))
            else:
                raise SchemaError(
                    f"table '{name}': column '{f.name}' is {known[f.name].dataType.simpleString()} "
                    f"in the table but {f.dataType.simpleString()} in the data"
                )
        if not new_fields:
            return current
        if not merge_schema:
            raise SchemaError(
                f"table '{name}': data has columns not in the table: "
                f"{[f.name for f in new_fields]} (schema evolution is off for this write)"
            )
        delta_fields = to_delta_schema(StructType(new_fields)).fields
        dt.alter.add_columns(
            list(delta_fields), commit_properties=self._props("ADD COLUMNS", dt.version())
        )
        dt.update_incremental()
        return to_spark_schema(dt.schema())

    def _partition_columns(
        self, dt: DeltaTable | None, name: str, requested: Sequence[str] | None
    ) -> list[str]:
        if dt is None:
            return list(requested or [])
        existing = list(dt.metadata().partition_columns)
        if requested is not None and list(requested) != existing:
            raise SchemaError(
                f"table '{name}' is partitioned by {existing}, the write asked for {list(requested)}"
            )
        return existing

    def _create(
        self,
        name: str,
        schema: StructType,
        adds: list[AddAction],
        partition_by: Sequence[str],
        operation: str,
        extra: Mapping[str, Any] | None = None,
    ) -> int:
        create_table_with_add_actions(
            self.table_uri(name),
            to_delta_schema(schema),
            adds,
            mode="error",
            partition_by=list(partition_by) or None,
            commit_properties=self._props(operation, None, extra),
        )
        return 0

    def _commit(
        self,
        dt: DeltaTable,
        name: str,
        schema: StructType,
        actions: list[AddAction | RemoveAction],
        partition_by: Sequence[str],
        operation: str,
        extra: Mapping[str, Any] | None = None,
    ) -> int:
        """Commit on top of ``dt``'s version exactly; CommitFailedError if that was taken."""
        read_version = dt.version()
        faults.checkpoint("storage.before_commit")
        dt.create_write_transaction(
            actions,
            "append",
            to_delta_schema(schema),
            partition_by=list(partition_by) or None,
            commit_properties=self._props(operation, read_version, extra),
        )
        return read_version + 1

    def _commit_rewrite(
        self,
        dt: DeltaTable,
        name: str,
        schema: StructType,
        touched_uris: Sequence[str],
        adds: list[AddAction],
        parts: Sequence[str],
        operation: str,
        extra: Mapping[str, Any] | None = None,
        *,
        merge_schema: bool | None = None,
    ) -> tuple[int, int]:
        """Commit ``adds`` and the removal of the rewritten files ``touched_uris`` (Spark
        ``_metadata.file_path`` URIs) on top of ``dt``; the new files are deleted when the
        commit does not happen. With ``merge_schema`` set, new columns are added first.
        Returns (version, files removed)."""
        touched_rel = {self._spark_path_to_rel(name, u) for u in touched_uris}
        removes = [
            self._remove_action(f)
            for f in self._snapshot_files(dt)
            if unquote(f["path"]) in touched_rel
        ]
        try:
            if len(removes) != len(touched_rel):
                raise StorageError(
                    f"{operation} on '{name}': could not match {len(touched_rel) - len(removes)} "
                    "rewritten files to the snapshot; nothing was committed"
                )
            if merge_schema is not None:
                schema = self._evolve(dt, name, schema, merge_schema=merge_schema)
            version = self._commit(dt, name, schema, [*removes, *adds], parts, operation, extra)
        except CommitFailedError as exc:
            self._discard(name, adds)
            raise _Conflict(str(exc)) from exc
        except BaseException:
            self._discard(name, adds)
            raise
        return version, len(removes)

    def _retrying(self, name: str, operation: str, attempt: Callable[[], R]) -> R:
        delay = 0.05
        for n in range(self.commit_retries + 1):
            try:
                return attempt()
            except _Conflict as exc:
                if n >= self.commit_retries:
                    raise ConcurrentWriteError(
                        f"table '{name}': {operation} lost the commit race {n + 1} times "
                        f"to concurrent writers ({exc}); nothing of this write was committed"
                    ) from None
                log.info("table %s: %s conflicted (%s); retrying", name, operation, exc)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------------------------
    # Operations
    # ------------------------------------------------------------------------------------
    def append(
        self,
        name: str,
        df: DataFrame,
        *,
        partition_by: Sequence[str] | None = None,
        merge_schema: bool = True,
        commit_info: Mapping[str, Any] | None = None,
    ) -> CommitResult:
        dt = self._load(name) if self.exists(name) else None
        if dt is not None:
            self._check_features(dt, name, for_write=True)
        parts = self._partition_columns(dt, name, partition_by)
        adds = self._write_files(df, name, parts, df.schema)
        return self._append_adds(name, dt, df.schema, adds, parts, merge_schema, commit_info)

    def append_rows(
        self,
        name: str,
        rows: Sequence[Sequence[Any] | Mapping[str, Any]],
        schema: StructType,
        *,
        commit_info: Mapping[str, Any] | None = None,
    ) -> CommitResult:
        # A handful of driver-side rows: pyarrow writes the file, which spares a Spark job
        # (about a second each on a small machine, paid several times per stage run).
        from pyspark.sql.pandas.types import to_arrow_schema

        dt = self._load(name) if self.exists(name) else None
        if dt is not None:
            self._check_features(dt, name, for_write=True)
        parts = self._partition_columns(dt, name, None)
        if parts:  # partitioned tables keep Spark's directory layout
            return self.append(
                name, self.spark.createDataFrame(list(rows), schema), commit_info=commit_info
            )
        arrow_schema = to_arrow_schema(schema)
        names = schema.fieldNames()
        tuples = [tuple(r[n] for n in names) if isinstance(r, Mapping) else tuple(r) for r in rows]
        columns = list(zip(*tuples, strict=True)) if tuples else [() for _ in names]
        arrays = []
        for values, f in zip(columns, arrow_schema, strict=True):
            if pa.types.is_map(f.type):
                values = tuple(None if v is None else list(v.items()) for v in values)
            arrays.append(pa.array(list(values), type=f.type))
        table = pa.Table.from_arrays(arrays, schema=arrow_schema)
        uri = self.table_uri(name)
        staging = os.path.join(uri, STAGING_DIR, _txn_id())
        os.makedirs(staging, exist_ok=True)
        pq.write_table(table, os.path.join(staging, f"part-00000-{_txn_id()}.snappy.parquet"))
        faults.checkpoint("storage.after_write")
        adds = self._adopt_staged(staging, uri, parts, schema)
        return self._append_adds(name, dt, schema, adds, parts, True, commit_info)

    def _append_adds(
        self,
        name: str,
        dt: DeltaTable | None,
        df_schema: StructType,
        adds: list[AddAction],
        parts: list[str],
        merge_schema: bool,
        commit_info: Mapping[str, Any] | None,
    ) -> CommitResult:
        rows = sum(json.loads(a.stats)["numRecords"] for a in adds if a.stats)
        if not adds and dt is not None:
            return CommitResult(name, None, "APPEND", {"num_output_rows": 0, "num_files": 0})

        def attempt() -> int:
            current = self._load(name) if self.exists(name) else None
            try:
                if current is None:
                    try:
                        return self._create(name, df_schema, adds, parts, "APPEND", commit_info)
                    except DeltaError as exc:
                        if self.exists(name):  # another writer created it first
                            raise _Conflict(str(exc)) from exc
                        raise
                schema = self._evolve(current, name, df_schema, merge_schema=merge_schema)
                return self._commit(current, name, schema, list(adds), parts, "APPEND", commit_info)
            except CommitFailedError as exc:
                raise _Conflict(str(exc)) from exc

        try:
            version = self._retrying(name, "append", attempt)
        except BaseException:
            self._discard(name, adds)
            raise
        return CommitResult(
            name, version, "APPEND", {"num_output_rows": rows, "num_files": len(adds)}
        )

    def overwrite(
        self,
        name: str,
        df: DataFrame,
        *,
        partition_by: Sequence[str] | None = None,
        replace_partitions: bool = False,
        merge_schema: bool = True,
    ) -> CommitResult:
        def attempt() -> tuple[int, dict[str, int]]:
            dt = self._load(name) if self.exists(name) else None
            if dt is not None:
                self._check_features(dt, name, for_write=True)
            parts = self._partition_columns(dt, name, partition_by)
            if replace_partitions and not parts:
                raise StorageError(f"table '{name}': replace_partitions needs a partitioned table")
            adds = self._write_files(df, name, parts, df.schema)
            rows = sum(json.loads(a.stats)["numRecords"] for a in adds if a.stats)
            try:
                if dt is None:
                    try:
                        version = self._create(name, df.schema, adds, parts, "OVERWRITE")
                    except DeltaError as exc:
                        raise _Conflict(str(exc)) from exc
                    return version, {
                        "num_output_rows": rows,
                        "num_files": len(adds),
                        "num_removed_files": 0,
                    }
                schema = self._evolve(dt, name, df.schema, merge_schema=merge_schema)
                existing = self._snapshot_files(dt)
                if replace_partitions:
                    touched = {tuple(sorted(a.partition_values.items())) for a in adds}
                    existing = [
                        f
                        for f in existing
                        if tuple(sorted((f["partition_values"] or {}).items())) in touched
                    ]
                removes = [self._remove_action(f) for f in existing]
                version = self._commit(dt, name, schema, [*removes, *adds], parts, "OVERWRITE")
                return version, {
                    "num_output_rows": rows,
                    "num_files": len(adds),
                    "num_removed_files": len(removes),
                }
            except CommitFailedError as exc:
                self._discard(name, adds)
                raise _Conflict(str(exc)) from exc
            except BaseException:
                self._discard(name, adds)
                raise

        version, metrics = self._retrying(name, "overwrite", attempt)
        return CommitResult(name, version, "OVERWRITE", metrics)

    def merge(
        self,
        name: str,
        source: DataFrame,
        *,
        keys: Sequence[str],
        update: bool | Mapping[str, str] = True,
        update_condition: str | None = None,
        delete_condition: str | None = None,
        insert: bool | Mapping[str, str] = True,
        insert_condition: str | None = None,
        partition_by: Sequence[str] | None = None,
        merge_schema: bool = False,
        source_keys_unique: bool = False,
    ) -> CommitResult:
        if not keys:
            raise MergeError("merge needs at least one key column")
        missing = [k for k in keys if k not in source.columns]
        if missing:
            raise MergeError(f"merge into '{name}': source lacks key columns {missing}")
        src = source.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            dup = (
                []
                if source_keys_unique
                else src.groupBy(*keys).count().where("count > 1").limit(1).collect()
            )
            if dup:
                example = {k: dup[0][k] for k in keys}
                raise MergeError(
                    f"merge into '{name}': several source rows have the same key {example}; "
                    "de-duplicate the source first"
                )
            if not self.exists(name):
                inserted = (
                    plan_merge(
                        self.spark.createDataFrame([], src.schema),
                        src,
                        keys=keys,
                        output_schema=src.schema,
                        update=False,
                        insert=insert,
                        insert_condition=insert_condition,
                    )
                    .where(F.col(ACTION) == "insert")
                    .drop(ACTION)
                )
                result = self.append(name, inserted, partition_by=partition_by)
                return CommitResult(
                    name,
                    result.version,
                    "MERGE",
                    {
                        "num_inserted": result.rows_written,
                        "num_updated": 0,
                        "num_deleted": 0,
                        "num_output_rows": result.rows_written,
                    },
                )
            return self._retrying(
                name,
                "merge",
                lambda: self._merge_once(
                    name,
                    src,
                    keys=keys,
                    update=update,
                    update_condition=update_condition,
                    delete_condition=delete_condition,
                    insert=insert,
                    insert_condition=insert_condition,
                    merge_schema=merge_schema,
                ),
            )
        finally:
            src.unpersist()

    def _merge_once(
        self,
        name: str,
        src: DataFrame,
        *,
        keys: Sequence[str],
        update: bool | Mapping[str, str],
        update_condition: str | None,
        delete_condition: str | None,
        insert: bool | Mapping[str, str],
        insert_condition: str | None,
        merge_schema: bool,
    ) -> CommitResult:
        dt = self._load(name)
        self._check_features(dt, name, for_write=True)
        parts = list(dt.metadata().partition_columns)
        table_schema = to_spark_schema(dt.schema())
        if not merge_schema:
            extra = [c for c in src.columns if c not in table_schema.fieldNames()]
            if extra and (update is True or insert is True):
                raise SchemaError(
                    f"merge into '{name}': source columns {extra} are not in the table "
                    "(pass merge_schema=True to add them)"
                )
        out_schema = merge_output_schema(table_schema, src.schema, evolve=merge_schema)
        target = self._frame(dt, name, with_file=True)
        touched_rows = (
            target.join(src.select(*keys).distinct(), on=list(keys), how="left_semi")
            .select(FILE_COL)
            .distinct()
            .collect()
        )
        touched_uris = [r[FILE_COL] for r in touched_rows]
        affected = (
            target.where(F.col(FILE_COL).isin(touched_uris))
            if touched_uris
            else target.where(F.lit(False))
        ).drop(FILE_COL)
        planned = plan_merge(
            affected,
            src,
            keys=keys,
            output_schema=out_schema,
            update=update,
            update_condition=update_condition,
            delete_condition=delete_condition,
            insert=insert,
            insert_condition=insert_condition,
        )
        observation = Observation(f"merge-{_txn_id()}")
        observed = planned.observe(observation, *merge_metrics_columns())
        output = observed.where(F.col(ACTION).isin("keep", "update", "insert")).drop(ACTION)
        adds = self._write_files(output, name, parts, out_schema)
        metrics = {k: int(v or 0) for k, v in observation.get.items()}
        if metrics["num_updated"] + metrics["num_inserted"] + metrics["num_deleted"] == 0:
            self._discard(name, adds)
            return CommitResult(name, None, "MERGE", {**metrics, "num_output_rows": 0})
        version, removed = self._commit_rewrite(
            dt, name, out_schema, touched_uris, adds, parts, "MERGE", merge_schema=merge_schema
        )
        rows = sum(json.loads(a.stats)["numRecords"] for a in adds if a.stats)
        return CommitResult(
            name,
            version,
            "MERGE",
            {
                **metrics,
                "num_output_rows": rows,
                "num_files": len(adds),
                "num_removed_files": removed,
            },
        )

    def delete(self, name: str, predicate: str) -> CommitResult:
        def attempt() -> CommitResult:
            dt = self._load(name)
            self._check_features(dt, name, for_write=True)
            parts = list(dt.metadata().partition_columns)
            schema = to_spark_schema(dt.schema())
            target = self._frame(dt, name, with_file=True)
            hit = F.coalesce(F.expr(predicate), F.lit(False))
            touched_uris = [
                r[FILE_COL] for r in target.where(hit).select(FILE_COL).distinct().collect()
            ]
            if not touched_uris:
                return CommitResult(name, None, "DELETE", {"num_deleted": 0})
            affected = target.where(F.col(FILE_COL).isin(touched_uris)).drop(FILE_COL)
            observation = Observation(f"delete-{_txn_id()}")
            observed = affected.observe(
                observation, F.sum(F.when(hit, 1).otherwise(0)).alias("num_deleted")
            )
            kept = observed.where(~hit)
            adds = self._write_files(kept, name, parts, schema)
            deleted = int(observation.get.get("num_deleted") or 0)
            version, removed = self._commit_rewrite(
                dt, name, schema, touched_uris, adds, parts, "DELETE"
            )
            return CommitResult(
                name,
                version,
                "DELETE",
                {"num_deleted": deleted, "num_files": len(adds), "num_removed_files": removed},
            )

        return self._retrying(name, "delete", attempt)

    def replace_where(
        self, name: str, df: DataFrame, predicate: str, *, merge_schema: bool = True
    ) -> CommitResult:
        if not self.exists(name):
            return self.append(name, df, merge_schema=merge_schema)

        def attempt() -> CommitResult:
            dt = self._load(name)
            self._check_features(dt, name, for_write=True)
            parts = list(dt.metadata().partition_columns)
            schema = merge_output_schema(
                to_spark_schema(dt.schema()), df.schema, evolve=merge_schema
            )
            target = self._frame(dt, name, with_file=True)
            hit = F.coalesce(F.expr(predicate), F.lit(False))
            touched_uris = [
                r[FILE_COL] for r in target.where(hit).select(FILE_COL).distinct().collect()
            ]
            kept = (
                target.where(F.col(FILE_COL).isin(touched_uris) & ~hit)
                if touched_uris
                else target.where(F.lit(False))
            ).drop(FILE_COL)
            observation = Observation(f"replace-{_txn_id()}")
            new_rows = df.observe(
                observation,
                F.count(F.lit(1)).alias("num_inserted"),
                F.sum(F.when(hit, 0).otherwise(1)).alias("outside"),
            )
            out = _conform(new_rows, schema).unionByName(_conform(kept, schema))
            adds = self._write_files(out, name, parts, schema)
            seen = {k: int(v or 0) for k, v in observation.get.items()}
            if seen["outside"]:
                self._discard(name, adds)
                raise StorageError(
                    f"table '{name}': {seen['outside']} new row(s) do not match the replace "
                    f"predicate {predicate!r}; nothing was committed"
                )
            version, removed = self._commit_rewrite(
                dt,
                name,
                schema,
                touched_uris,
                adds,
                parts,
                "WRITE",
                {"mode": "Overwrite", "predicate": predicate},
                merge_schema=merge_schema,
            )
            return CommitResult(
                name,
                version,
                "WRITE",
                {
                    "num_output_rows": seen["num_inserted"],
                    "num_files": len(adds),
                    "num_removed_files": removed,
                },
            )

        return self._retrying(name, "replace_where", attempt)

    def vacuum(
        self, name: str, *, retention_hours: float | None = None, dry_run: bool = False
    ) -> list[str]:
        dt = self._load(name)
        hours = 168.0 if retention_hours is None else retention_hours
        removed = dt.vacuum(
            retention_hours=int(hours),
            dry_run=dry_run,
            enforce_retention_duration=False,
            full=True,
            commit_properties=self._props("VACUUM", dt.version()),
        )
        # Staging directories of crashed writes: delta-rs skips '_' directories by design.
        staging = Path(self.table_uri(name)) / STAGING_DIR
        cutoff = time.time() - hours * 3600
        if staging.is_dir():
            for entry in staging.iterdir():
                if entry.stat().st_mtime <= cutoff:
                    removed.append(str(entry))
                    if not dry_run:
                        shutil.rmtree(entry, ignore_errors=True)
        return list(removed)

    def optimize(self, name: str, *, target_size_mb: int | None = None) -> dict[str, Any]:
        dt = self._load(name)
        self._check_features(dt, name, for_write=True)
        size = (target_size_mb or self.target_file_size_mb) * 1024 * 1024
        result = dt.optimize.compact(
            target_size=size, commit_properties=self._props("OPTIMIZE", dt.version())
        )
        return dict(result)


class _Conflict(Exception):
    """A commit lost the race for its version; the operation may be retried."""


def _partition_text(value: Any) -> str | None:
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
