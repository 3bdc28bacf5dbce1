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
The size caps are batch mode's: a record over ``ingest.max_record_chars`` is quarantined
(landing is shared), and a file over ``ingest.max_file_mb`` gets one quarantine row with the
same reason as in batch mode and is never parsed: files found over the cap when the query
starts are quarantined (and ledgered) before it runs and left out of its schema inference,
and each micro-batch leaves out of its scan any file over the cap (one that arrived later).
The minimum file age and completion markers are batch-mode checks.
"""

from __future__ import annotations

from datetime import datetime, timezone

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from cdp.bronze.landing import SourceOutcome, land_frames
from cdp.bronze.ledger import LandedFile, already_committed, known_files, list_landed_files
from cdp.bronze.lineage import CORRUPT, with_file_columns, with_row_number
from cdp.bronze.readers import csv_header, source_reader, spark_format, wide_encoding_options
from cdp.bronze.tables import QUARANTINE_TABLE
from cdp.sources import SourceFormat, SourceSpec
from cdp.stage import StageContext


def too_big_reason(max_file_mb: int) -> str:
    """Batch mode's reason for a file over the size cap (cdp.bronze.ingest)."""
    return f"file larger than ingest.max_file_mb ({max_file_mb:,} MB); not parsed"


def stream_schema(
    ctx: StageContext, spec: SourceSpec, files: list[LandedFile]
) -> StructType | None:
    """The schema the stream reads with: what the files present now have (None: no files).
    Files over ``ingest.max_file_mb`` are not read for it."""
    cap = ctx.config.ingest.max_file_mb << 20
    readable = [f for f in files if 0 < f.size <= cap]
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
    listed = list_landed_files(ctx.spark, pattern)
    cap_mb = ctx.config.ingest.max_file_mb
    _quarantine_too_big(
        ctx, spec, [f for f in listed if f.size > cap_mb << 20], outcome, ingested_at
    )
    schema = stream_schema(ctx, spec, listed)
    sizes = {f.uri: f.size for f in listed}
    if schema is None:
        ctx.progress(f"{spec.name}: no files to stream yet")
        return outcome
    fmt = spark_format(spec.format)
    reader = (
        ctx.spark.readStream.format(fmt)
        .options(**spec.options)
        .options(**wide_encoding_options(spec))
        .schema(schema)
    )
    if fmt in ("csv", "json", "xml"):
        reader = reader.option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT)
    if ctx.config.ingest.max_files_per_run:
        reader = reader.option("maxFilesPerTrigger", ctx.config.ingest.max_files_per_run)
    stream = with_file_columns(reader.load(pattern))
    checkpoint = f"{ctx.config.checkpoint_dir}/ingest/{spec.name}"

    def process(batch: DataFrame, batch_id: int) -> None:
        numbered = with_row_number(batch)
        # Files over the cap that arrived after the query started: their rows are left out
        # of every scan here (the filter on the file path prunes them before parsing), and
        # the next run quarantines them before its query starts.
        big = [u for u in _input_files(batch) if sizes.get(u, _size_of(ctx, u)) > cap_mb << 20]
        if big:
            numbered = numbered.where(~F.col("_file_path").isin(big))
            ctx.progress(
                f"{spec.name}: {len(big)} file(s) over ingest.max_file_mb left for the next run"
            )
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


def _input_files(batch: DataFrame) -> list[str]:
    """The files of a micro-batch, from its plan (nothing is read); [] if Spark cannot say."""
    try:
        return list(batch.inputFiles())
    except Exception:
        return []


def _size_of(ctx: StageContext, uri: str) -> int:
    """The size of the file at ``uri`` (Hadoop's FileSystem); -1 when it is gone."""
    jvm: object = ctx.spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)  # type: ignore[attr-defined]
    fs = path.getFileSystem(ctx.spark.sparkContext._jsc.hadoopConfiguration())  # type: ignore[attr-defined]
    try:
        return int(fs.getFileStatus(path).getLen())
    except Exception:
        return -1


def _quarantine_too_big(
    ctx: StageContext,
    spec: SourceSpec,
    too_big: list[LandedFile],
    outcome: SourceOutcome,
    ingested_at: datetime,
) -> None:
    """One quarantine row and a ledger row per new file over ``ingest.max_file_mb``, as batch
    mode writes them; the stream then skips them as known files."""
    known = known_files(ctx.store, spec.name)
    fresh = [f for f in too_big if known.get(f.uri) != f.key]
    if not fresh:
        return
    in_quarantine = already_committed(ctx.store, QUARANTINE_TABLE, spec.name)
    reason = too_big_reason(ctx.config.ingest.max_file_mb)
    _landed, quarantined = land_frames(
        ctx,
        spec,
        frames=[],
        unreadable=[(f, reason) for f in fresh],
        files=fresh,
        for_bronze=[],
        for_quarantine=[f for f in fresh if f.key not in in_quarantine],
        changed_uris=[f.uri for f in fresh if f.uri in known],
        ingested_at=ingested_at,
    )
    outcome.files_new += len(fresh)
    outcome.files_quarantined += len(fresh)
    outcome.rows_quarantined += quarantined
    ctx.run.partial(
        f"{spec.name}: {len(fresh)} file(s) quarantined whole (over the size cap; see "
        "bronze/_quarantine)"
    )
