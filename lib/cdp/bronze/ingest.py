"""Bronze: land every declared source, incrementally and exactly once, into Delta tables.

For each source, one run:

1. lists the files matching its glob (through Hadoop's FileSystem, so local paths and object
   stores work alike) and keeps those whose identity ``(path, size, modification time)`` is
   not yet in ``ops/ingested_files``;
2. reads them with the declared format and options, keeping every source column (CSV as
   strings, self-describing formats in their native types) and adding lineage columns;
3. sends records the reader cannot parse to ``bronze/_quarantine`` with the raw text and a
   reason, and everything else to ``bronze/<source>``;
4. records the files in ``ops/ingested_files``.

Exactly once: each bronze and quarantine commit carries the identities of the files it holds.
After a crash, a rerun asks each table's recent commit history which files it already holds
and writes only what is missing, so every record lands once whichever commit the crash hit.

Modules: :mod:`~cdp.bronze.ledger` (files and what is held), :mod:`~cdp.bronze.readers`,
:mod:`~cdp.bronze.lineage`, :mod:`~cdp.bronze.transform` (schema drift, quarantine split),
:mod:`~cdp.bronze.validate`, :mod:`~cdp.bronze.landing`, :mod:`~cdp.bronze.stream`.
"""

from __future__ import annotations

from datetime import datetime, timezone

from cdp.bronze.landing import SourceOutcome, land_frames
from cdp.bronze.ledger import already_committed, known_files, list_landed_files
from cdp.bronze.readers import one_file_per_partition, read_source_files
from cdp.bronze.stream import ingest_source_stream
from cdp.bronze.tables import QUARANTINE_TABLE
from cdp.bronze.validate import validate_source
from cdp.config import ConfigError
from cdp.sources import SourceSpec, load_sources
from cdp.stage import StageContext


def ingest_source(ctx: StageContext, spec: SourceSpec, *, ingested_at: datetime) -> SourceOutcome:
    """Land the new and changed files of one source (batch)."""
    spark, store = ctx.spark, ctx.store
    outcome = SourceOutcome(source=spec.name)
    found = list_landed_files(spark, spec.glob_for(ctx.config.landing_uri))
    known = known_files(store, spec.name)
    pending = [f for f in found if known.get(f.uri) != f.key]
    limit = ctx.config.ingest.max_files_per_run
    if limit:
        pending = pending[:limit]
    if not pending:
        ctx.progress(f"{spec.name}: no new files ({len(found)} known)")
        return outcome
    changed_uris = [f.uri for f in pending if f.uri in known]
    outcome.files_changed = len(changed_uris)
    outcome.files_new = len(pending) - len(changed_uris)

    in_bronze = already_committed(store, spec.table, spec.name)
    in_quarantine = already_committed(store, QUARANTINE_TABLE, spec.name)
    for_bronze = [f for f in pending if f.key not in in_bronze]
    for_quarantine = [f for f in pending if f.key not in in_quarantine]
    to_read = sorted(set(for_bronze) | set(for_quarantine))
    if len(to_read) < len(pending):
        ctx.progress(
            f"{spec.name}: {len(pending) - len(to_read)} files were committed by an interrupted "
            "run; not landing them again"
        )
    frames, unreadable = read_source_files(spark, spec, to_read)
    outcome.rows_landed, outcome.rows_quarantined = land_frames(
        ctx,
        spec,
        frames=frames,
        unreadable=unreadable,
        files=pending,
        for_bronze=for_bronze,
        for_quarantine=for_quarantine,
        changed_uris=changed_uris,
        ingested_at=ingested_at,
    )
    ctx.progress(
        f"{spec.name}: {outcome.files_new} new and {outcome.files_changed} changed files -> "
        f"{outcome.rows_landed:,} rows landed, {outcome.rows_quarantined:,} quarantined"
    )
    return outcome


def run_ingest(ctx: StageContext) -> None:
    """The ``ingest`` stage: validate every declaration, then land each source."""
    sources = load_sources(ctx.config, only=ctx.config.ingest.sources)
    if not sources:
        raise ConfigError(
            f"no sources declared in {ctx.config.source_dirs_resolved()} (add conf/sources/*.yaml)"
        )
    for spec in sources:
        validate_source(ctx.spark, spec, ctx.config.landing_uri)
    ingested_at = datetime.now(timezone.utc)
    with one_file_per_partition(ctx.spark, split_mb=ctx.config.ingest.split_mb):
        totals = SourceOutcome(source="*")
        for spec in sources:
            if ctx.config.ingest.mode == "stream":
                out = ingest_source_stream(ctx, spec, ingested_at=ingested_at)
            else:
                out = ingest_source(ctx, spec, ingested_at=ingested_at)
            totals.rows_landed += out.rows_landed
            totals.rows_quarantined += out.rows_quarantined
            totals.files_new += out.files_new
            totals.files_changed += out.files_changed
        ctx.run.metric("sources", len(sources))
        ctx.run.metric("files_new", totals.files_new)
        ctx.run.metric("files_changed", totals.files_changed)
        ctx.run.metric("mode", ctx.config.ingest.mode)
