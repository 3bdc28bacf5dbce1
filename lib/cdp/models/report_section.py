"""The models' part of the run report: holdout measures of each model beside the
recency/frequency heuristic and BG/NBD alone, the out-of-time line next to them (the model's
configuration fitted one horizon earlier, the heuristic and the champion on the same
customers), the
promotion decision, the versions trained, given an alias and scored, and the ROC and lift
charts the train stage logged to MLflow.

Every metric is read by the name the train and score stages log it under (``train_stage``,
``score_stage``), so a renamed metric cannot leave a row silently empty.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cdp.config import CdpConfig
from cdp.models.inputs import AS_OF_METRIC, model_metric
from cdp.models.score_stage import SCORED_VERSION
from cdp.models.train import LIFT_TOP_DECILE, LOG_LOSS, PR_AUC, ROC_AUC
from cdp.models.train_record import (
    BTYD_HOLDOUT,
    CHAMPION_OOT,
    HEURISTIC_HOLDOUT,
    HEURISTIC_OOT,
    HOLDOUT,
    OUT_OF_TIME,
)
from cdp.models.train_stage import (
    ALIAS,
    FALLBACK_SCORER,
    FALLBACK_VERSION,
    MLFLOW_RUN_ID,
    OOT_SKIPPED,
    OOT_TRAIN_AS_OF,
    PROMOTION,
    RUN_LOG_MEASURES,
    VERSION,
)
from cdp.privacy.redact import safe_uri
from cdp.report_page import Chart, Section, as_float
from cdp.report_runs import Runs

log = logging.getLogger("cdp.report")

# How each holdout measure reads on the page: lower log loss is better, the others higher.
MEASURE_LABELS = {
    ROC_AUC: "ROC-AUC",
    PR_AUC: "PR-AUC",
    LOG_LOSS: "log loss (lower is better)",
    LIFT_TOP_DECILE: "lift in the top decile",
}
CHARTS = ("roc", "lift")  # the figures (registry.charts) the page shows per model


# The columns of the measures table: the holdout line, then the out-of-time line next to it.
# BG/NBD alone is fitted strictly before as_of, so its holdout value is its out-of-time value:
# one column.
LINES = (HOLDOUT, HEURISTIC_HOLDOUT, BTYD_HOLDOUT, OUT_OF_TIME, HEURISTIC_OOT, CHAMPION_OOT)
MEASURE_HEADERS = [
    "model",
    "measure",
    "holdout: model",
    "holdout: recency/frequency heuristic",
    "BG/NBD expected purchases alone (fitted before as_of)",
    "out of time: model",
    "out of time: heuristic",
    "out of time: champion",
]


def holdout_rows(metrics: dict[str, str], models: Sequence[str]) -> list[tuple[object, ...]]:
    """(model, measure, then per :data:`LINES` the value) for every measure the train run
    logged for any of them (the heuristic is no probability: it has no log loss)."""
    rows: list[tuple[object, ...]] = []
    for model in models:
        for measure in RUN_LOG_MEASURES:
            values = [as_float(metrics.get(model_metric(model, p + measure))) for p in LINES]
            if any(v is not None for v in values):
                rows.append((model, MEASURE_LABELS[measure], *values))
    return rows


def decision_lines(metrics: dict[str, str], models: Sequence[str]) -> list[str]:
    """Per model: where the out-of-time check fitted (or why it did not run), the promotion
    decision, and the heuristic's version when it took the champion alias."""
    lines = []
    for model in models:
        got = {k: metrics.get(model_metric(model, k)) for k in (OOT_TRAIN_AS_OF, OOT_SKIPPED)}
        if got[OOT_SKIPPED]:
            lines.append(f"{model}: out-of-time check skipped: {got[OOT_SKIPPED]}.")
        elif got[OOT_TRAIN_AS_OF]:
            lines.append(
                f"{model}: out of time = the model's configuration fitted at "
                f"{got[OOT_TRAIN_AS_OF]}, scored with the heuristic and the champion on the "
                "holdout customers at the run's as_of."
            )
        promotion = metrics.get(model_metric(model, PROMOTION))
        if promotion:
            alias = metrics.get(model_metric(model, ALIAS)) or "no alias"
            version = metrics.get(model_metric(model, VERSION)) or "-"
            lines.append(f"{model}: version {version} is {alias}: {promotion}.")
        fallback = metrics.get(model_metric(model, FALLBACK_VERSION))
        if fallback:
            scorer = metrics.get(model_metric(model, FALLBACK_SCORER)) or "the heuristic"
            lines.append(
                f"{model}: no champion had earned the alias, so {scorer} scores: "
                f"version {fallback} ({scorer}) is the champion."
            )
    return lines


def models_section(config: CdpConfig, runs: Runs) -> Section:
    """The "Propensity models" section (a hint to train while there is no successful run)."""
    sec = Section("Propensity models")
    train = runs.get("train")
    if train is None or train[0].status != "success":
        sec.text("No successful training run yet: run 'cdp run train'.")
        return sec
    m = train[0].metrics
    suffix = model_metric("", HOLDOUT + ROC_AUC)  # ".holdout_roc_auc": one per model
    models = sorted({k.split(".", 1)[0] for k in m if k.endswith(suffix)})
    sec.table(
        MEASURE_HEADERS,
        holdout_rows(m, models),
        caption=f"Train run {train[0].run_id}, as of {train[0].as_of or m.get(AS_OF_METRIC, '-')}",
    )
    for line in decision_lines(m, models):
        sec.text(line)
    scored = runs["score"][0].metrics if "score" in runs else {}
    versions: list[tuple[str, str | None, str | None, str | None, str | None]] = [
        (
            model,
            m.get(model_metric(model, VERSION)),
            m.get(model_metric(model, ALIAS)),
            m.get(model_metric(model, MLFLOW_RUN_ID)),
            scored.get(model_metric(model, SCORED_VERSION)),
        )
        for model in models
    ]
    sec.table(
        ["model", "version trained", "alias given", "MLflow run", "version scored"],
        versions,
        # Shown without credentials: the report is read by people who hold none.
        caption=f"MLflow tracking: {safe_uri(config.mlflow_tracking_uri)}",
    )
    for model, _v, _a, mlflow_run, _s in versions:
        if mlflow_run:
            for chart in _mlflow_charts(config.mlflow_tracking_uri, str(mlflow_run), CHARTS):
                sec.charts.append(Chart(f"{model}: {chart.title}", chart.png))
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
