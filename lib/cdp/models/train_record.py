"""What a training run records in MLflow: metrics (model, LR, heuristic, champion on one
holdout), parameters (the chosen candidate and the whole search), lineage tags (the table
versions read), the model's signature examples, the charts and the evaluation JSON.

Kept apart from the train stage's steps so that the record's contents read in one place.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cdp.models import registry as R
from cdp.models.features_stage import FEATURES_TABLE
from cdp.models.inputs import INPUT_TABLES, Inputs, settings_of
from cdp.models.settings import ModelsConfig, ModelSpec
from cdp.models.train import importances
from cdp.models.train_steps import ChampionCheck, HoldoutEvaluations, SearchResult
from cdp.stage import StageContext

# The prefixes of the measures (``Evaluation.metrics``) in a training run: the chosen model,
# its validation, the best logistic regression, the heuristic and the champion, all but the
# validation on the same holdout customers.
HOLDOUT = "holdout_"
VALIDATION = "validation_"
BASELINE_LR_HOLDOUT = "baseline_lr_holdout_"
HEURISTIC_HOLDOUT = "heuristic_holdout_"
# BG/NBD's expected purchases alone (fitted before as_of, so holdout and out of time coincide).
BTYD_HOLDOUT = "btyd_holdout_"
CHAMPION_HOLDOUT = "champion_holdout_"
# The out-of-time check (cdp.models.out_of_time): the chosen configuration fitted one horizon
# earlier, the heuristic and the champion, on the holdout customers at as_of (the names the
# backtest logs its out-of-time measures under, too).
OUT_OF_TIME = "oot_"
HEURISTIC_OOT = "heuristic_oot_"
CHAMPION_OOT = "champion_oot_"
BTYD_OOT = "btyd_oot_"


def training_metrics(
    found: SearchResult,
    evals: HoldoutEvaluations,
    champion: ChampionCheck,
    train_rows: int,
) -> dict[str, float]:
    """Every measure under its MLflow name (``holdout_roc_auc``, ``heuristic_holdout_...``)."""
    metrics: dict[str, float] = {}
    metrics.update(evals.model.metrics(HOLDOUT))
    metrics.update(found.chosen.validation.metrics(VALIDATION))
    metrics.update(evals.lr.metrics(BASELINE_LR_HOLDOUT))
    metrics.update(evals.heuristic.metrics(HEURISTIC_HOLDOUT))
    if evals.btyd is not None:
        metrics.update(evals.btyd.metrics(BTYD_HOLDOUT))
    if champion.holdout is not None:
        metrics.update(champion.holdout.metrics(CHAMPION_HOLDOUT))
    metrics["search_seconds"] = found.seconds
    metrics["search_trials"] = float(len(found.trials))
    metrics["train_rows"] = float(train_rows)
    return metrics


def training_params(
    spec: ModelSpec, as_of: date, found: SearchResult, settings: ModelsConfig
) -> dict[str, Any]:
    """The chosen candidate, the settings that shaped the run, and every trial of the search."""
    chosen = found.chosen.candidate
    return {
        "as_of": as_of.isoformat(),
        "label": spec.label,
        "population": spec.population,
        "horizon_days": settings.labels.horizon_days,
        "lookback_days": settings.labels.lookback_days,
        "estimator": chosen.kind,
        **{f"{chosen.kind}.{k}": v for k, v in chosen.params.items()},
        "selection_metric": settings.selection_metric,
        "holdout_fraction": settings.holdout_fraction,
        "validation_fraction": settings.validation_fraction,
        "max_train_rows": settings.max_train_rows,
        "time_budget_seconds": settings.search.time_budget_seconds,
        "numeric_features": found.numeric,
        "categorical_features": found.categorical,
        "features_left_out": found.left_out,
        "search": [
            {
                "candidate": t.candidate.label,
                "validation_roc_auc": round(t.validation.roc_auc, 5),
                "validation_pr_auc": round(t.validation.pr_auc, 5),
                "seconds": round(t.seconds, 1),
            }
            for t in found.trials
        ],
    }


def training_tags(
    ctx: StageContext,
    spec: ModelSpec,
    as_of: date,
    inputs: Inputs,
    run_kind: str,
    champion: ChampionCheck,
) -> dict[str, str]:
    """The cdp run, the code and every table version read: enough to reproduce the run."""
    tags = {
        "cdp.run_id": ctx.run.run_id,
        "cdp.env": ctx.config.env,
        "cdp.kind": run_kind,
        "cdp.model_name": spec.name,
        "cdp.as_of": as_of.isoformat(),
        "cdp.git_commit": ctx.config.git_commit or R.git_commit() or "unknown",
        **{f"cdp.table_version.{t}": str(v) for t, v in inputs.versions.items()},
        f"cdp.table_version.{FEATURES_TABLE}": str(ctx.store.version(FEATURES_TABLE)),
    }
    if inputs.missing:  # optional inputs that did not exist (read as empty)
        tags["cdp.inputs_missing"] = ",".join(INPUT_TABLES[k] for k in inputs.missing)
    if champion.error:
        tags["cdp.champion_error"] = champion.error
    return tags


# The fixed value of every categorical input in the input example (an unseen category, which
# the pipeline's StringIndexer keeps: handleInvalid="keep").
EXAMPLE_CATEGORY = "unknown"


def synthetic_example(holdout: DataFrame, numeric: list[str], categorical: list[str]) -> DataFrame:
    """One row of the model's inputs with fixed neutral values by type: zero for numbers,
    :data:`EXAMPLE_CATEGORY` for categories.

    Not holdout rows, nor medians or frequent categories: MLflow stores the input example as
    an artifact that anyone with read access to the tracking server reads, and rows of the
    feature table are personal data (age, gender, country, spend).
    """
    types = {f.name: f.dataType for f in holdout.schema.fields}
    cols = [F.lit(0).cast(types[c]).alias(c) for c in numeric]
    cols += [F.lit(EXAMPLE_CATEGORY).cast(types[c]).alias(c) for c in categorical]
    return holdout.sparkSession.range(1).select(*cols)


def signature_examples(found: SearchResult, holdout: DataFrame) -> tuple[Any, Any]:
    """A synthetic input row (:func:`synthetic_example`) and the model's prediction for it
    (pandas), from which MLflow infers the signature; no holdout row leaves the platform."""
    return examples_for(found.chosen.model, list(found.numeric), list(found.categorical), holdout)


def examples_for(
    model: PipelineModel, numeric: list[str], categorical: list[str], holdout: DataFrame
) -> tuple[Any, Any]:
    """:func:`signature_examples` for any fitted pipeline and its input columns."""
    example = synthetic_example(holdout, numeric, categorical)
    input_pdf: Any = example.toPandas()
    # Integer columns in a signature cannot carry missing values: declare them double
    # (the Imputer takes any numeric type).
    for col in numeric:
        if str(input_pdf[col].dtype).startswith(("int", "Int")):
            input_pdf[col] = input_pdf[col].astype("float64")
    output: Any = model.transform(example).select("prediction").toPandas()
    return input_pdf, output["prediction"]


def training_figures(
    spec: ModelSpec, evals: HoldoutEvaluations, imp: list[tuple[str, float]]
) -> dict[str, Any]:
    """Importance, ROC, lift (model, LR, heuristic) and calibration figures."""
    curves = {"model": evals.model, "logistic regression": evals.lr, "heuristic": evals.heuristic}
    if evals.btyd is not None:
        curves["BG/NBD alone"] = evals.btyd
    return R.charts(
        importances=imp,
        roc={name: ev.roc_curve for name, ev in curves.items()},
        lift={name: ev.lift_curve for name, ev in curves.items()},
        calibration=evals.model.calibration,
        title=spec.name,
    )


def log_training_run(
    ctx: StageContext,
    registry: R.Registry,
    spec: ModelSpec,
    as_of: date,
    inputs: Inputs,
    *,
    run_kind: str,
    found: SearchResult,
    evals: HoldoutEvaluations,
    champion: ChampionCheck,
    train_rows: int,
    holdout: DataFrame,
    register: bool,
    extra_metrics: dict[str, float] | None = None,
    extra_tags: dict[str, str] | None = None,
) -> tuple[R.LoggedModel, dict[str, float]]:
    """One MLflow run of the chosen model (registered when ``register``); returns it and the
    metrics it logged. ``extra_*``: the out-of-time check's measures and the decision."""
    imp = importances(found.chosen.model, evals.chosen_scored)
    metrics = {**training_metrics(found, evals, champion, train_rows), **(extra_metrics or {})}
    params = training_params(spec, as_of, found, settings_of(ctx))
    tags = {**training_tags(ctx, spec, as_of, inputs, run_kind, champion), **(extra_tags or {})}
    input_pdf, output = signature_examples(found, holdout)
    logged = registry.log_run(
        model_name=spec.name,
        run_name=f"{run_kind}-{spec.name}-{as_of}",
        model=found.chosen.model,
        params=params,
        metrics=metrics,
        tags=tags,
        figures=training_figures(spec, evals, imp),
        json_artifacts={
            "calibration": evals.model.calibration,
            "feature_importance": [{"feature": n, "importance": v} for n, v in imp],
            "heuristic_calibration": evals.heuristic.calibration,
        },
        input_example=input_pdf,
        output_example=output,
        register=register,
    )
    return logged, metrics
