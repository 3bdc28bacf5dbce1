"""JVM Delta Lake backend (``delta-spark``), used where Delta's jar is on the classpath.

This is what a cluster runs: Databricks runtimes, or ``spark-submit --packages
io.delta:delta-spark_2.13:<version>``. It maps the storage interface one to one onto Delta's
own API; the run id travels in each commit's ``userMetadata``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from cdp.storage.base import (
    CommitResult,
    HistoryEntry,
    StorageError,
    TableInfo,
    TableNotFound,
    TableStore,
    _commit_metadata,
    history_entry,
)
from cdp.storage.merge_checks import checked_merge_source

DELTA_TABLE_CLASS = "io.delta.tables.DeltaTable"
_USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"


def _metric_ints(metrics: Mapping[str, Any] | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, value in (metrics or {}).items():
        try:
            out[key] = int(value)
        except (TypeError, ValueError):
            continue
    return out


class DeltaSparkStore(TableStore):
    """Delta tables through Delta Lake's JVM implementation."""

    backend_name = "delta-spark"

    def __init__(self, spark: SparkSession, root: str, *, commit_retries: int = 5) -> None:
        super().__init__(spark, root, commit_retries=commit_retries)
        from delta.tables import DeltaTable  # noqa: F401  - fails early without delta-spark

    def _table(self, name: str) -> Any:
        from delta.tables import DeltaTable

        if not self.exists(name):
            raise TableNotFound(f"table '{name}' does not exist at {self.table_uri(name)}")
        return DeltaTable.forPath(self.spark, self.table_uri(name))

    def _with_metadata(self, operation: str, extra: Mapping[str, Any] | None = None) -> None:
        meta = _commit_metadata(self.run_id, operation, extra)
        self.spark.conf.set(_USER_METADATA, json.dumps(meta, default=str))

    def _last_commit(self, name: str) -> tuple[int, dict[str, int]]:
        row = self._table(name).history(1).select("version", "operationMetrics").collect()[0]
        return int(row["version"]), _metric_ints(row["operationMetrics"])

    # Reading -----------------------------------------------------------------------------
    def exists(self, name: str) -> bool:
        from delta.tables import DeltaTable

        return bool(DeltaTable.isDeltaTable(self.spark, self.table_uri(name)))

    def read(
        self, name: str, *, version: int | None = None, timestamp: datetime | str | None = None
    ) -> DataFrame:
        if not self.exists(name):
            raise TableNotFound(f"table '{name}' does not exist at {self.table_uri(name)}")
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        if timestamp is not None:
            ts = timestamp.isoformat() if isinstance(timestamp, datetime) else timestamp
            reader = reader.option("timestampAsOf", ts)
        return reader.load(self.table_uri(name))

    def version(self, name: str) -> int | None:
        if not self.exists(name):
            return None
        return self._last_commit(name)[0]

    def schema(self, name: str) -> StructType:
        return self.read(name).schema

    def history(self, name: str, limit: int | None = None) -> list[HistoryEntry]:
        table = self._table(name)
        frame = table.history(limit) if limit else table.history()
        out = []
        for row in frame.collect():
            info = row.asDict(recursive=True)
            out.append(
                history_entry(
                    info,
                    version=int(info["version"]),
                    timestamp=info.get("timestamp"),
                    operation=str(info.get("operation")),
                )
            )
        return out

    def info(self, name: str) -> TableInfo:
        detail = self._table(name).detail().collect()[0]
        last = self.history(name, 1)[0]
        rows = self.read(name).count()
        return TableInfo(
            name=name,
            uri=self.table_uri(name),
            version=last.version,
            num_files=int(detail["numFiles"]),
            size_bytes=int(detail["sizeInBytes"]),
            num_rows=rows,
            partition_columns=list(detail["partitionColumns"]),
            last_run_id=last.run_id,
            last_operation=last.operation,
            last_commit=last.timestamp,
        )

    # Writing -----------------------------------------------------------------------------
    def append(
        self,
        name: str,
        df: DataFrame,
        *,
        partition_by: Sequence[str] | None = None,
        merge_schema: bool = True,
        commit_info: Mapping[str, Any] | None = None,
    ) -> CommitResult:
        self._with_metadata("APPEND", commit_info)
        writer = (
            df.write.format("delta").mode("append").option("mergeSchema", str(merge_schema).lower())
        )
        if partition_by and not self.exists(name):
            writer = writer.partitionBy(*partition_by)
        writer.save(self.table_uri(name))
        version, metrics = self._last_commit(name)
        return CommitResult(
            name, version, "APPEND", {"num_output_rows": metrics.get("numOutputRows", 0), **metrics}
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
        self._with_metadata("OVERWRITE")
        writer = (
            df.write.format("delta")
            .mode("overwrite")
            .option("mergeSchema", str(merge_schema).lower())
        )
        if replace_partitions:
            writer = writer.option("partitionOverwriteMode", "dynamic")
        elif partition_by and not self.exists(name):
            writer = writer.partitionBy(*partition_by)
        if replace_partitions and not self.exists(name):
            if not partition_by:
                raise StorageError(f"table '{name}': replace_partitions needs a partitioned table")
            writer = writer.partitionBy(*partition_by)
        writer.save(self.table_uri(name))
        version, metrics = self._last_commit(name)
        return CommitResult(
            name,
            version,
            "OVERWRITE",
            {"num_output_rows": metrics.get("numOutputRows", 0), **metrics},
        )

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
        # The same source checks as the embedded backend: Delta itself rejects duplicate
        # keys only when they hit an existing row, and inserts them all otherwise.
        with checked_merge_source(name, source, keys, source_keys_unique=source_keys_unique) as src:
            if not self.exists(name):
                created = src.alias("s")
                if insert_condition:
                    created = created.where(F.expr(insert_condition))
                result = self.append(name, created.select(*src.columns), partition_by=partition_by)
                return CommitResult(
                    name, result.version, "MERGE", {"num_inserted": result.rows_written}
                )
            self._with_metadata("MERGE")
            if merge_schema:
                self.spark.conf.set("spark.databricks.delta.schema.autoMerge.enabled", "true")
            condition = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
            builder = self._table(name).alias("t").merge(src.alias("s"), condition)
            if delete_condition:
                builder = builder.whenMatchedDelete(condition=delete_condition)
            if update is True:
                builder = builder.whenMatchedUpdateAll(condition=update_condition)
            elif isinstance(update, Mapping):
                builder = builder.whenMatchedUpdate(condition=update_condition, set=dict(update))
            if insert is True:
                builder = builder.whenNotMatchedInsertAll(condition=insert_condition)
            elif isinstance(insert, Mapping):
                builder = builder.whenNotMatchedInsert(
                    condition=insert_condition, values=dict(insert)
                )
            try:
                builder.execute()
            finally:
                if merge_schema:
                    self.spark.conf.unset("spark.databricks.delta.schema.autoMerge.enabled")
            version, metrics = self._last_commit(name)
            return CommitResult(
                name,
                version,
                "MERGE",
                {
                    "num_inserted": metrics.get("numTargetRowsInserted", 0),
                    "num_updated": metrics.get("numTargetRowsUpdated", 0),
                    "num_deleted": metrics.get("numTargetRowsDeleted", 0),
                    "num_output_rows": metrics.get("numOutputRows", 0),
                    **metrics,
                },
            )

    def replace_where(
        self, name: str, df: DataFrame, predicate: str, *, merge_schema: bool = True
    ) -> CommitResult:
        self._with_metadata("WRITE")
        # Delta checks that every new row matches the predicate (replaceWhere constraint
        # check, on by default) and fails the write otherwise.
        try:
            (
                df.write.format("delta")
                .mode("overwrite")
                .option("replaceWhere", predicate)
                .option("mergeSchema", str(merge_schema).lower())
                .save(self.table_uri(name))
            )
        except Exception as exc:
            if "replaceWhere" in str(exc) or "DELTA_REPLACE_WHERE_MISMATCH" in str(exc):
                raise StorageError(
                    f"table '{name}': new rows do not match the replace predicate "
                    f"{predicate!r}; nothing was committed"
                ) from exc
            raise
        version, metrics = self._last_commit(name)
        return CommitResult(
            name, version, "WRITE", {"num_output_rows": metrics.get("numOutputRows", 0), **metrics}
        )

    def delete(self, name: str, predicate: str) -> CommitResult:
        self._with_metadata("DELETE")
        before = self.version(name)
        self._table(name).delete(predicate)
        version, metrics = self._last_commit(name)
        if version == before:
            return CommitResult(name, None, "DELETE", {"num_deleted": 0})
        return CommitResult(
            name, version, "DELETE", {"num_deleted": metrics.get("numDeletedRows", 0), **metrics}
        )

    def vacuum(
        self,
        name: str,
        *,
        retention_hours: float | None = None,
        dry_run: bool = False,
        force: bool = False,
    ) -> list[str]:
        hours = self._vacuum_hours(name, retention_hours, dry_run=dry_run, force=force)
        self.spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
        uri = self.table_uri(name)
        sql = f"VACUUM delta.`{uri}` RETAIN {hours} HOURS" + (" DRY RUN" if dry_run else "")
        rows = self.spark.sql(sql).collect()
        return [str(r[0]) for r in rows if r[0] and str(r[0]) != uri]

    def optimize(self, name: str, *, target_size_mb: int | None = None) -> dict[str, Any]:
        self._with_metadata("OPTIMIZE")
        if target_size_mb:
            self.spark.conf.set(
                "spark.databricks.delta.optimize.maxFileSize", str(target_size_mb * 1024 * 1024)
            )
        metrics = self._table(name).optimize().executeCompaction().collect()
        return metrics[0].asDict(recursive=True) if metrics else {}
