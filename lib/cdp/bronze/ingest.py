"""Bronze: land every declared source, incrementally and exactly once, into Delta tables.

For each source, one run:

1. lists the files matching its glob (through Hadoop's FileSystem, so local paths and object
   stores work alike) and keeps those whose identity ``(path, size, modification time)`` is
   not yet in ``ops/ingested_files``;
   not yet in ``ops/ingested_files``, leaving files still being delivered (too young, or in
   a folder without the source's completion marker) for a later run;
2. reads them with the declared format and options, keeping every source column (CSV as
   strings, self-describing formats in their native types, names made safe for Delta) and
   adding lineage columns;
3. sends records the reader cannot parse, and records over the size cap, to
   ``bronze/_quarantine`` with the raw text and a reason, and everything else to
   ``bronze/<source>``;
4. records the files in ``ops/ingested_files``.

Per-file isolation: a file that cannot be read (truncated gzip, corrupt Parquet footer,
unreadable header) or is over ``ingest.max_file_mb`` or ``ingest.max_columns`` gets one quarantine row with its path,
size and a redacted reason; the rest of its source and every other source land, and the run
ends ``partial``. The batch is read as a whole first; only when that fails is each file
read on its own to find the broken ones, so a clean batch costs nothing extra.

Exactly once: each bronze and quarantine commit carries the identities of the files it holds.
After a crash, a rerun asks each table's recent commit history which files it already holds
and writes only what is missing, so every record lands once whichever commit the crash hit.

Modules: :mod:`~cdp.bronze.ledger` (files and what is held), :mod:`~cdp.bronze.readers`,
:mod:`~cdp.bronze.lineage`, :mod:`~cdp.bronze.transform` (schema drift, quarantine split),
:mod:`~cdp.bronze.validate`, :mod:`~cdp.bronze.landing`, :mod:`~cdp.bronze.stream`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timezone

from cdp import faults
from cdp.bronze.landing import SourceOutcome, land_frames
from cdp.bronze.ledger import (
    LandedFile,
    already_committed,
    files_not_ready,
    known_files,
    list_landed_files,
)
from cdp.bronze.readers import (
    case_sensitive,
    one_file_per_partition,
    read_source_files,
    unreadable_reason,
)
from cdp.bronze.stream import ingest_source_stream
from cdp.bronze.tables import QUARANTINE_TABLE
from cdp.bronze.validate import validate_source
from cdp.config import ConfigError
from cdp.sources import SourceSpec, load_sources
from cdp.stage import StageContext


def find_unreadable(
    ctx: StageContext, spec: SourceSpec, files: Sequence[LandedFile]
) -> list[tuple[LandedFile, str]]:
    """Read each of ``files`` on its own, every column of every record, and return those that
    fail with the reason. Only called after a batch failed: this reads everything again."""
    bad: list[tuple[LandedFile, str]] = []
    for f in files:
        try:
            got = read_source_files(ctx.spark, spec, [f], max_columns=ctx.config.ingest.max_columns)
            bad += got.unreadable
            with case_sensitive(ctx.spark, got.case_collision):
                for frame in got.frames:
                    frame.write.format("noop").mode("overwrite").save()
        except Exception as exc:
            bad.append((f, unreadable_reason(f"{spec.format.value} file", exc)))
    return bad


def _land(
    ctx: StageContext,
    spec: SourceSpec,
    outcome: SourceOutcome,
    pending: list[LandedFile],
    changed_uris: list[str],
    set_aside: list[tuple[LandedFile, str]],
    ingested_at: datetime,
) -> None:
    """Read and land ``pending``; the files in ``set_aside`` get one quarantine row each."""
    store = ctx.store
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
    aside = {f for f, _ in set_aside}
    got = read_source_files(
        ctx.spark,
        spec,
        [f for f in to_read if f not in aside],
        max_columns=ctx.config.ingest.max_columns,
    )
    unreadable = [(f, r) for f, r in set_aside if f in set(to_read)] + got.unreadable
    commit_info = {"column_names": got.renamed} if got.renamed else None
    if got.renamed:
        ctx.progress(f"{spec.name}: {len(got.renamed)} column name(s) made safe for Delta")
    with case_sensitive(ctx.spark, got.case_collision):
        outcome.rows_landed, outcome.rows_quarantined = land_frames(
            ctx,
            spec,
            frames=got.frames,
            unreadable=unreadable,
            files=pending,
            for_bronze=for_bronze,
            for_quarantine=for_quarantine,
            changed_uris=changed_uris,
            ingested_at=ingested_at,
            commit_info=commit_info,
        )
    outcome.files_quarantined = len(unreadable)


def ingest_source(ctx: StageContext, spec: SourceSpec, *, ingested_at: datetime) -> SourceOutcome:
    """Land the new and changed files of one source (batch)."""
    spark, store, cfg = ctx.spark, ctx.store, ctx.config.ingest
    outcome = SourceOutcome(source=spec.name)
    found = list_landed_files(spark, spec.glob_for(ctx.config.landing_uri))
    waiting = set(
        files_not_ready(
            spark,
            found,
            min_age_s=cfg.min_file_age_seconds,
            marker=spec.completion_marker,
            now_ms=int(time.time() * 1000),
        )
    )
    outcome.files_waiting = len(waiting)
    if waiting:
        ctx.progress(f"{spec.name}: {len(waiting)} file(s) still being delivered; next run")
    known = known_files(store, spec.name)
    pending = [f for f in found if f not in waiting and known.get(f.uri) != f.key]
    if cfg.max_files_per_run:
        pending = pending[: cfg.max_files_per_run]
    if not pending:
        ctx.progress(f"{spec.name}: no new files ({len(found)} known)")
        return outcome
    changed_uris = [f.uri for f in pending if f.uri in known]
    outcome.files_changed = len(changed_uris)
    outcome.files_new = len(pending) - len(changed_uris)
    cap = cfg.max_file_mb << 20
    too_big = [
        (f, f"file larger than ingest.max_file_mb ({cfg.max_file_mb:,} MB); not parsed")
        for f in pending
        if f.size > cap
    ]
    try:
        _land(ctx, spec, outcome, pending, changed_uris, too_big, ingested_at)
    except faults.InjectedFault:
        raise
    except Exception:
        # Something broke while the batch was read (a gzip stream ending early, a corrupt
        # Parquet page): find the files that cannot be read on their own and land the rest.
        # If every file reads on its own, the failure was not the files' and is raised.
        aside = {f for f, _ in too_big}
        broken = find_unreadable(ctx, spec, [f for f in pending if f not in aside])
        if not broken:
            raise
        ctx.log.warning(
            "%s: %d file(s) failed while read; quarantining them", spec.name, len(broken)
        )
        _land(ctx, spec, outcome, pending, changed_uris, too_big + broken, ingested_at)
    if outcome.files_quarantined:
        ctx.run.partial(
            f"{spec.name}: {outcome.files_quarantined} file(s) quarantined whole "
            "(unreadable or over the size cap; see bronze/_quarantine)"
        )
    ctx.progress(
        f"{spec.name}: {outcome.files_new} new and {outcome.files_changed} changed files -> "
        f"{outcome.rows_landed:,} rows landed, {outcome.rows_quarantined:,} quarantined"
        + (f" ({outcome.files_quarantined} whole files)" if outcome.files_quarantined else "")
    )
    return outcome


def run_ingest(ctx: StageContext) -> None:
    """The ``ingest`` stage: validate every declaration, then land each source."""
    sources = load_sources(ctx.config, only=ctx.config.ingest.sources)
    if not sources:
        raise ConfigError(
            f"no sources declared in {ctx.config.source_dirs_resolved() or 'sources_dirs (empty)'}"
            ": write one YAML file per source in a directory named by sources_dirs (`cdp init DIR`"
            " makes a site whose DIR/conf/sources/ is read), or run the demo's sources with"
            " --conf conf/demo.yaml"
        )
    for spec in sources:
        validate_source(
            ctx.spark, spec, ctx.config.landing_uri, max_columns=ctx.config.ingest.max_columns
        )
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
            totals.files_quarantined += out.files_quarantined
            totals.files_waiting += out.files_waiting
        ctx.run.metric("sources", len(sources))
        ctx.run.metric("files_new", totals.files_new)
        ctx.run.metric("files_changed", totals.files_changed)
        ctx.run.metric("files_quarantined", totals.files_quarantined)
        ctx.run.metric("files_waiting", totals.files_waiting)
        ctx.run.metric("mode", ctx.config.ingest.mode)
