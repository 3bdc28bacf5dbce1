"""The HTML run report: its pure pieces, then the page of a real demo run in headless Chromium."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from pyspark.sql import SparkSession

from cdp.cli import main
from cdp.identity.evaluate import SIZE_BUCKETS
from cdp.identity.report_section import cluster_size_histogram
from cdp.models.report_section import MEASURE_LABELS, models_section
from cdp.models.train import LIFT_TOP_DECILE, LOG_LOSS, Evaluation
from cdp.models.train_record import HEURISTIC_HOLDOUT, HOLDOUT
from cdp.models.train_stage import log_run_metrics
from cdp.report_page import Section, html_table, render_page, size_bucket_label
from cdp.report_runs import RunRow, latest_runs
from cdp.runlog import RUN_LOG_SCHEMA, RunRecorder
from conftest import DemoRun

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def test_html_table_escapes_values_and_formats_numbers() -> None:
    out = html_table(
        ["name", "n", "x"], [("<script>alert(1)</script>", 12345, 0.5), (None, 1, 2.0)]
    )
    assert "<script>" not in out
    assert "&lt;script&gt;" in out
    assert "<td class='num'>12,345</td>" in out
    assert "<td class='num'>0.5000</td>" in out
    assert "<td class='none'>-</td>" in out
    assert "colspan" in html_table(["a"], [])  # an empty table says so


def test_size_bucket_labels() -> None:
    labels = [size_bucket_label(n, SIZE_BUCKETS) for n in (1, 2, 3, 5, 6, 11, 100, 101, 5000)]
    assert labels == ["1", "2", "3-5", "3-5", "6-10", "11-50", "51-100", "101+", "101+"]


def test_latest_runs_prefers_the_last_success_and_counts_failures_since(
    spark: SparkSession,
) -> None:
    def row(job: str, status: str, minute: int) -> tuple:  # type: ignore[type-arg]
        started = datetime(2026, 1, 1, 10, minute)
        return (
            f"r-{job}-{minute}",
            job,
            "test",
            status,
            "h",
            "delta-rs",
            None,
            started,
            started,
            1.0,
            {},
            {},
            {},
            {"m": str(minute)},
            None if status == "success" else "boom",
            None,
            "0",
            "host",
        )

    log = spark.createDataFrame(
        [
            row("silver", "success", 1),
            row("silver", "success", 5),
            row("silver", "failed", 7),
            row("silver", "failed", 9),
            row("ingest", "failed", 2),
            row("train", "failed", 3),
            row("train", "success", 4),
        ],
        RUN_LOG_SCHEMA,
    )
    runs = latest_runs(log)
    assert {j: (r.run_id, r.status, failed) for j, (r, failed) in runs.items()} == {
        "silver": ("r-silver-5", "success", 2),
        "ingest": ("r-ingest-2", "failed", 1),
        "train": ("r-train-4", "success", 0),  # a failure before the last success is history
    }
    assert runs["silver"][0].metrics == {"m": "5"}


def test_cluster_size_histogram(spark: SparkSession) -> None:
    identity_map = spark.createDataFrame(
        [("c1", "s", "1"), ("c1", "s", "2"), ("c1", "t", "3"), ("c2", "s", "4"), ("c3", "s", "5")],
        "customer_id string, source string, source_record_id string",
    )
    assert cluster_size_histogram(identity_map) == [(1, 2), (3, 1)]


def test_render_page_counts_its_charts_on_load() -> None:
    section = Section("S")
    section.text("a & b")
    page = render_page("T <x>", ["meta"], [section])
    assert "a &amp; b" in page and "T &lt;x&gt;" in page
    assert "data-charts-rendered" in page  # the browser test reads what this script sets


def _measure_row(label: str, *cells: str) -> str:
    """The page's row of one holdout measure: its label, then the given cells."""
    return f"<tr><td>model_a</td><td>{html.escape(label)}</td>" + "".join(cells)


def test_models_section_shows_the_lift_and_log_loss_the_train_stage_logs() -> None:
    """The report once asked for ``top_decile_lift`` while training logged ``lift_top_decile``
    (and the run log got neither it nor log loss): those rows were always empty. Log through
    the train stage's own code, read through the report's."""
    recorder = RunRecorder("r1", "train", "test", "h", "delta-rs", datetime(2026, 1, 1))
    model = Evaluation(100, 20, 0.81, 0.52, 0.4321, 3.25, 0.2)
    heuristic = Evaluation(100, 20, 0.7, 0.41, None, 2.5, 0.2)  # a rank, no probability
    metrics = {**model.metrics(HOLDOUT), **heuristic.metrics(HEURISTIC_HOLDOUT)}
    ctx = SimpleNamespace(run=recorder)
    logged = SimpleNamespace(run_id="", version=None)  # no MLflow run: no charts to fetch
    log_run_metrics(ctx, SimpleNamespace(name="model_a"), metrics, logged, None, 1.0)
    run = RunRow(
        "train", "test", "success", "r1", None, 1.0, None, {}, {}, {}, recorder.metrics, None
    )
    config = SimpleNamespace(mlflow_tracking_uri="sqlite:///unused.db")
    page = "".join(models_section(config, {"train": (run, 0)}).parts)
    lift = MEASURE_LABELS[LIFT_TOP_DECILE]
    assert _measure_row(lift, "<td class='num'>3.2500</td>", "<td class='num'>2.5000</td>") in page
    log_loss = MEASURE_LABELS[LOG_LOSS]
    assert _measure_row(log_loss, "<td class='num'>0.4321</td>", "<td class='none'>-</td>") in page


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _artifacts_dir(tmp_path: Path) -> Path:
    """CI keeps ``ci-artifacts/``; elsewhere the test's own temp directory."""
    target = Path(os.environ.get("CDP_TEST_ARTIFACTS", REPO / "ci-artifacts"))
    if os.environ.get("CI") or target.exists():
        target.mkdir(parents=True, exist_ok=True)
        return target
    fallback = tmp_path / "artifacts"  # not tmp_path itself: the page is written there first
    fallback.mkdir(exist_ok=True)
    return fallback


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_report_of_a_demo_run_renders_in_headless_chromium(
    demo_run: DemoRun, spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs Debian's chromium")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); CI installs it")
    demo_run.check()
    # The demo wrote its report already; `cdp report` rewrites it wherever asked.
    shown = re.search(r"^report: (\S+)$", demo_run.output, flags=re.M)
    assert shown is not None and Path(shown.group(1)).is_file(), demo_run.output[-2000:]

    out = tmp_path / "run-report.html"
    rc = main(
        ["report", "--env", "test", "--data-root", str(demo_run.data_root), "--out", str(out)]
    )
    assert rc == 0
    assert f"report: {out}" in capsys.readouterr().out
    page = out.read_text(encoding="utf-8")
    for heading in (
        "Latest runs",
        "Rows per layer and source",
        "Quarantine and data quality",
        "Identity resolution",
        "Propensity models",
        "Audiences and exports",
    ):
        assert f"<h2>{heading}</h2>" in page
    # Numbers on the page come from the tables: the ingest table lists every landed source.
    for source in ("crm_contacts", "web_events", "pos_transactions", "loyalty_members"):
        assert f"<td>{source}</td>" in page
    assert "pairwise quality against ground truth" in page.lower()
    # Both models' lift and log loss rows carry numbers (they were always missing before).
    number = "<td class='num'>[0-9.,]+</td>"
    for measure in (LIFT_TOP_DECILE, LOG_LOSS):
        label = re.escape(html.escape(MEASURE_LABELS[measure]))
        rows = re.findall(f"<tr><td>[^<]+</td><td>{label}</td>{number}", page)
        assert len(rows) == 2, (measure, rows)

    profile = tmp_path / "chromium-profile"
    dom = subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=10000"]
        + ["--dump-dom", out.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body is not None, dom.stderr[-2000:]
    total = re.search(r'data-charts-total="(\d+)"', body.group(0))
    rendered = re.search(r'data-charts-rendered="(\d+)"', body.group(0))
    assert total is not None and rendered is not None, body.group(0)
    # bronze rows per source, cluster sizes, two models x (ROC, lift), audience sizes at least
    assert int(total.group(1)) >= 7
    assert int(rendered.group(1)) == int(total.group(1))

    artifacts = _artifacts_dir(tmp_path)
    shot = artifacts / "run-report.png"
    snap = subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1280,7000"]
        + [f"--screenshot={shot}", out.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.is_file() and shot.stat().st_size > 50_000, snap.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shutil.copy(out, artifacts / "run-report.html")
