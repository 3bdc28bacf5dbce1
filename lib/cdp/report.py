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

Every figure is computed in Spark as a small aggregate; only those aggregates reach the
driver. Charts are PNGs embedded as data URIs, so the page opens anywhere without a network.
A script on the page marks, once loaded, how many charts the browser decoded
(``<body data-charts-rendered>``), which the browser test reads.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from cdp import __version__
from cdp import tables as T
from cdp.config import CdpConfig
from cdp.storage import TableStore, open_store

log = logging.getLogger("cdp.report")

REPORT_FILE = "run-report.html"


@dataclass(frozen=True)
class Chart:
    """A rendered figure: a title and PNG bytes."""

    title: str
    png: bytes


@dataclass
class Section:
    """One part of the page: a heading, HTML fragments and charts."""

    title: str
    parts: list[str] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)

    def table(
        self, headers: Sequence[str], rows: Iterable[Sequence[Any]], caption: str = ""
    ) -> None:
        self.parts.append(html_table(headers, rows, caption))

    def text(self, message: str) -> None:
        self.parts.append(f"<p>{html.escape(message)}</p>")


# ------------------------------------------------------------------------------------------
# Pure pieces (tested directly)
# ------------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return "<td class='none'>-</td>"
    if isinstance(value, bool):
        return f"<td>{'yes' if value else 'no'}</td>"
    if isinstance(value, int):
        return f"<td class='num'>{value:,}</td>"
    if isinstance(value, float):
        text = f"{value:,.4f}" if abs(value) < 100 else f"{value:,.1f}"
        return f"<td class='num'>{text}</td>"
    return f"<td>{html.escape(str(value))}</td>"


def html_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], caption: str = "") -> str:
    """An escaped HTML table; numbers right-aligned with thousands separators."""
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    if not body:
        body = f"<tr><td colspan='{len(headers)}' class='none'>none</td></tr>"
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def bar_chart(title: str, labels: Sequence[str], values: Sequence[float], *, xlabel: str) -> Chart:
    """A horizontal bar chart as PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, max(2.2, 0.32 * len(labels) + 1.2)))
    ax.barh(list(labels)[::-1], list(values)[::-1], color="#3b6ea8")
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    for i, v in enumerate(list(values)[::-1]):
        ax.annotate(f"{v:,.0f}", (v, i), xytext=(3, 0), textcoords="offset points", va="center")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return Chart(title, buf.getvalue())


def count_chart(title: str, counts: Mapping[str, int], *, xlabel: str) -> Chart:
    """:func:`bar_chart` of a label -> count mapping, in its order."""
    return bar_chart(title, list(counts), [float(v) for v in counts.values()], xlabel=xlabel)


def size_bucket_label(size: int, buckets: Sequence[tuple[int, int | None]]) -> str:
    """The bucket label (``"3-5"``, ``"101+"``) holding a cluster of ``size`` records."""
    for low, high in buckets:
        if size >= low and (high is None or size <= high):
            if high is None:
                return f"{low}+"
            return str(low) if low == high else f"{low}-{high}"
    return str(size)


def metric_table(metrics: Mapping[str, str], prefix: str) -> list[tuple[str, str]]:
    """``prefix.<name>`` metrics of a run-log row as sorted (name, value) pairs."""
    return sorted((k[len(prefix) :], v) for k, v in metrics.items() if k.startswith(prefix))


def _float(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


_PAGE_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1180px;
color:#1d2330;background:#fff}
h1{font-size:1.6em;margin-bottom:4px}h2{border-bottom:2px solid #3b6ea8;padding-bottom:3px;margin-top:34px}
.meta{color:#5b6474;font-size:.9em}
table{border-collapse:collapse;margin:10px 0 16px;font-size:.88em}
caption{text-align:left;font-weight:600;padding:4px 0}
th,td{border:1px solid #d5dae3;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef2f8}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.none{color:#8a93a3}.failed{color:#b3261e;font-weight:600}.ok{color:#1e7a34}
.charts{display:flex;flex-wrap:wrap;gap:14px}.charts figure{margin:0}
figcaption{font-size:.85em;color:#5b6474}img.chart{max-width:560px;border:1px solid #e3e7ee}
"""

_RENDER_CHECK = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.querySelectorAll('img.chart'));
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-charts-total', String(imgs.length));
  document.body.setAttribute('data-charts-rendered', String(ok));
});
"""


def render_page(title: str, meta: Sequence[str], sections: Sequence[Section]) -> str:
    """The whole page: inline CSS, tables, charts as data URIs, and the render check."""
    out = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_PAGE_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "".join(f"<div class='meta'>{html.escape(m)}</div>" for m in meta),
        "<nav><p>"
        + " · ".join(f"<a href='#s{i}'>{html.escape(s.title)}</a>" for i, s in enumerate(sections))
        + "</p></nav>",
    ]
    for i, section in enumerate(sections):
        out.append(f"<section id='s{i}'><h2>{html.escape(section.title)}</h2>")
        out.extend(section.parts)
        if section.charts:
            out.append("<div class='charts'>")
            for chart in section.charts:
                data = base64.b64encode(chart.png).decode("ascii")
                alt = html.escape(chart.title)
                out.append(
                    f"<figure><img class='chart' alt='{alt}' src='data:image/png;base64,{data}'>"
                    f"<figcaption>{alt}</figcaption></figure>"
                )
            out.append("</div>")
        out.append("</section>")
    out.append(f"<script>{_RENDER_CHECK}</script></body></html>")
    return "".join(out)


# ------------------------------------------------------------------------------------------
# Gathering (small aggregates from the tables)
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRow:
    job: str
    env: str
    status: str
    run_id: str
    started_at: datetime | None
    duration_s: float | None
    as_of: Any
    rows_read: dict[str, int]
    rows_written: dict[str, int]
    rows_quarantined: dict[str, int]
    metrics: dict[str, str]
    error: str | None


def latest_runs(run_log: DataFrame, env: str | None = None) -> dict[str, tuple[RunRow, int]]:
    """Per job: its latest successful run (else its latest run) and how many runs failed since.

    One row per job reaches the driver.
    """
    df = run_log if env is None else run_log.where(F.col("env") == env)
    by_job = Window.partitionBy("job")
    last_ok = F.max(F.when(F.col("status") == "success", F.col("started_at"))).over(by_job)
    ranked = (
        df.withColumn("_last_ok", last_ok)
        .withColumn(
            "_failed_after",
            F.sum(
                F.when(
                    (F.col("status") != "success")
                    & (F.col("_last_ok").isNull() | (F.col("started_at") > F.col("_last_ok"))),
                    1,
                ).otherwise(0)
            ).over(by_job),
        )
        .withColumn(
            "_rank",
            F.row_number().over(
                by_job.orderBy((F.col("status") == "success").desc(), F.col("started_at").desc())
            ),
        )
        .where(F.col("_rank") == 1)
    )
    out: dict[str, tuple[RunRow, int]] = {}
    for r in ranked.collect():
        out[r["job"]] = (
            RunRow(
                job=r["job"],
                env=r["env"],
                status=r["status"],
                run_id=r["run_id"],
                started_at=r["started_at"],
                duration_s=r["duration_s"],
                as_of=r["as_of"],
                rows_read=dict(r["rows_read"] or {}),
                rows_written=dict(r["rows_written"] or {}),
                rows_quarantined=dict(r["rows_quarantined"] or {}),
                metrics=dict(r["metrics"] or {}),
                error=r["error"],
            ),
            int(r["_failed_after"] or 0),
        )
    return out


def cluster_size_histogram(identity_map: DataFrame) -> list[tuple[int, int]]:
    """(records per customer, customers) pairs, sorted by size (the notebooks' aggregate)."""
    from cdp.notebook import cluster_size_histogram as histogram

    return [(int(r["records"]), int(r["customers"])) for r in histogram(identity_map).collect()]


def _counts(df: DataFrame, *cols: str, sum_col: str | None = None) -> list[tuple[Any, ...]]:
    agg = F.sum(sum_col) if sum_col else F.count(F.lit(1))
    rows = df.groupBy(*cols).agg(agg.alias("n")).orderBy(F.desc("n"), *cols).limit(200)
    return [tuple(r) for r in rows.collect()]


# ------------------------------------------------------------------------------------------
# Sections
# ------------------------------------------------------------------------------------------


def _stage_order() -> list[str]:
    from cdp.pipeline import STAGES

    return [s.name for s in STAGES]


def _runs_section(runs: Mapping[str, tuple[RunRow, int]]) -> Section:
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


def _layers_section(store: TableStore, runs: Mapping[str, tuple[RunRow, int]]) -> Section:
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
    ingest = runs.get("ingest")
    if ingest is not None:
        run = ingest[0]
        sources = sorted(
            {k.split("/", 1)[1] for k in [*run.rows_read, *run.rows_written] if "/" in k}
        )
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
    return sec


def _quality_section(store: TableStore, runs: Mapping[str, tuple[RunRow, int]]) -> Section:
    sec = Section("Quarantine and data quality")
    if store.exists(T.BRONZE_QUARANTINE.name):
        sec.table(
            ["source", "reason", "rows"],
            _counts(store.read(T.BRONZE_QUARANTINE.name), "_source", "reason"),
            caption="Bronze quarantine by reason (all runs)",
        )
    silver_q = T.SILVER_QUARANTINE.name
    if store.exists(silver_q):
        exploded = store.read(silver_q).select("table", F.explode_outer("reasons").alias("reason"))
        sec.table(
            ["table", "reason", "rows"],
            _counts(exploded, "table", "reason"),
            caption="Silver quarantine by reason (all runs)",
        )
    silver = runs.get("silver")
    if silver is not None:
        run = silver[0]
        rules = metric_table(run.metrics, "rule.")
        rows = []
        for key, value in rules:
            table, _, rule = key.partition(".")
            rows.append((table, rule, int(value), int(value) == 0))
        sec.table(
            ["table", "rule", "rows failing", "passed"],
            rows,
            caption=f"Silver rule results, run {run.run_id} "
            f"({sum(run.rows_read.values()):,} bronze rows read)",
        )
        dedup = [
            (k.split(".", 1)[0], k.split(".", 1)[1], int(v))
            for k, v in sorted(run.metrics.items())
            if not k.startswith("rule.") and "." in k and v.isdigit()
        ]
        sec.table(["table", "outcome", "rows"], dedup, caption="De-duplication and upsert")
    return sec


def _identity_section(
    spark: SparkSession,
    store: TableStore,
    config: CdpConfig,
    runs: Mapping[str, tuple[RunRow, int]],
    truth_path: str | None,
) -> Section:
    from cdp.identity.evaluate import SIZE_BUCKETS, evaluate_identity, load_truth

    map_table, rejected_table = T.IDENTITY_MAP.name, T.IDENTITY_REJECTED_LINKS.name

    sec = Section("Identity resolution")
    if not store.exists(map_table):
        sec.text("No identity map yet: run 'cdp run identity'.")
        return sec
    run = runs.get("identity")
    if run is not None:
        m = run[0].metrics
        sec.table(
            ["measure", "value"],
            [(k, int(v) if v.isdigit() else v) for k, v in sorted(m.items())],
            caption=f"Identity run {run[0].run_id}",
        )
    hist = cluster_size_histogram(store.read(map_table))
    buckets: dict[str, int] = {}
    for size, customers in hist:
        label = size_bucket_label(size, SIZE_BUCKETS)
        buckets[label] = buckets.get(label, 0) + customers
    sec.table(["records per customer", "customers"], list(buckets.items()), caption="Cluster sizes")
    sec.charts.append(
        count_chart("Cluster-size histogram (records per customer)", buckets, xlabel="customers")
    )
    if store.exists(rejected_table):
        rejected = store.read(rejected_table)
        if run is not None:
            rejected = rejected.where(F.col("run_id") == run[0].run_id)
        by_reason = _counts(rejected, "rule", "reason")
        sec.table(["rule", "reason", "rejected values"], by_reason, caption="Rejected links")
        reasons: dict[str, int] = {}
        for _rule, reason, n in by_reason:
            reasons[reason] = reasons.get(reason, 0) + int(n)
        if reasons:
            sec.charts.append(
                count_chart(
                    "Rejected links by reason", reasons, xlabel="rejected identifier values"
                )
            )
    truth = truth_path or str(Path(config.landing_uri) / "_ground_truth" / "identity")
    if "://" not in truth and Path(truth).exists():
        metrics = evaluate_identity(
            spark, identity_map=store.read(map_table), truth=load_truth(spark, truth)
        )
        rows = []
        for name, s in (("all records", metrics.all_records), ("linkable", metrics.linkable)):
            if s is not None:
                rows.append(
                    (
                        name,
                        s.records,
                        s.precision,
                        s.recall,
                        s.f1,
                        s.over_merged_clusters,
                        s.split_entities,
                    )
                )
        sec.table(
            [
                "records",
                "count",
                "precision",
                "recall",
                "F1",
                "over-merged clusters",
                "split entities",
            ],
            rows,
            caption=f"Pairwise quality against ground truth ({truth})",
        )
    return sec


def _mlflow_charts(tracking_uri: str, run_id: str, names: Sequence[str]) -> list[Chart]:
    import mlflow

    out: list[Chart] = []
    with tempfile.TemporaryDirectory(prefix="cdp-report-") as tmp:
        for name in names:
            try:
                local = mlflow.artifacts.download_artifacts(
                    run_id=run_id,
                    artifact_path=f"charts/{name}.png",
                    dst_path=tmp,
                    tracking_uri=tracking_uri,
                )
            except Exception as exc:  # a run logged without charts still gets its metrics
                log.warning("no chart %s for MLflow run %s: %s", name, run_id, exc)
                continue
            out.append(Chart(f"{name} ({run_id[:8]})", Path(local).read_bytes()))
    return out


def _models_section(config: CdpConfig, runs: Mapping[str, tuple[RunRow, int]]) -> Section:
    sec = Section("Propensity models")
    train = runs.get("train")
    if train is None or train[0].status != "success":
        sec.text("No successful training run yet: run 'cdp run train'.")
        return sec
    m = train[0].metrics
    models = sorted({k.split(".", 1)[0] for k in m if k.endswith(".holdout_roc_auc")})
    measures = ("roc_auc", "pr_auc", "log_loss", "top_decile_lift")
    rows = []
    for model in models:
        for measure in measures:
            model_v = _float(m.get(f"{model}.holdout_{measure}"))
            heur_v = _float(m.get(f"{model}.heuristic_holdout_{measure}"))
            if model_v is not None or heur_v is not None:
                rows.append((model, measure, model_v, heur_v))
    sec.table(
        ["model", "holdout measure", "model", "recency/frequency heuristic"],
        rows,
        caption=f"Train run {train[0].run_id}, as of {train[0].as_of or m.get('as_of', '-')}",
    )
    scored = runs["score"][0].metrics if "score" in runs else {}
    versions: list[tuple[str, str | None, str | None, str | None, str | None]] = [
        (
            model,
            m.get(f"{model}.version"),
            m.get(f"{model}.alias"),
            m.get(f"{model}.mlflow_run_id"),
            scored.get(f"{model}.scored_version"),
        )
        for model in models
    ]
    sec.table(
        ["model", "version trained", "alias given", "MLflow run", "version scored"],
        versions,
        caption=f"MLflow tracking: {config.mlflow_tracking_uri}",
    )
    for model, _v, _a, mlflow_run, _s in versions:
        if mlflow_run:
            for chart in _mlflow_charts(
                config.mlflow_tracking_uri, str(mlflow_run), ("roc", "lift")
            ):
                sec.charts.append(Chart(f"{model}: {chart.title}", chart.png))
    return sec


def _activation_section(store: TableStore, runs: Mapping[str, tuple[RunRow, int]]) -> Section:
    sec = Section("Audiences and exports")
    aud = runs.get("audiences")
    if aud is not None and store.exists(T.AUDIENCE_RUNS.name):
        rows = (
            store.read(T.AUDIENCE_RUNS.name)
            .where(F.col("run_id") == aud[0].run_id)
            .select("audience", "as_of", "purpose", "channel", "members", "entered", "exited")
            .orderBy("audience")
            .collect()
        )
        table = [
            (
                r["audience"],
                str(r["as_of"]),
                f"{r['purpose']}/{r['channel']}",
                r["members"],
                r["entered"],
                r["exited"],
            )
            for r in rows
        ]
        sec.table(
            ["audience", "as of", "consent", "members", "entered", "exited"],
            table,
            caption=f"Audiences run {aud[0].run_id}",
        )
        if table:
            sec.charts.append(
                bar_chart(
                    "Audience sizes",
                    [str(t[0]) for t in table],
                    [float(t[3] or 0) for t in table],
                    xlabel="members",
                )
            )
    export = runs.get("export")
    if export is not None:
        run = export[0]
        exports: list[tuple[Any, ...]] = []
        for key, uri in sorted(run.metrics.items()):
            if not (key.startswith("export.") and key.endswith(".uri")):
                continue
            name = key.split(".")[1]
            manifest = _read_manifest(uri)
            exports.append(
                (
                    name,
                    run.rows_written.get(f"export/{name}", 0),
                    int(run.metrics.get(f"export.{name}.files", "0") or 0),
                    manifest.get("model_version"),
                    "manifest + _SUCCESS" if manifest else "no manifest read",
                    uri,
                )
            )
        sec.table(
            ["audience", "rows", "files", "model version", "completion", "location"],
            exports,
            caption=f"Export run {run.run_id}",
        )
    if len(sec.parts) == 0:
        sec.text("No audiences or exports yet: run 'cdp run audiences export'.")
    return sec


def _read_manifest(uri: str) -> dict[str, Any]:
    """The export's manifest.json when the target is a local path (object stores: not read)."""
    if "://" in uri and not uri.startswith("file://"):
        return {}
    base = Path(uri.removeprefix("file://"))
    path = base / "manifest.json"
    if not (path.exists() and (base / "_SUCCESS").exists()):
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# ------------------------------------------------------------------------------------------
# Facade
# ------------------------------------------------------------------------------------------


def build_report(spark: SparkSession, config: CdpConfig, *, truth_path: str | None = None) -> str:
    """The run report of the data root in ``config``, as one HTML string."""
    store = open_store(spark, config)
    # A data root normally serves one environment; every run it logged counts, its env shown.
    runs = latest_runs(store.read(T.RUN_LOG.name)) if store.exists(T.RUN_LOG.name) else {}
    sections = [
        _runs_section(runs),
        _layers_section(store, runs),
        _quality_section(store, runs),
        _identity_section(spark, store, config, runs, truth_path),
        _models_section(config, runs),
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
