"""Reading side of the embedded (delta-rs) backend: snapshots, time travel, metadata.

A table's snapshot comes from delta-rs (``DeltaTable``); its rows are read by Spark from the
snapshot's file list, restoring partition columns from the Hive-style paths with the table's
own schema. Tables that use Delta features this backend does not implement are refused here,
before anything is read or written, because honouring them partially would give wrong answers.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError, TableNotFoundError
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from cdp.storage.base import (
    HistoryEntry,
    StorageError,
    TableInfo,
    TableNotFound,
    TableStore,
    UnsupportedTableError,
    history_entry,
    run_id_from_commit,
)
from cdp.storage.deltars_schema import to_spark_schema

# The column that carries each row's data file (Spark's ``_metadata.file_path``) when an
# operation must know which files it rewrites.
FILE_COL = "_cdp_file"
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


class DeltaRsSnapshots(TableStore):
    """Snapshots and reads of delta-rs tables; the commit and operation layers build on it."""

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
        # Bronze column names come from files: a backtick inside one is doubled.
        cols = [F.col("`" + c.replace("`", "``") + "`") for c in schema.fieldNames()]
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
                history_entry(
                    info,
                    version=int(info.get("version", -1)),
                    timestamp=datetime.fromtimestamp(ts / 1000, tz=timezone.utc) if ts else None,
                    operation=str(info.get("cdp.operation") or info.get("operation")),
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
