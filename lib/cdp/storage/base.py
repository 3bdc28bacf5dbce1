"""The storage interface every stage uses, whatever Delta implementation sits behind it.

Tables are addressed by name (``"bronze/crm_contacts"``, ``"ops/run_log"``), which maps to a
directory under the data root. Both backends produce standard Delta tables; a table written by
one can be read by the other and by any Delta reader.

SQL in ``merge`` conditions and ``delete`` predicates is Spark SQL. In merge conditions the
target is aliased ``t`` and the source ``s``.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType


class StorageError(RuntimeError):
    """Base class of every storage-layer error."""


class TableNotFound(StorageError):
    """The named table does not exist (no ``_delta_log``)."""


class ConcurrentWriteError(StorageError):
    """Another writer committed a conflicting change first and retries did not resolve it."""


class UnsupportedTableError(StorageError):
    """The table uses a Delta feature this backend cannot honour; reading it would be wrong."""


class SchemaError(StorageError):
    """The data does not fit the table's schema and evolution is not allowed or not possible."""


class MergeError(StorageError):
    """A merge cannot be applied as asked (for example, several source rows for one key)."""


@dataclass(frozen=True)
class CommitResult:
    """What one write committed."""

    table: str
    version: int | None  # None when nothing was committed (a no-op)
    operation: str
    metrics: dict[str, int] = field(default_factory=dict)

    @property
    def rows_written(self) -> int:
        return int(self.metrics.get("num_output_rows", 0))


@dataclass(frozen=True)
class HistoryEntry:
    version: int
    timestamp: datetime | None
    operation: str
    run_id: str | None
    parameters: dict[str, Any]
    metrics: dict[str, Any]
    # The 'cdp.*' keys of the commit (run id, operation and any caller metadata).
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TableInfo:
    name: str
    uri: str
    version: int
    num_files: int
    size_bytes: int
    num_rows: int | None
    partition_columns: list[str]
    last_run_id: str | None
    last_operation: str | None
    last_commit: datetime | None


RUN_ID_KEY = "cdp.run_id"
# Vacuum's default retention and its floor, as in Delta (7 days); below it only with force.
VACUUM_RETENTION_FLOOR_HOURS = 168.0


def widen_struct(current: Any, incoming: Any) -> Any:
    """The struct type that holds both, when ``incoming`` only adds nested fields (at any
    depth) to ``current``; None when a shared field changes type. Non-structs: equal or None."""
    from pyspark.sql.types import StructField as _Field
    from pyspark.sql.types import StructType as _Struct

    if not isinstance(current, _Struct) or not isinstance(incoming, _Struct):
        same = json.dumps(current.jsonValue(), sort_keys=True) == json.dumps(
            incoming.jsonValue(), sort_keys=True
        )
        return current if same else None
    theirs = {f.name: f for f in incoming.fields}
    fields = []
    for f in current.fields:
        if f.name in theirs:
            merged = widen_struct(f.dataType, theirs[f.name].dataType)
            if merged is None:
                return None
            fields.append(_Field(f.name, merged, True))
        else:
            fields.append(_Field(f.name, f.dataType, True))
    known = {f.name for f in current.fields}
    fields += [_Field(f.name, f.dataType, True) for f in incoming.fields if f.name not in known]
    return _Struct(fields)


def _commit_metadata(
    run_id: str | None, operation: str, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"cdp.operation": operation}
    if run_id:
        meta[RUN_ID_KEY] = run_id
    if extra:
        meta.update({f"cdp.{k}": v for k, v in extra.items()})
    return meta


def cdp_commit_info(info: Mapping[str, Any]) -> dict[str, Any]:
    """The 'cdp.*' keys of a commitInfo dict, from custom keys or JSON ``userMetadata``."""
    out = {k: v for k, v in info.items() if isinstance(k, str) and k.startswith("cdp.")}
    user_meta = info.get("userMetadata")
    if isinstance(user_meta, str) and user_meta.startswith("{"):
        try:
            parsed = json.loads(user_meta)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            out.update({k: v for k, v in parsed.items() if str(k).startswith("cdp.")})
    return out


def run_id_from_commit(info: Mapping[str, Any]) -> str | None:
    """The run id from a commitInfo dict, whichever backend wrote it."""
    if info.get(RUN_ID_KEY):
        return str(info[RUN_ID_KEY])
    user_meta = info.get("userMetadata")
    if isinstance(user_meta, str) and user_meta.startswith("{"):
        try:
            parsed = json.loads(user_meta)
        except json.JSONDecodeError:
            return None
        if isinstance(parsed, dict) and parsed.get(RUN_ID_KEY):
            return str(parsed[RUN_ID_KEY])
    return None


def history_entry(
    info: Mapping[str, Any], *, version: int, timestamp: datetime | None, operation: str
) -> HistoryEntry:
    """A :class:`HistoryEntry` from a commitInfo dict; the backends differ only in how they
    read the version, timestamp and operation, so those are passed in."""
    return HistoryEntry(
        version=version,
        timestamp=timestamp,
        operation=operation,
        run_id=run_id_from_commit(info),
        parameters=dict(info.get("operationParameters") or {}),
        metrics=dict(info.get("operationMetrics") or {}),
        info=cdp_commit_info(info),
    )


class TableStore(ABC):
    """Read and write Delta tables by name under one root directory."""

    backend_name: str = "abstract"

    def __init__(self, spark: SparkSession, root: str, *, commit_retries: int = 5) -> None:
        self.spark = spark
        self.root = root.rstrip("/")
        self.commit_retries = commit_retries
        self.run_id: str | None = None

    # Naming ------------------------------------------------------------------------------
    def table_uri(self, name: str) -> str:
        clean = name.strip("/")
        if not clean or ".." in clean.split("/"):
            raise StorageError(f"invalid table name {name!r}")
        return f"{self.root}/{clean}"

    def set_run_id(self, run_id: str | None) -> None:
        """Every later commit carries this run id in its commit metadata."""
        self.run_id = run_id

    # Reading -----------------------------------------------------------------------------
    @abstractmethod
    def exists(self, name: str) -> bool: ...

    @abstractmethod
    def read(
        self, name: str, *, version: int | None = None, timestamp: datetime | str | None = None
    ) -> DataFrame:
        """The table at its current version, or at ``version`` / ``timestamp`` (time travel)."""

    @abstractmethod
    def version(self, name: str) -> int | None:
        """Current version, or None when the table does not exist."""

    @abstractmethod
    def schema(self, name: str) -> StructType: ...

    @abstractmethod
    def history(self, name: str, limit: int | None = None) -> list[HistoryEntry]:
        """Newest first."""

    @abstractmethod
    def info(self, name: str) -> TableInfo: ...

    def list_tables(self) -> list[str]:
        """Every Delta table under the root (a directory holding ``_delta_log``), by name."""
        import os

        found: list[str] = []
        if not os.path.isdir(self.root):
            return found
        for dirpath, dirnames, _files in os.walk(self.root):
            if "_delta_log" in dirnames:
                found.append(os.path.relpath(dirpath, self.root).replace(os.sep, "/"))
                dirnames[:] = []  # a table holds no other tables
                continue
            dirnames[:] = sorted(
                d
                for d in dirnames
                if not d.startswith(".") and d not in ("_staging", "_checkpoints")
            )
        return sorted(found)

    # Writing -----------------------------------------------------------------------------
    @abstractmethod
    def append(
        self,
        name: str,
        df: DataFrame,
        *,
        partition_by: Sequence[str] | None = None,
        merge_schema: bool = True,
        commit_info: Mapping[str, Any] | None = None,
    ) -> CommitResult:
        """Add the rows of ``df``. New columns evolve the schema when ``merge_schema``.

        ``commit_info`` is stored in the commit as ``cdp.<key>`` (see :attr:`HistoryEntry.info`),
        which lets a writer find out after a crash what it had already committed.
        """

    def append_rows(
        self,
        name: str,
        rows: Sequence[Sequence[Any] | Mapping[str, Any]],
        schema: StructType,
        *,
        commit_info: Mapping[str, Any] | None = None,
    ) -> CommitResult:
        """Append a few rows held by the driver (run log, file register, progress marks).

        Same result as :meth:`append`; a backend may write such rows without a Spark job.
        """
        return self.append(
            name, self.spark.createDataFrame(list(rows), schema), commit_info=commit_info
        )

    @abstractmethod
    def overwrite(
        self,
        name: str,
        df: DataFrame,
        *,
        partition_by: Sequence[str] | None = None,
        replace_partitions: bool = False,
        merge_schema: bool = True,
    ) -> CommitResult:
        """Replace the table's rows with ``df``; with ``replace_partitions``, only the
        partitions that ``df`` has rows for (dynamic partition overwrite)."""

    @abstractmethod
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
        """Upsert ``source`` into the table on equality of ``keys``.

        Matched rows: deleted when ``delete_condition`` holds; else updated when ``update``
        (True: every source column; a mapping: column -> SQL expression) and
        ``update_condition`` holds (for example ``"s.updated_at >= t.updated_at"``, so late
        older data never overwrites newer). Unmatched source rows are inserted when ``insert``
        and ``insert_condition`` holds. Several source rows for one key are an error;
        ``source_keys_unique=True`` says the caller guarantees one row per key (for example
        the newest row per key from a ranking window) and skips that check, which costs a
        shuffle of the whole source. A missing table is created from the inserted rows.
        """

    @abstractmethod
    def replace_where(
        self, name: str, df: DataFrame, predicate: str, *, merge_schema: bool = True
    ) -> CommitResult:
        """Replace the rows matching the Spark SQL ``predicate`` with ``df``, in ONE commit
        (Delta's ``replaceWhere``): a reader sees the old slice or the new one, never neither.
        Every row of ``df`` must match ``predicate``, else nothing is committed and
        :class:`StorageError` is raised. A missing table is created from ``df``."""

    @abstractmethod
    def delete(self, name: str, predicate: str) -> CommitResult:
        """Delete the rows for which the Spark SQL ``predicate`` is true."""

    @abstractmethod
    def vacuum(
        self,
        name: str,
        *,
        retention_hours: float | None = None,
        dry_run: bool = False,
        force: bool = False,
    ) -> list[str]:
        """Delete files no longer referenced (and older than the retention); return them.

        A retention below :data:`VACUUM_RETENTION_FLOOR_HOURS` is refused unless ``force``
        (the privacy erasure, which must remove the replaced files now); and vacuum never runs
        while another run holds the data root's lock (see :meth:`_vacuum_hours`)."""

    def _vacuum_hours(
        self, name: str, retention_hours: float | None, *, dry_run: bool, force: bool
    ) -> float:
        """The retention to vacuum ``name`` with, after the checks every backend shares.

        Why a floor: a file replaced a minute ago may still be read by a running job (a
        snapshot taken before the replacement) or be the newest file of a write about to
        commit; deleting it fails that job or loses that write. Why the lock: a run in
        progress writes files its commit has not referenced yet. A lease this process holds
        (the stage calling vacuum) is no obstacle, so the privacy stage does not wait for
        itself.
        """
        from cdp.lock import LockHeld, check_free

        hours = VACUUM_RETENTION_FLOOR_HOURS if retention_hours is None else retention_hours
        if hours < VACUUM_RETENTION_FLOOR_HOURS and not force:
            raise StorageError(
                f"vacuum of '{name}' with a retention of {hours:g} h refused: below the floor "
                f"of {VACUUM_RETENTION_FLOOR_HOURS:g} h, files that running readers or an "
                "uncommitted write still need could be deleted (force=True overrides it)"
            )
        if not dry_run:
            try:
                check_free(self.root)
            except LockHeld as exc:
                raise StorageError(f"vacuum of '{name}' refused: {exc}") from exc
        return hours

    def truncate_history(self, name: str, *, keep_from: int | None = None) -> str:
        """Checkpoint at the current version and remove the log entries of earlier versions
        (those below ``keep_from`` when given); ``done``, ``partial: ...`` or ``skipped: ...``.

        Time travel to before the cut ends, which is the point after an erasure: old commits'
        ``add`` actions carry per-file min/max statistics of text columns (a person's e-mail).
        A backend that cannot do it says so, and the table's log retention applies instead.
        """
        return "skipped: backend has no log truncation"

    @abstractmethod
    def optimize(self, name: str, *, target_size_mb: int | None = None) -> dict[str, Any]:
        """Compact small files; the data does not change."""
