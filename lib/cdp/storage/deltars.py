"""Embedded Delta backend: Spark writes the Parquet data files, delta-rs commits them.

Why this split: Spark's writers are distributed and fast, and delta-rs (the ``deltalake``
package) implements the Delta transaction log without a JVM jar, which cannot be downloaded
everywhere. The backend is layered in four modules, each building on the one before:

- :mod:`cdp.storage.deltars_schema`: schema mapping, file statistics, partition values;
- :mod:`cdp.storage.deltars_snapshot`: snapshots, reads, time travel, unsupported features;
- :mod:`cdp.storage.deltars_commit`: the commit protocol (staged files, one atomic commit,
  retries when a concurrent writer wins the race);
- this module: the table operations (append, overwrite, merge, delete, replace_where, vacuum,
  optimize).

Blind appends are re-committed as they are after a lost race; operations that read the table
(overwrite, merge, delete) are recomputed from the new version, so a concurrent change is never
lost. MERGE and DELETE run in Spark as copy-on-write: only files that hold affected rows are
rewritten.

About 500 lines: the table operations of one backend, each a thin layer over the commit
and snapshot modules; split per operation family if it grows further.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError, DeltaError
from deltalake.transaction import AddAction
from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from cdp import faults
from cdp.storage._merge import (
    ACTION,
    merge_metrics_columns,
    merge_output_schema,
    plan_merge,
)
from cdp.storage.base import (
    CommitResult,
    SchemaError,
    StorageError,
)
from cdp.storage.deltars_commit import STAGING_DIR, CommitConflict, DeltaRsCommits, txn_id
from cdp.storage.deltars_schema import conform, to_spark_schema
from cdp.storage.deltars_snapshot import FILE_COL
from cdp.storage.merge_checks import checked_merge_source

# Delta log files of one version: its commit, checksum and (single or multi-part) checkpoint.
_LOG_FILE = re.compile(r"^(\d{20})\.(json|crc|checkpoint\.parquet|checkpoint\.\d+\.\d+\.parquet)$")


class DeltaRsStore(DeltaRsCommits):
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
        staging = os.path.join(uri, STAGING_DIR, txn_id())
        os.makedirs(staging, exist_ok=True)
        pq.write_table(table, os.path.join(staging, f"part-00000-{txn_id()}.snappy.parquet"))
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
                            raise CommitConflict(str(exc)) from exc
                        raise
                schema = self._evolve(current, name, df_schema, merge_schema=merge_schema)
                return self._commit(current, name, schema, list(adds), parts, "APPEND", commit_info)
            except CommitFailedError as exc:
                raise CommitConflict(str(exc)) from exc

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
            with self._discard_unless_committed(name, adds):
                if dt is None:
                    try:
                        version = self._create(name, df.schema, adds, parts, "OVERWRITE")
                    except DeltaError as exc:
                        raise CommitConflict(str(exc)) from exc
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
        with checked_merge_source(name, source, keys, source_keys_unique=source_keys_unique) as src:
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
        observation = Observation(f"merge-{txn_id()}")
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
            observation = Observation(f"delete-{txn_id()}")
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
            observation = Observation(f"replace-{txn_id()}")
            new_rows = df.observe(
                observation,
                F.count(F.lit(1)).alias("num_inserted"),
                F.sum(F.when(hit, 0).otherwise(1)).alias("outside"),
            )
            out = conform(new_rows, schema).unionByName(conform(kept, schema))
            adds = self._write_files(out, name, parts, schema)
            seen = {k: int(v or 0) for k, v in observation.get.items()}
            if seen["outside"]:
                self._discard(name, adds)
                raise StorageError(
                    f"table '{name}': {seen['outside']} new row(s) do not match the replace "
                    f"predicate {predicate!r}; nothing was committed"
                )
            if not touched_uris and not adds:
                # An empty slice replaced by nothing: no commit, like an empty append.
                return CommitResult(name, None, "WRITE", {"num_output_rows": 0, "num_files": 0})
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
        self,
        name: str,
        *,
        retention_hours: float | None = None,
        dry_run: bool = False,
        force: bool = False,
    ) -> list[str]:
        hours = self._vacuum_hours(name, retention_hours, dry_run=dry_run, force=force)
        dt = self._load(name)
        removed = dt.vacuum(
            retention_hours=int(hours),
            dry_run=dry_run,
            # Our floor (base._vacuum_hours) replaces delta-rs's table-property check.
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

    def truncate_history(self, name: str, *, keep_from: int | None = None) -> str:
        uri = self.table_uri(name)
        if "://" in uri and not uri.startswith("file://"):
            return "skipped: not a local table"
        dt = self._load(name)
        dt.create_checkpoint()
        current = int(dt.version())
        limit = current if keep_from is None else min(current, keep_from)
        log_dir = Path(uri.removeprefix("file://")) / "_delta_log"
        for path in log_dir.iterdir():
            m = _LOG_FILE.match(path.name)
            if m and int(m.group(1)) < limit:
                path.unlink()
        return "done" if limit == current else f"partial: kept from version {limit}"

    def optimize(self, name: str, *, target_size_mb: int | None = None) -> dict[str, Any]:
        dt = self._load(name)
        self._check_features(dt, name, for_write=True)
        size = (target_size_mb or self.target_file_size_mb) * 1024 * 1024
        result = dt.optimize.compact(
            target_size=size, commit_properties=self._props("OPTIMIZE", dt.version())
        )
        return dict(result)
