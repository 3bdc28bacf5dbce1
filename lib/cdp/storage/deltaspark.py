"""JVM Delta Lake backend (``delta-spark``), used where Delta's jar is on the classpath.

This is what a cluster runs: Databricks runtimes, or ``spark-submit --packages
io.delta:delta-spark_2.13:<version>``. It maps the storage interface one to one onto Delta's
own API; the run id travels in each commit's ``userMetadata``.

Which commit is ours: each write carries a unique transaction id (``cdp.txn``) in its
``userMetadata``, and the version and metrics it reports are those of the commit carrying
it, found in the table's history; the newest commit (``history(1)``) may be another writer's.
A merge's row counts come from the DataFrame ``execute()`` returns (Delta 3.1+).

Conflicts: Delta refuses a commit whose read was overtaken (``ConcurrentAppendException`` and
its kin); the whole operation then runs again on the new version, up to ``commit_retries``
times, like the embedded backend. Before each retry the history is checked for the
transaction id, so a write that committed after all is never committed twice.

On S3 several writers (clusters, or a cluster and a laptop) need Delta's DynamoDB log store,
since S3 has no put-if-absent: ``spark.delta.logStore.s3a.impl=io.delta.storage.S3DynamoDBLogStore``
and ``spark.io.delta.storage.S3DynamoDBLogStore.ddb.tableName`` (see the README).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from cdp.storage.base import (
    CommitResult,
    ConcurrentWriteError,
    HistoryEntry,
    StorageError,
    TableInfo,
    TableNotFound,
    TableStore,
    _commit_metadata,
    history_entry,
)
from cdp.storage.merge_checks import checked_merge_source

log = logging.getLogger(__name__)

DELTA_TABLE_CLASS = "io.delta.tables.DeltaTable"
_USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"
TXN_KEY = "cdp.txn"
# Delta's conflict exceptions, by name (the Python classes exist only when delta-spark's
# exception conversion is loaded, so the JVM class names in the message count too).
_CONFLICTS = (
    "ConcurrentAppendException",
    "ConcurrentDeleteReadException",
    "ConcurrentDeleteDeleteException",
    "ConcurrentTransactionException",
    "ConcurrentWriteException",
    "MetadataChangedException",
    "ProtocolChangedException",
    "DELTA_CONCURRENT_",
)
R = TypeVar("R")


def _is_conflict(exc: BaseException) -> bool:
    try:
        from delta.exceptions import DeltaConcurrentModificationException

        if isinstance(exc, DeltaConcurrentModificationException):
            return True
    except ImportError:  # pragma: no cover - delta-spark is installed with this backend
        pass
    text = f"{type(exc).__name__}: {exc}"
    return any(name in text for name in _CONFLICTS)


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

    @staticmethod
    def _new_txn() -> str:
        return f"{time.time_ns()}-{secrets.token_hex(8)}"

    def _user_metadata(
        self, operation: str, txn: str, extra: Mapping[str, Any] | None = None
    ) -> str:
        meta = _commit_metadata(self.run_id, operation, extra)
        meta[TXN_KEY] = txn
        return json.dumps(meta, default=str)

    def _with_metadata(
        self, operation: str, extra: Mapping[str, Any] | None = None, *, txn: str | None = None
    ) -> str:
        """Set the session's commit metadata (for the DeltaTable API, which has no per-write
        option) and return the transaction id it carries."""
        txn = txn or self._new_txn()
        self.spark.conf.set(_USER_METADATA, self._user_metadata(operation, txn, extra))
        return txn

    def _last_commit(self, name: str) -> tuple[int, dict[str, int]]:
        row = self._table(name).history(1).select("version", "operationMetrics").collect()[0]
        return int(row["version"]), _metric_ints(row["operationMetrics"])

    def _find_txn(
        self, name: str, txn: str, after: int | None
    ) -> tuple[int, dict[str, int]] | None:
        """(version, metrics) of the commit carrying ``txn``, searched among the versions
        after ``after`` (the table's version before the write; None: it did not exist)."""
        current = self.version(name)
        if current is None or (after is not None and current <= after):
            return None
        table = self._table(name)
        frame = table.history(current - after) if after is not None else table.history()
        for row in frame.select("version", "userMetadata", "operationMetrics").collect():
            meta = row["userMetadata"]
            if not (isinstance(meta, str) and txn in meta):
                continue
            try:
                found = json.loads(meta).get(TXN_KEY)
            except (json.JSONDecodeError, AttributeError):
                continue
            if found == txn:
                return int(row["version"]), _metric_ints(row["operationMetrics"])
        return None

    def _own_commit(
        self, name: str, txn: str, after: int | None
    ) -> tuple[int | None, dict[str, int]]:
        """The version and metrics of this write's commit; (None, {}) when it committed
        nothing (a no-op)."""
        found = self._find_txn(name, txn, after)
        return found if found is not None else (None, {})

    def _retrying(
        self, name: str, operation: str, txn: str, after: int | None, attempt: Callable[[], R]
    ) -> R:
        """Run ``attempt`` again after a Delta conflict, up to ``commit_retries`` times;
        never again once a commit carrying ``txn`` exists."""
        delay = 0.1
        for n in range(self.commit_retries + 1):
            try:
                return attempt()
            except Exception as exc:
                if not _is_conflict(exc):
                    raise
                if self._find_txn(name, txn, after) is not None:
                    raise StorageError(
                        f"table '{name}': {operation} committed but then failed ({exc})"
                    ) from exc
                if n >= self.commit_retries:
                    raise ConcurrentWriteError(
                        f"table '{name}': {operation} lost to concurrent writers {n + 1} "
                        f"times ({type(exc).__name__}); nothing of this write was committed"
                    ) from exc
                log.info("table %s: %s conflicted (%s); retrying", name, operation, exc)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

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
        txn, before = self._new_txn(), self.version(name)

        def attempt() -> None:
            writer = (
                df.write.format("delta")
                .mode("append")
                .option("mergeSchema", str(merge_schema).lower())
                .option("userMetadata", self._user_metadata("APPEND", txn, commit_info))
            )
            if partition_by and not self.exists(name):
                writer = writer.partitionBy(*partition_by)
            writer.save(self.table_uri(name))

        self._retrying(name, "append", txn, before, attempt)
        version, metrics = self._own_commit(name, txn, before)
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
        txn, before = self._new_txn(), self.version(name)

        def attempt() -> None:
            writer = (
                df.write.format("delta")
                .mode("overwrite")
                .option("mergeSchema", str(merge_schema).lower())
                .option("userMetadata", self._user_metadata("OVERWRITE", txn))
            )
            if replace_partitions:
                writer = writer.option("partitionOverwriteMode", "dynamic")
            elif partition_by and not self.exists(name):
                writer = writer.partitionBy(*partition_by)
            if replace_partitions and not self.exists(name):
                if not partition_by:
                    raise StorageError(
                        f"table '{name}': replace_partitions needs a partitioned table"
                    )
                writer = writer.partitionBy(*partition_by)
            writer.save(self.table_uri(name))

        self._retrying(name, "overwrite", txn, before, attempt)
        version, metrics = self._own_commit(name, txn, before)
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
            condition = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
            txn, before = self._new_txn(), self.version(name)

            def attempt() -> dict[str, int]:
                # The session conf carries the metadata (the merge API has no option for it);
                # set on every attempt, since another write may have changed it meanwhile.
                self._with_metadata("MERGE", txn=txn)
                builder = self._table(name).alias("t").merge(src.alias("s"), condition)
                if delete_condition:
                    builder = builder.whenMatchedDelete(condition=delete_condition)
                if update is True:
                    builder = builder.whenMatchedUpdateAll(condition=update_condition)
                elif isinstance(update, Mapping):
                    builder = builder.whenMatchedUpdate(
                        condition=update_condition, set=dict(update)
                    )
                if insert is True:
                    builder = builder.whenNotMatchedInsertAll(condition=insert_condition)
                elif isinstance(insert, Mapping):
                    builder = builder.whenNotMatchedInsert(
                        condition=insert_condition, values=dict(insert)
                    )
                if merge_schema:
                    self.spark.conf.set("spark.databricks.delta.schema.autoMerge.enabled", "true")
                try:
                    out = builder.execute()
                finally:
                    if merge_schema:
                        self.spark.conf.unset("spark.databricks.delta.schema.autoMerge.enabled")
                # Delta 3.1+: one row of this merge's own counts.
                row = out.first() if out is not None else None
                return _metric_ints(row.asDict()) if row is not None else {}

            counts = self._retrying(name, "merge", txn, before, attempt)
            version, metrics = self._own_commit(name, txn, before)
            return CommitResult(
                name,
                version,
                "MERGE",
                {
                    "num_inserted": counts.get(
                        "num_inserted_rows", metrics.get("numTargetRowsInserted", 0)
                    ),
                    "num_updated": counts.get(
                        "num_updated_rows", metrics.get("numTargetRowsUpdated", 0)
                    ),
                    "num_deleted": counts.get(
                        "num_deleted_rows", metrics.get("numTargetRowsDeleted", 0)
                    ),
                    "num_output_rows": metrics.get("numOutputRows", 0),
                    **metrics,
                },
            )

    def replace_where(
        self, name: str, df: DataFrame, predicate: str, *, merge_schema: bool = True
    ) -> CommitResult:
        txn, before = self._new_txn(), self.version(name)

        def attempt() -> None:
            # Delta checks that every new row matches the predicate (replaceWhere constraint
            # check, on by default) and fails the write otherwise.
            try:
                (
                    df.write.format("delta")
                    .mode("overwrite")
                    .option("replaceWhere", predicate)
                    .option("mergeSchema", str(merge_schema).lower())
                    .option("userMetadata", self._user_metadata("WRITE", txn))
                    .save(self.table_uri(name))
                )
            except Exception as exc:
                if _is_conflict(exc):
                    raise
                if "replaceWhere" in str(exc) or "DELTA_REPLACE_WHERE_MISMATCH" in str(exc):
                    raise StorageError(
                        f"table '{name}': new rows do not match the replace predicate "
                        f"{predicate!r}; nothing was committed"
                    ) from exc
                raise

        self._retrying(name, "replace_where", txn, before, attempt)
        version, metrics = self._own_commit(name, txn, before)
        return CommitResult(
            name, version, "WRITE", {"num_output_rows": metrics.get("numOutputRows", 0), **metrics}
        )

    def delete(self, name: str, predicate: str) -> CommitResult:
        txn, before = self._new_txn(), self.version(name)

        def attempt() -> None:
            self._with_metadata("DELETE", txn=txn)
            self._table(name).delete(predicate)

        self._retrying(name, "delete", txn, before, attempt)
        version, metrics = self._own_commit(name, txn, before)
        if version is None:  # nothing matched: Delta committed nothing
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
