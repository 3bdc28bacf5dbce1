"""Bronze ingestion as Spark Structured Streaming (``ingest.mode: stream``).

The file source tracks what it has read in a checkpoint under
``<data_root>/_checkpoints/ingest/<source>``; ``trigger(availableNow=True)`` processes what has
landed and stops, which suits scheduled runs. Each micro-batch goes through the same landing
step as batch ingestion (:func:`cdp.bronze.landing.land_frames`), so both modes give the same
tables, and both record files in ``ops/ingested_files``: files one mode landed are skipped by
the other.

A replayed micro-batch (a crash after a commit, before the checkpoint recorded the batch)
finds its files in the tables' commit history and lands nothing twice.

Limits of the streaming file source, by design of Spark: the schema is fixed when the query
starts (taken from the files present then), a file that changes after it was read is not read
again, and a file that cannot be read at all fails the query (batch mode quarantines it).
The record size cap applies (landing is shared); the file size cap, the minimum file age and
completion markers are batch-mode checks.
"""

from __future__ import annotations

from datetime import datetime, timezone

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from cdp.bronze.landing import SourceOutcome, land_frames
from cdp.bronze.ledger import LandedFile, already_committed, known_files, list_landed_files
from cdp.bronze.lineage import CORRUPT, with_file_columns, with_row_number
from cdp.bronze.readers import csv_header, source_reader, spark_format
from cdp.bronze.tables import QUARANTINE_TABLE
from cdp.sources import SourceFormat, SourceSpec
from cdp.stage import StageContext


def stream_schema(
    ctx: StageContext, spec: SourceSpec, files: list[LandedFile]
) -> StructType | None:
    """The schema the stream reads with: what the files present now have (None: no files)."""
    readable = [f for f in files if f.size > 0]
    if not readable:
        return None
    if spec.format is SourceFormat.CSV:
        for f in readable:
            header = csv_header(ctx.spark, spec, f)
            if header:
                return StructType(
                    [StructField(c, StringType()) for c in header]
                    + [StructField(CORRUPT, StringType())]
                )
        return None
    inferred = source_reader(ctx.spark, spec).load([f.read_path for f in readable]).schema
    if spark_format(spec.format) in ("json", "xml") and CORRUPT not in inferred.fieldNames():
        inferred = StructType([*inferred.fields, StructField(CORRUPT, StringType())])
    return inferred


def ingest_source_stream(
    ctx: StageContext, spec: SourceSpec, *, ingested_at: datetime
) -> SourceOutcome:
    """Land one source with an availableNow streaming query."""
    outcome = SourceOutcome(source=spec.name)
    pattern = spec.glob_for(ctx.config.landing_uri)
    schema = stream_schema(ctx, spec, list_landed_files(ctx.spark, pattern))
    if schema is None:
        ctx.progress(f"{spec.name}: no files to stream yet")
        return outcome
    fmt = spark_format(spec.format)
    reader = ctx.spark.readStream.format(fmt).options(**spec.options).schema(schema)
    if fmt in ("csv", "json", "xml"):
        reader = reader.option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT)
    if ctx.config.ingest.max_files_per_run:
        reader = reader.option("maxFilesPerTrigger", ctx.config.ingest.max_files_per_run)
    stream = with_file_columns(reader.load(pattern))
    checkpoint = f"{ctx.config.checkpoint_dir}/ingest/{spec.name}"

    def process(batch: DataFrame, batch_id: int) -> None:
        numbered = with_row_number(batch)
        seen = numbered.select("_file_path", "_file_size", "_file_modified_at").distinct().collect()
        files = sorted(
            LandedFile(
                uri=r._file_path,
                size=int(r._file_size),
                modified_ms=int(
                    r._file_modified_at.replace(tzinfo=timezone.utc).timestamp() * 1000
                ),
            )
            for r in seen
        )
        known = known_files(ctx.store, spec.name)
        fresh = [f for f in files if known.get(f.uri) != f.key]
        if not fresh:
            return
        in_bronze = already_committed(ctx.store, spec.table, spec.name)
        in_quarantine = already_committed(ctx.store, QUARANTINE_TABLE, spec.name)
        landed, quarantined = land_frames(
            ctx,
            spec,
            frames=[numbered.where(F.col("_file_path").isin([f.uri for f in fresh]))],
            unreadable=[],
            files=fresh,
            for_bronze=[f for f in fresh if f.key not in in_bronze],
            for_quarantine=[f for f in fresh if f.key not in in_quarantine],
            changed_uris=[],
            ingested_at=ingested_at,
            commit_info={"stream_batch": batch_id},
        )
        outcome.files_new += len(fresh)
        outcome.rows_landed += landed
        outcome.rows_quarantined += quarantined

    query = (
        stream.writeStream.foreachBatch(process)
        .option("checkpointLocation", checkpoint)
        .trigger(availableNow=True)
        .queryName(f"ingest_{spec.name}")
        .start()
    )
    query.awaitTermination()
    ctx.progress(
        f"{spec.name}: streamed {outcome.files_new} files -> {outcome.rows_landed:,} rows landed, "
        f"{outcome.rows_quarantined:,} quarantined (checkpoint {checkpoint})"
    )
    return outcome
