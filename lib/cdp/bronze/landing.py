"""Landing parsed frames: bronze rows, quarantine rows and the file ledger, in that order.

Batch and streaming ingestion both land through :func:`land_frames`, so both modes give the
same tables. Each bronze and quarantine commit carries the identities of the files it holds
(see :mod:`cdp.bronze.ledger`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from cdp import faults
from cdp.bronze.ledger import LandedFile
from cdp.bronze.tables import (
    INGESTED_FILES_SCHEMA,
    INGESTED_FILES_TABLE,
    QUARANTINE_SCHEMA,
    QUARANTINE_TABLE,
)
from cdp.bronze.transform import (
    REJECT,
    align_to_schema,
    mark_rejects,
    split_good_and_quarantined,
)
from cdp.privacy.suppression import apply_at_landing, apply_raw_at_landing
from cdp.sources import SourceSpec
from cdp.stage import StageContext
from cdp.storage import TableStore


@dataclass
class SourceOutcome:
    """What one run did for one source: batch and stream both return it; the stage sums them."""

    source: str
    files_new: int = 0
    files_changed: int = 0
    rows_landed: int = 0
    rows_quarantined: int = 0
    rows_already_present: int = 0
    # Files set aside whole (unreadable, over the size cap) and files left for a later run
    # (too young, or their folder has no completion marker yet).
    files_quarantined: int = 0
    files_waiting: int = 0


def _drop_rows_already_landed(
    store: TableStore, spec: SourceSpec, good: DataFrame, changed_uris: list[str]
) -> DataFrame:
    """For re-delivered (changed) files, land only rows not already in bronze for that path.

    A row's identity within a file is (record hash, occurrence of that hash), so exact
    duplicate rows inside a file are preserved while unchanged rows are not landed twice.
    """
    if not changed_uris or not store.exists(spec.table):
        return good
    from pyspark.sql import Window

    w = Window.partitionBy("_file_path", "_record_hash").orderBy("_file_offset", "_row_number")
    existing = (
        store.read(spec.table)
        .where(F.col("_file_path").isin(changed_uris))
        .select("_file_path", "_record_hash", F.row_number().over(w).alias("_occurrence"))
    )
    is_changed = F.col("_file_path").isin(changed_uris)
    fresh = (
        good.where(is_changed)
        .withColumn("_occurrence", F.row_number().over(w))
        .join(existing, ["_file_path", "_record_hash", "_occurrence"], "left_anti")
        .drop("_occurrence")
    )
    return good.where(~is_changed).unionByName(fresh)


def land_frames(
    ctx: StageContext,
    spec: SourceSpec,
    *,
    frames: Sequence[DataFrame],
    unreadable: Sequence[tuple[LandedFile, str]],
    files: Sequence[LandedFile],
    for_bronze: Sequence[LandedFile],
    for_quarantine: Sequence[LandedFile],
    changed_uris: Sequence[str],
    ingested_at: datetime,
    commit_info: dict[str, Any] | None = None,
) -> tuple[int, int]:
    """Write parsed frames to bronze and quarantine, then record ``files`` as ingested.

    Only rows of ``for_bronze`` files go to bronze and only rows of ``for_quarantine`` files
    to quarantine (after a crash one table may already hold a file). Returns
    (rows landed, rows quarantined).
    """
    spark, store, run_id = ctx.spark, ctx.store, ctx.run.run_id
    schema_so_far = store.schema(spec.table) if store.exists(spec.table) else None
    goods: list[DataFrame] = []
    bads: list[DataFrame] = []
    observations: list[Observation] = []
    for i, frame in enumerate(frames):
        aligned, schema_so_far = align_to_schema(frame, schema_so_far, mode=spec.schema_evolution)
        aligned = mark_rejects(
            aligned, fmt=spec.format, max_record_chars=ctx.config.ingest.max_record_chars
        )
        # Count rejected records while the bronze rows are written, so that a clean batch
        # (the usual case) is read once: the quarantine pass runs only where there is any.
        seen = Observation(f"malformed-{spec.name}-{i}-{id(frame)}")
        aligned = aligned.observe(seen, F.sum(F.col(REJECT).isNotNull().cast("int")).alias("bad"))
        observations.append(seen)
        good, bad = split_good_and_quarantined(
            aligned,
            source=spec.name,
            fmt=spec.format,
            run_id=run_id,
            ingested_at=ingested_at,
            raw_max_chars=ctx.config.ingest.quarantine_raw_max_chars,
        )
        goods.append(good)
        bads.append(bad)
    if unreadable:
        bads.append(_unreadable_rows(spark, spec, unreadable, run_id, ingested_at))
    landed = quarantined = 0
    extra = dict(commit_info or {})
    if goods and for_bronze:
        good_all = goods[0]
        for g in goods[1:]:
            good_all = good_all.unionByName(g, allowMissingColumns=True)
        good_all = good_all.where(F.col("_file_path").isin(sorted({f.uri for f in for_bronze})))
        good_all = _drop_rows_already_landed(store, spec, good_all, list(changed_uris))
        # Erasure holds: rows of suppressed people never reach bronze (cdp.privacy).
        good_all = apply_at_landing(ctx, spec, good_all)
        result = store.append(
            spec.table,
            good_all,
            commit_info={**extra, "source": spec.name, "files": [list(f.key) for f in for_bronze]},
        )
        landed = result.rows_written
        # The bronze write read every frame, so each observation is available now.
        keep = [i for i, o in enumerate(observations) if int(o.get.get("bad") or 0) > 0]
        bads = [bads[i] for i in keep] + bads[len(observations) :]
    faults.checkpoint("ingest.after_bronze_commit")
    if bads and for_quarantine:
        bad_all = bads[0]
        for b in bads[1:]:
            bad_all = bad_all.unionByName(b)
        bad_all = bad_all.where(F.col("_file_path").isin(sorted({f.uri for f in for_quarantine})))
        bad_all = apply_raw_at_landing(ctx, bad_all)
        result = store.append(
            QUARANTINE_TABLE,
            bad_all,
            commit_info={
                **extra,
                "source": spec.name,
                "files": [list(f.key) for f in for_quarantine],
            },
        )
        quarantined = result.rows_written
    faults.checkpoint("ingest.after_quarantine_commit")
    broken = {f for f, _ in unreadable}
    store.append_rows(
        INGESTED_FILES_TABLE,
        [
            (
                spec.name,
                f.uri,
                f.size,
                f.modified_ms,
                "empty" if f.size == 0 else ("unreadable" if f in broken else "ingested"),
                run_id,
                ingested_at,
            )
            for f in files
        ],
        INGESTED_FILES_SCHEMA,
    )
    ctx.run.read(f"landing/{spec.name}", landed + quarantined)
    ctx.run.wrote(spec.table, landed)
    ctx.run.quarantined(spec.table, quarantined)
    return landed, quarantined


def _unreadable_rows(
    spark: SparkSession,
    spec: SourceSpec,
    unreadable: Sequence[tuple[LandedFile, str]],
    run_id: str,
    ingested_at: datetime,
) -> DataFrame:
    """One quarantine row per file that could not be read at all."""
    return spark.createDataFrame(
        [
            (
                spec.name,
                f.uri,
                f.size,
                datetime.fromtimestamp(f.modified_ms / 1000, tz=timezone.utc),
                0,
                0,
                None,
                reason,
                None,
                run_id,
                ingested_at,
                None,
            )
            for f, reason in unreadable
        ],
        QUARANTINE_SCHEMA,
    )
