"""The on-demand ``backtest`` stage: a model trained at ``as_of - backtest.train_offset_days``
(default ``horizon_days``; logged to MLflow, not registered) scores every customer at
``as_of`` (default like ``train``) and is evaluated against what happened in the horizon
after it; one row per model in gold/model_backtests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from pyspark import StorageLevel
from pyspark.sql.types import (
    DateType,
    DoubleType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from cdp import tables as T
from cdp.models import registry as R
from cdp.models.features_stage import features_at
from cdp.models.inputs import (
    Inputs,
    check_horizon,
    default_train_as_of,
    read_inputs,
    registry_for,
    settings_of,
)
from cdp.models.labels import build_labels, labelled
from cdp.models.settings import ModelSpec
from cdp.models.train import Evaluation, evaluate, heuristic_score, with_score
from cdp.models.train_stage import train_model
from cdp.runlog import utcnow
from cdp.stage import StageContext

BACKTESTS_TABLE = T.MODEL_BACKTESTS.name
BACKTEST_SCHEMA = StructType(
    [
        StructField("model_name", StringType()),
        StructField("train_as_of", DateType()),
        StructField("score_as_of", DateType()),
        StructField("customers", LongType()),
        StructField("roc_auc", DoubleType()),
        StructField("pr_auc", DoubleType()),
        StructField("lift_top_decile", DoubleType()),
        StructField("heuristic_roc_auc", DoubleType()),
        StructField("heuristic_pr_auc", DoubleType()),
        StructField("mlflow_run_id", StringType()),
        StructField("run_id", StringType()),
        StructField("created_at", TimestampType()),
    ]
)


@dataclass
class BacktestResult:
    model_name: str
    train_as_of: date
    score_as_of: date
    customers: int
    model: Evaluation
    heuristic: Evaluation
    mlflow_run_id: str


def backtest_model(
    ctx: StageContext,
    spec: ModelSpec,
    train_as_of: date,
    score_as_of: date,
    inputs: Inputs,
    registry: R.Registry,
) -> BacktestResult:
    """Train at ``train_as_of`` (not registered), score every customer at ``score_as_of``
    and evaluate against the outcomes in the horizon after it."""
    settings = settings_of(ctx)
    if train_as_of >= score_as_of:
        raise ValueError(
            f"backtest: train as_of {train_as_of} must be before score as_of {score_as_of}"
        )
    check_horizon(inputs, score_as_of, settings)
    trained = train_model(ctx, spec, train_as_of, inputs, registry, register=False)
    labels_df = build_labels(
        transactions=inputs.frames["transactions"],
        identity_map=inputs.frames["identity_map"],
        as_of=score_as_of,
        labels=settings.labels,
    )
    data = labelled(features_at(ctx, inputs, score_as_of), labels_df, spec, settings.labels)
    data = data.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        model_eval = evaluate(
            with_score(trained.model.transform(data)), deciles=settings.calibration_bins
        )
        heur_eval = evaluate(data.transform(heuristic_score(spec.label)), probabilities=False)
    finally:
        data.unpersist()
    _log_oot(registry, trained.mlflow_run_id, score_as_of, model_eval, heur_eval)
    result = BacktestResult(
        spec.name,
        train_as_of,
        score_as_of,
        model_eval.rows,
        model_eval,
        heur_eval,
        trained.mlflow_run_id,
    )
    _append_backtest(ctx, result)
    ctx.progress(
        f"{spec.name}: backtest trained {train_as_of}, scored {score_as_of}: roc_auc "
        f"{model_eval.roc_auc:.4f} pr_auc {model_eval.pr_auc:.4f} lift@10% "
        f"{model_eval.lift_top_decile:.2f} (heuristic {heur_eval.roc_auc:.4f}/{heur_eval.pr_auc:.4f})"
    )
    return result


def _append_backtest(ctx: StageContext, result: BacktestResult) -> None:
    """One row of gold/model_backtests (appended: every backtest is kept)."""
    model_eval, heur_eval = result.model, result.heuristic
    ctx.store.append_rows(
        BACKTESTS_TABLE,
        [
            (
                result.model_name,
                result.train_as_of,
                result.score_as_of,
                model_eval.rows,
                model_eval.roc_auc,
                model_eval.pr_auc,
                model_eval.lift_top_decile,
                heur_eval.roc_auc,
                heur_eval.pr_auc,
                result.mlflow_run_id,
                ctx.run.run_id,
                utcnow(),
            )
        ],
        BACKTEST_SCHEMA,
    )
    ctx.run.wrote(BACKTESTS_TABLE, 1)


def _log_oot(
    registry: R.Registry, run_id: str, score_as_of: date, model_eval: Evaluation, heur: Evaluation
) -> None:
    registry.add_to_run(
        run_id,
        metrics={**model_eval.metrics("oot_"), **heur.metrics("heuristic_oot_")},
        tags={"cdp.score_as_of": score_as_of.isoformat()},
    )


def run_backtest(ctx: StageContext) -> None:
    """The on-demand ``backtest`` stage (see the module docstring for its dates)."""
    settings = settings_of(ctx)
    inputs = read_inputs(ctx)
    score_as_of = ctx.as_of or default_train_as_of(inputs, settings)
    offset = settings.backtest.train_offset_days or settings.labels.horizon_days
    train_as_of = score_as_of - timedelta(days=offset)
    registry = registry_for(ctx)
    for spec in settings.selected():
        backtest_model(ctx, spec, train_as_of, score_as_of, inputs, registry)
