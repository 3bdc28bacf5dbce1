"""Table housekeeping: compact small files, then vacuum files no table version needs."""

from __future__ import annotations

from cdp.stage import StageContext


def run_maintenance(ctx: StageContext) -> None:
    """Optimize and vacuum every Delta table under the data root."""
    retention = ctx.config.storage.vacuum_retention_hours
    tables = ctx.store.list_tables()
    ctx.progress(f"{len(tables)} tables; vacuum retention {retention:g} h")
    removed_total = 0
    for name in tables:
        result = ctx.store.optimize(name)
        removed = ctx.store.vacuum(name, retention_hours=retention)
        removed_total += len(removed)
        ctx.run.metric(f"{name}.files_compacted", result.get("numFilesRemoved", 0))
        ctx.run.metric(f"{name}.files_vacuumed", len(removed))
        ctx.progress(
            f"{name}: compacted {result.get('numFilesRemoved', 0)} files, vacuumed {len(removed)}"
        )
    ctx.run.metric("tables", len(tables))
    ctx.run.metric("files_vacuumed", removed_total)
