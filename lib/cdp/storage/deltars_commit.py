"""The commit protocol of the embedded (delta-rs) backend: staged files, one atomic commit.

Every write follows one protocol:

1. Spark writes the new files into ``<table>/_staging/<txn>/`` (a hidden directory that no
   Delta reader looks at), partitioned Hive-style.
2. The files are moved into the table directory under the same relative paths; their Parquet
   footers give row counts and column statistics.
3. One delta-rs commit adds them (and removes replaced files) atomically, with the run id in
   the commit metadata. Until that commit succeeds no reader sees any of it: a crash leaves
   the table at its previous version, and ``vacuum`` deletes the orphaned files.

Commits never let delta-rs rebase silently: a commit that loses the race for its version
raises :class:`CommitConflict`, and :meth:`DeltaRsCommits._retrying` runs the whole attempt
again. After ``commit_retries`` attempts, :class:`ConcurrentWriteError`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlparse

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import (
    AddAction,
    CommitProperties,
    RemoveAction,
    create_table_with_add_actions,
)
from pyspark.sql import DataFrame
from pyspark.sql.types import StructField, StructType

from cdp import faults
from cdp.storage.base import (
    ConcurrentWriteError,
    SchemaError,
    StorageError,
    _commit_metadata,
    widen_struct,
)
from cdp.storage.deltars_schema import (
    file_stats,
    partition_text,
    partition_values,
    to_delta_schema,
    to_spark_schema,
    types_equal,
)
from cdp.storage.deltars_snapshot import DeltaRsSnapshots

# The backend's logger name, kept from before the module split so log filters still match.
log = logging.getLogger("cdp.storage.deltars")

STAGING_DIR = "_staging"

R = TypeVar("R")
_txn_counter = 0
_txn_lock = threading.Lock()


def txn_id() -> str:
    """Unique name for a staging directory (a name, not a business identifier)."""
    global _txn_counter
    with _txn_lock:
        _txn_counter += 1
        n = _txn_counter
    return f"{time.time_ns()}-{os.getpid()}-{threading.get_ident()}-{n}"


class CommitConflict(Exception):
    """A commit lost the race for its version; the operation may be retried."""


class DeltaRsCommits(DeltaRsSnapshots):
    """Staging, adopting and committing data files; the table operations build on it."""

    # ------------------------------------------------------------------------------------
    # Files
    # ------------------------------------------------------------------------------------
    def _write_files(
        self, df: DataFrame, name: str, partition_by: Sequence[str], schema: StructType
    ) -> list[AddAction]:
        """Spark writes ``df``; the files move into the table; their add actions come back."""
        uri = self.table_uri(name)
        staging = os.path.join(uri, STAGING_DIR, txn_id())
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
                            partition_values(rel, partition_by),
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
                    {k: partition_text(v) for k, v in r["partition"].items()}
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
        """Add the incoming frame's new columns to the table (when allowed); return the schema.

        The column change is its own commit (delta-rs's ``create_write_transaction`` writes
        no metadata action), so it must not open a gap: it is committed on top of ``dt``'s
        version exactly (no rebase), and ``dt`` is left at the version it created, never
        the latest. The data commit that follows is then on top of that version or fails
        as a lost race (:class:`CommitConflict`): a commit landing between the two makes the
        whole attempt run again from the new version, so the removes and the merge's view of
        the table are never those of an older snapshot. Adding nullable columns alone is
        harmless when the data commit never follows (a crash, or retries exhausted).
        """
        current = to_spark_schema(dt.schema())
        known = {f.name: f for f in current.fields}
        new_fields = []
        for f in incoming.fields:
            if f.name not in known:
                new_fields.append(f)
            elif types_equal(known[f.name].dataType, f.dataType):
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
        read_version = dt.version()
        dt.alter.add_columns(
            list(delta_fields), commit_properties=self._props("ADD COLUMNS", read_version)
        )
        faults.checkpoint("storage.after_add_columns")
        if dt.version() != read_version + 1:
            raise CommitConflict(
                f"table '{name}': the column change landed at version {dt.version()}, "
                f"not {read_version + 1}"
            )
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
        with self._discard_unless_committed(name, adds):
            if len(removes) != len(touched_rel):
                raise StorageError(
                    f"{operation} on '{name}': could not match {len(touched_rel) - len(removes)} "
                    "rewritten files to the snapshot; nothing was committed"
                )
            if merge_schema is not None:
                schema = self._evolve(dt, name, schema, merge_schema=merge_schema)
            version = self._commit(dt, name, schema, [*removes, *adds], parts, operation, extra)
        return version, len(removes)

    @contextlib.contextmanager
    def _discard_unless_committed(self, name: str, adds: Sequence[AddAction]) -> Iterator[None]:
        """Around a commit of ``adds``: on any failure the new files are deleted (nobody
        references them), and a lost race becomes :class:`CommitConflict` so it is retried."""
        try:
            yield
        except CommitFailedError as exc:
            self._discard(name, adds)
            raise CommitConflict(str(exc)) from exc
        except BaseException:
            self._discard(name, adds)
            raise

    def _retrying(self, name: str, operation: str, attempt: Callable[[], R]) -> R:
        delay = 0.05
        for n in range(self.commit_retries + 1):
            try:
                return attempt()
            except CommitConflict as exc:
                if n >= self.commit_retries:
                    raise ConcurrentWriteError(
                        f"table '{name}': {operation} lost the commit race {n + 1} times "
                        f"to concurrent writers ({exc}); nothing of this write was committed"
                    ) from None
                log.info("table %s: %s conflicted (%s); retrying", name, operation, exc)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")
