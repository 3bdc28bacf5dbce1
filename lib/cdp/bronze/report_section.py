"""Bronze's parts of the run report: what ingest read, landed and quarantined per source, and
the bronze quarantine by reason."""

from __future__ import annotations

from cdp import tables as T
from cdp.bronze.tables import QUARANTINE_TABLE
from cdp.report_page import Section, bar_chart
from cdp.report_runs import Runs, group_counts
from cdp.storage import TableStore


def add_ingest_sources(sec: Section, runs: Runs) -> None:
    """Rows read, landed and quarantined per source by the latest ingest run, and a chart."""
    ingest = runs.get("ingest")
    if ingest is None:
        return
    run = ingest[0]
    sources = sorted({k.split("/", 1)[1] for k in [*run.rows_read, *run.rows_written] if "/" in k})
    per_source = [
        (
            s,
            run.rows_read.get(f"landing/{s}", 0),
            run.rows_written.get(T.BRONZE_SOURCE.named(source=s), 0),
            run.rows_quarantined.get(T.BRONZE_SOURCE.named(source=s), 0),
        )
        for s in sources
    ]
    sec.table(
        ["source", "rows read", "rows to bronze", "quarantined"],
        per_source,
        caption=f"Ingest run {run.run_id}",
    )
    if per_source:
        sec.charts.append(
            bar_chart(
                "Rows landed in bronze per source",
                [r[0] for r in per_source],
                [float(r[2]) for r in per_source],
                xlabel="rows",
            )
        )


def add_bronze_quarantine(sec: Section, store: TableStore) -> None:
    """Bronze quarantine rows by source and reason, over all runs."""
    if store.exists(QUARANTINE_TABLE):
        sec.table(
            ["source", "reason", "rows"],
            group_counts(store.read(QUARANTINE_TABLE), "_source", "reason"),
            caption="Bronze quarantine by reason (all runs)",
        )
