"""The ``train`` stage: every selected model trained, evaluated on a holdout, logged to MLflow,
registered, and given the ``champion`` alias only when it beats the recency/frequency
heuristic out of time and the current champion on the holdout.

:func:`train_model` reads as its steps: labelled data, split (both classes in every part),
candidate search, holdout evaluation (beside logistic regression, the heuristic and the
current champion), the MLflow run (``train_record``), the out-of-time check
(``out_of_time``), the promotion rule (``promotion``) and the alias it gives, the heuristic
as champion where no model has earned it (``heuristic_fallback``), and the run-log metrics
the report reads back (the names below).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from pyspark import StorageLevel

from cdp.models import registry as R
from cdp.models.features_stage import left_out_features
from cdp.models.heuristic_fallback import best_free_scorer, register_heuristic_fallback
from cdp.models.inputs import (
    Inputs,
    check_horizon,
    default_train_as_of,
    for_each_model,
    model_metric,
    read_inputs,
    registry_for,
    settings_of,
)
from cdp.models.out_of_time import OutOfTime, out_of_time_check
from cdp.models.promotion import Decision, decide
from cdp.models.settings import ModelsConfig, ModelSpec
from cdp.models.train import LIFT_TOP_DECILE, LOG_LOSS, PR_AUC, ROC_AUC, Evaluation, split_customers
from cdp.models.train_record import (
    BTYD_HOLDOUT,
    BTYD_OOT,
    CHAMPION_OOT,
    HEURISTIC_HOLDOUT,
    HEURISTIC_OOT,
    HOLDOUT,
    OUT_OF_TIME,
    log_training_run,
)
from cdp.models.train_steps import (
    ChampionCheck,
    HoldoutEvaluations,
    TooFewLabels,
    champion_on_holdout,
    check_classes,
    evaluate_holdout,
    labelled_data,
    move_alias,
    search_candidates,
    split_counts,
)
from cdp.stage import StageContext

# Run-log metrics of a train run, each per model as ``<model>.<name>`` (see model_metric);
# the report (cdp.models.report_section) reads them by these names.
# The holdout and out-of-time measures come under the MLflow names (train_record.HOLDOUT,
# HEURISTIC_HOLDOUT, BTYD_HOLDOUT, OUT_OF_TIME, HEURISTIC_OOT, CHAMPION_OOT, BTYD_OOT).
RUN_LOG_MEASURES = (ROC_AUC, PR_AUC, LOG_LOSS, LIFT_TOP_DECILE)
RUN_LOG_PREFIXES = (
    HOLDOUT,
    HEURISTIC_HOLDOUT,
    BTYD_HOLDOUT,
    OUT_OF_TIME,
    HEURISTIC_OOT,
    CHAMPION_OOT,
    BTYD_OOT,
)
MLFLOW_RUN_ID = "mlflow_run_id"
VERSION = "version"
ALIAS = "alias"
TRAIN_SECONDS = "train_seconds"
# How many feature columns were left out because their input held no rows.
FEATURES_LEFT_OUT = "features_left_out"
# The promotion rule's decision in words (cdp.models.promotion), also the MLflow run's
# ``cdp.promotion`` tag and the version's ``promotion`` tag.
PROMOTION = "promotion"
OOT_TRAIN_AS_OF = "oot_train_as_of"  # where the out-of-time check fitted
OOT_SKIPPED = "oot_skipped"  # why the out-of-time check did not run
# The version of the heuristic registered as champion (cdp.models.heuristic_fallback).
FALLBACK_VERSION = "heuristic_fallback_version"
# Which free scorer it is, in words ("the heuristic", "BG/NBD alone").
FALLBACK_SCORER = "fallback_scorer"


@dataclass
class TrainOutcome:
    model_name: str
    as_of: date
    mlflow_run_id: str
    version: str | None
    alias: str | None
    model: Any
    holdout: Evaluation
    baseline_lr: Evaluation
    heuristic: Evaluation
    champion_before: str | None = None
    champion_holdout: Evaluation | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    out_of_time: OutOfTime | None = None
    decision: Decision | None = None  # None when nothing was registered
    fallback_version: str | None = None


def log_run_metrics(
    ctx: StageContext,
    spec: ModelSpec,
    metrics: dict[str, float],
    logged: R.LoggedModel,
    alias: str | None,
    seconds: float,
    *,
    decision: Decision | None = None,
    out_of_time: OutOfTime | None = None,
    fallback_version: str | None = None,
    fallback_scorer: str | None = None,
) -> None:
    """The run-log metrics of one model: the holdout and out-of-time measures of the model,
    the heuristic and the champion (those it has: the heuristic is no probability, so no log
    loss), the MLflow run, the version and alias given, and the promotion decision."""
    for prefix in RUN_LOG_PREFIXES:
        for measure in RUN_LOG_MEASURES:
            value = metrics.get(prefix + measure)
            if value is not None:
                ctx.run.metric(model_metric(spec.name, prefix + measure), round(value, 5))
    if out_of_time is not None:
        ctx.run.metric(model_metric(spec.name, OOT_TRAIN_AS_OF), out_of_time.train_as_of)
        if out_of_time.skipped:
            ctx.run.metric(model_metric(spec.name, OOT_SKIPPED), out_of_time.skipped)
    if decision is not None:
        ctx.run.metric(model_metric(spec.name, PROMOTION), decision.reason)
    if fallback_version is not None:
        ctx.run.metric(model_metric(spec.name, FALLBACK_VERSION), fallback_version)
        ctx.run.metric(model_metric(spec.name, FALLBACK_SCORER), fallback_scorer or "the heuristic")
    ctx.run.metric(model_metric(spec.name, MLFLOW_RUN_ID), logged.run_id)
    if logged.version:
        ctx.run.metric(model_metric(spec.name, VERSION), logged.version)
        ctx.run.metric(model_metric(spec.name, ALIAS), alias)
    ctx.run.metric(model_metric(spec.name, TRAIN_SECONDS), round(seconds, 1))


def train_model(
    ctx: StageContext,
    spec: ModelSpec,
    as_of: date,
    inputs: Inputs,
    registry: R.Registry,
    *,
    register: bool = True,
    compare_champion: bool | None = None,
    kind: str | None = None,
) -> TrainOutcome:
    """Train, evaluate and log one model at ``as_of``; when ``register``, check it out of time,
    register it and give it the alias the promotion rule decides.

    ``compare_champion`` (default: ``register``) evaluates the current champion on the same
    holdout; ``kind`` names the run (tag ``cdp.kind``, default ``train`` or ``backtest``)."""
    compare = register if compare_champion is None else compare_champion
    run_kind = kind or ("train" if register else "backtest")
    settings = settings_of(ctx)
    check_horizon(inputs, as_of, settings)
    t_start = time.perf_counter()
    data = labelled_data(ctx, spec, as_of, inputs, settings).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        split = split_customers(data, settings)
        counts = split_counts(split)
        check_classes(spec, as_of, counts)
        ctx.progress(
            f"{spec.name}: {sum(n for n, _ in counts.values()):,} customers "
            + ", ".join(f"{p} {n:,} ({pos:,} positive)" for p, (n, pos) in sorted(counts.items()))
        )
        left_out = left_out_features(inputs, as_of, settings)
        if left_out:
            ctx.progress(
                f"{spec.name}: {len(left_out)} feature(s) of inputs without rows "
                f"({', '.join(inputs.without_rows())}) left out of the model"
            )
        ctx.run.metric(model_metric(spec.name, FEATURES_LEFT_OUT), len(left_out))
        found = search_candidates(ctx, data, split, counts, settings, left_out)
        evals = evaluate_holdout(ctx, spec, found, split.holdout, settings)
        champion = (
            champion_on_holdout(ctx, registry, spec, split.holdout, settings)
            if compare
            else ChampionCheck()
        )
        oot: OutOfTime | None = None
        decision: Decision | None = None
        if register:
            # Before anything is registered: the check may build (write) the features of its
            # earlier date, and a failure or a crash there leaves no version without an alias.
            oot = out_of_time_check(
                ctx, spec, as_of, inputs, found, split.holdout, evals, champion, settings
            )
            decision = decide_promotion(evals, oot, champion, settings)
        logged, metrics = log_training_run(
            ctx,
            registry,
            spec,
            as_of,
            inputs,
            run_kind=run_kind,
            found=found,
            evals=evals,
            champion=champion,
            train_rows=counts["train"][0],
            holdout=split.holdout,
            register=register,
            extra_metrics=oot.metrics() if oot else None,
            extra_tags=decision_tags(oot, decision) if oot and decision else None,
        )
        alias: str | None = None
        fallback: str | None = None
        fallback_scorer: str | None = None
        if decision is not None and logged.version is not None:
            alias = move_alias(
                ctx, registry, spec, as_of, logged.version, evals.model, decision, settings
            )
            usable_champion = champion.holdout is not None
            if (
                decision.loses_to_heuristic
                and not usable_champion
                and settings.out_of_time.heuristic_fallback
            ):
                scorer = best_free_scorer(spec, settings, evals.heuristic, evals.btyd)
                fallback, _ = register_heuristic_fallback(
                    ctx,
                    registry,
                    spec,
                    as_of,
                    inputs,
                    split,
                    counts["train"][0],
                    settings,
                    decision.reason,
                    scorer,
                )
                fallback_scorer = scorer.label
        log_run_metrics(
            ctx,
            spec,
            metrics,
            logged,
            alias,
            time.perf_counter() - t_start,
            decision=decision,
            out_of_time=oot,
            fallback_version=fallback,
            fallback_scorer=fallback_scorer,
        )
        return TrainOutcome(
            model_name=spec.name,
            as_of=as_of,
            mlflow_run_id=logged.run_id,
            version=logged.version,
            alias=alias,
            model=found.chosen.model,
            holdout=evals.model,
            baseline_lr=evals.lr,
            heuristic=evals.heuristic,
            champion_before=champion.info.version if champion.info else None,
            champion_holdout=champion.holdout,
            metrics=metrics,
            out_of_time=oot,
            decision=decision,
            fallback_version=fallback,
        )
    finally:
        data.unpersist()


def decide_promotion(
    evals: HoldoutEvaluations,
    oot: OutOfTime,
    champion: ChampionCheck,
    settings: ModelsConfig,
) -> Decision:
    """:func:`cdp.models.promotion.decide` on what the stage measured."""
    return decide(
        holdout=evals.model,
        heuristic=evals.heuristic,
        settings=settings,
        out_of_time=oot.model,
        champion=champion.holdout,
        champion_version=champion.info.version if champion.info else None,
        btyd=evals.btyd,
    )


def decision_tags(oot: OutOfTime, decision: Decision) -> dict[str, str]:
    """The MLflow tags of the out-of-time check and the decision on the candidate's run."""
    tags = {
        "cdp.promotion": decision.reason,
        "cdp.promoted": str(decision.promote).lower(),
        "cdp.oot_train_as_of": oot.train_as_of.isoformat(),
    }
    if oot.skipped:
        tags["cdp.oot_skipped"] = oot.skipped
    if oot.dropped:
        tags["cdp.oot_features_left_out"] = ",".join(oot.dropped)
    return tags


def run_train(ctx: StageContext) -> None:
    """The ``train`` stage: every selected model at ``as_of`` (default: the latest date whose
    label horizon the data covers).

    A model whose labels lack a class in a split part (a young or small company: a handful
    of customers, none of them buying again yet) is not trained this run, and the run log and
    the console say why; the other models, and the stages after this one, still run (the
    score stage skips a model without a champion). A notebook's ``train_candidate`` and the
    backtest still raise: there the user asked for that model."""

    def train_or_say_why(
        c: StageContext, spec: ModelSpec, as_of: date, inputs: Inputs, registry: R.Registry
    ) -> TrainOutcome | None:
        try:
            return train_model(c, spec, as_of, inputs, registry)
        except TooFewLabels as exc:
            c.progress(f"{spec.name}: not trained: {exc}")
            c.run.metric(f"{spec.name}.not_trained", str(exc))
            return None

    for_each_model(
        ctx, lambda c, inputs: default_train_as_of(inputs, settings_of(c)), train_or_say_why
    )


def train_candidate(
    ctx: StageContext,
    model_name: str,
    *,
    as_of: date | None = None,
    time_budget_seconds: float | None = None,
) -> TrainOutcome:
    """Train one candidate of ``model_name`` as the ``train`` stage would (same features,
    labels, split, search and evaluation), log it to MLflow **without registering it**, and
    evaluate the current champion on the same holdout (``champion_holdout``, None when there
    is no champion). No alias moves: for notebooks and experiments.

    ``as_of`` defaults like the stage's; ``time_budget_seconds`` overrides the search budget
    (the first logistic regression and the first GBT always run).
    """
    settings = settings_of(ctx)
    specs = {m.name: m for m in settings.models}
    if model_name not in specs:
        raise ValueError(f"unknown model {model_name!r}; declared: {sorted(specs)}")
    if time_budget_seconds is not None:
        config = ctx.config.model_copy(deep=True)
        config.models.search.time_budget_seconds = time_budget_seconds
        ctx = replace(ctx, config=config)
        settings = settings_of(ctx)
    inputs = read_inputs(ctx)
    day = as_of or default_train_as_of(inputs, settings)
    return train_model(
        ctx,
        specs[model_name],
        day,
        inputs,
        registry_for(ctx),
        register=False,
        compare_champion=True,
        kind="candidate",
    )
