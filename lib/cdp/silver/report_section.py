"""Silver's part of the run report: its quarantine by reason, the data-quality rule results
and the de-duplication and upsert outcomes of its latest run (by the metric names the silver
stage logs)."""

from __future__ import annotations

from pyspark.sql import functions as F

from cdp import tables as T
from cdp.report_page import Section, metric_table
from cdp.report_runs import Runs, group_counts
from cdp.silver.stage import DEDUP_OUTCOMES, RULE_METRIC_PREFIX
from cdp.storage import TableStore


def add_silver_quality(sec: Section, store: TableStore, runs: Runs) -> None:
    """Silver quarantine by reason (all runs); rule results and de-duplication of the latest
    silver run."""
    silver_q = T.SILVER_QUARANTINE.name
    if store.exists(silver_q):
        exploded = store.read(silver_q).select("table", F.explode_outer("reasons").alias("reason"))
        sec.table(
            ["table", "reason", "rows"],
            group_counts(exploded, "table", "reason"),
            caption="Silver quarantine by reason (all runs)",
        )
    silver = runs.get("silver")
    if silver is None:
        return
    run = silver[0]
    rows = []
    for key, value in metric_table(run.metrics, RULE_METRIC_PREFIX):
        table, _, rule = key.partition(".")
        rows.append((table, rule, int(value), int(value) == 0))
    sec.table(
        ["table", "rule", "rows failing", "passed"],
        rows,
        caption=f"Silver rule results, run {run.run_id} "
        f"({sum(run.rows_read.values()):,} bronze rows read)",
    )
    dedup = []
    for key, value in sorted(run.metrics.items()):
        table, _, outcome = key.partition(".")
        if outcome in DEDUP_OUTCOMES and value.isdigit():
            dedup.append((table, outcome, int(value)))
    sec.table(["table", "outcome", "rows"], dedup, caption="De-duplication and upsert")
