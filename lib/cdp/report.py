"""The run report: one self-contained HTML page about the latest run of every stage.

``cdp report`` gathers, from the tables and the run log under a data root:

* the latest run of each stage (status, duration, run id), failed runs after it flagged;
* rows per layer and table, and per source what ingest read, wrote and quarantined;
* quarantine reasons (bronze and silver) and the data-quality rule results of silver;
* identity: customers, records, links accepted and rejected, the cluster-size histogram,
  rejected links by rule and reason, and precision/recall when ground truth is at hand;
* models: holdout metrics beside the heuristic, the champion version, ROC and lift charts
  (the PNGs the train stage logged to MLflow);
* audiences (members, entered, exited) and exports (files, rows, manifest).

This module lays out the page; each stage's part comes from that stage's package
(``cdp.<stage>.report_section``), which reads the run-log metrics by the names its stage logs
them under. The page's pieces (:class:`Section`, :func:`render_page`) are in ``report_page``
and the run-log reading in ``report_runs``, below every stage, so no import circle forms.
Every figure is computed in Spark as a small aggregate; only those aggregates reach the driver.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from pyspark.sql import SparkSession

from cdp import __version__
from cdp import tables as T
from cdp.audiences.report_section import add_audiences
from cdp.bronze.report_section import add_bronze_quarantine, add_ingest_sources
from cdp.config import CdpConfig
from cdp.export.report_section import add_exports
from cdp.identity.report_section import identity_section
from cdp.models.report_section import models_section
from cdp.report_page import Section, render_page
from cdp.report_runs import Runs, latest_runs
from cdp.runlog import RUN_LOG_TABLE
from cdp.silver.report_section import add_silver_quality
from cdp.storage import TableStore, open_store

REPORT_FILE = "run-report.html"


def _stage_order() -> list[str]:
    from cdp.pipeline import STAGES

    return [s.name for s in STAGES]


def _runs_section(runs: Runs) -> Section:
    sec = Section("Latest runs")
    order = _stage_order()
    jobs = sorted(runs, key=lambda j: (order.index(j) if j in order else len(order), j))
    rows = []
    for job in jobs:
        run, failed_after = runs[job]
        status = run.status + (f" ({failed_after} failed since)" if failed_after else "")
        rows.append(
            (
                job,
                run.env,
                status,
                str(run.as_of) if run.as_of else None,
                run.started_at.isoformat(sep=" ", timespec="seconds") if run.started_at else None,
                run.duration_s,
                sum(run.rows_read.values()),
                sum(run.rows_written.values()),
                sum(run.rows_quarantined.values()),
                run.run_id,
            )
        )
    sec.table(
        [
            "stage",
            "env",
            "status",
            "as of",
            "started (UTC)",
            "seconds",
            "read",
            "written",
            "quarantined",
            "run id",
        ],
        rows,
    )
    failures = [
        (j, r.run_id, (r.error or "")[:300]) for j, (r, _) in runs.items() if r.status != "success"
    ]
    if failures:
        sec.table(["stage", "run id", "error"], failures, caption="Stages with no successful run")
    return sec


def _layers_section(store: TableStore, runs: Runs) -> Section:
    sec = Section("Rows per layer and source")
    tables = []
    for name in store.list_tables():
        info = store.info(name)
        tables.append((T.layer_of(name), name, info.num_rows, info.version, info.num_files))
    by_layer: dict[str, int] = {}
    for layer, _name, rows, _v, _f in tables:
        by_layer[layer] = by_layer.get(layer, 0) + (rows or 0)
    sec.table(["layer", "rows"], sorted(by_layer.items()))
    sec.table(["layer", "table", "rows", "version", "files"], tables, caption="Tables")
    add_ingest_sources(sec, runs)
    return sec


def _quality_section(store: TableStore, runs: Runs) -> Section:
    sec = Section("Quarantine and data quality")
    add_bronze_quarantine(sec, store)
    add_silver_quality(sec, store, runs)
    return sec


def _activation_section(store: TableStore, runs: Runs) -> Section:
    sec = Section("Audiences and exports")
    add_audiences(sec, store, runs)
    add_exports(sec, runs)
    if len(sec.parts) == 0:
        sec.text("No audiences or exports yet: run 'cdp run audiences export'.")
    return sec


def build_report(spark: SparkSession, config: CdpConfig, *, truth_path: str | None = None) -> str:
    """The run report of the data root in ``config``, as one HTML string."""
    store = open_store(spark, config)
    # A data root normally serves one environment; every run it logged counts, its env shown.
    runs = latest_runs(store.read(RUN_LOG_TABLE)) if store.exists(RUN_LOG_TABLE) else {}
    sections = [
        _runs_section(runs),
        _layers_section(store, runs),
        _quality_section(store, runs),
        identity_section(spark, store, config, runs, truth_path),
        models_section(config, runs),
        _activation_section(store, runs),
    ]
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    meta = [
        f"data root {config.data_root_uri} · environment {config.env} · cdp {__version__}",
        f"generated {now} · storage backend {store.backend_name}",
    ]
    return render_page(f"CDP run report ({config.env})", meta, sections)


def default_report_path(config: CdpConfig) -> Path:
    """``<data root>/reports/run-report.html`` for a local data root, else ``./run-report.html``."""
    root = config.data_root_uri
    if "://" in root and not root.startswith("file://"):
        return Path.cwd() / REPORT_FILE
    return Path(root.removeprefix("file://")) / "reports" / REPORT_FILE


def write_report(
    spark: SparkSession,
    config: CdpConfig,
    *,
    out: str | Path | None = None,
    truth_path: str | None = None,
) -> Path:
    """Build the report and write it to ``out`` (default :func:`default_report_path`)."""
    path = Path(out) if out else default_report_path(config)
    page = build_report(spark, config, truth_path=truth_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)  # a reader never sees half a page
    return path
