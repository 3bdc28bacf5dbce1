"""A free scorer as the champion, when no model has earned the alias.

A candidate that loses to the recency/frequency heuristic or to BG/NBD's expected purchases
alone is never promoted (:mod:`cdp.models.promotion`). With a champion in place, that champion
keeps scoring. With none (a first training, or a champion that can no longer score the
features), the score stage and the audiences would have nothing to run on, while a better
ranking is at hand: the better of the two free scorers on the holdout's selection metric
(:func:`best_free_scorer`). So it is registered as a model version of its own
(``models.out_of_time.heuristic_fallback``) and given the ``champion`` alias: its rank through
a one-input logistic regression fitted on the train customers
(:func:`cdp.models.train.rank_pipeline`), which keeps the scorer's order and makes its score a
probability, so deciles, audience rules on ``<model>_score`` and the report read it like any
model. Its MLflow run and version say ``scorer: heuristic`` or ``scorer: bg/nbd``; the next
candidate that beats it (and the free scorers out of time) takes the alias as usual. BG/NBD
alone reads the BTYD feature column, which the features at every ``as_of`` carry (fitted
before it); without a fit there it reads 0 for everyone, which the score stage's deciles show.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from cdp.models import registry as R
from cdp.models.inputs import Inputs
from cdp.models.settings import ModelsConfig, ModelSpec
from cdp.models.train import (
    HEURISTIC_INPUTS,
    Evaluation,
    Split,
    btyd_sql,
    cap_rows,
    drop_training_summaries,
    evaluate,
    heuristic_sql,
    metric_of,
    rank_pipeline,
    with_score,
)
from cdp.models.train_record import HOLDOUT, examples_for, training_tags
from cdp.models.train_steps import ChampionCheck
from cdp.stage import StageContext
from cdp.value.score import feature_columns as btyd_feature_columns

KIND = "heuristic_fallback"  # the MLflow run's cdp.kind
SCORER_TAG = "cdp.scorer"  # "heuristic" or "bg/nbd" on the fallback's run and version


@dataclass(frozen=True)
class FreeScorer:
    """A scorer that fits nothing but a calibration: its name (the ``scorer`` tag), how the
    report calls it, its rank as SQL over feature columns, and the columns it reads."""

    name: str
    label: str
    rank_sql: str
    inputs: tuple[str, ...]


def best_free_scorer(
    spec: ModelSpec,
    settings: ModelsConfig,
    heuristic: Evaluation,
    btyd: Evaluation | None,
) -> FreeScorer:
    """The heuristic, or BG/NBD alone where it has a fit and ranks the holdout better on the
    selection metric (both fit nothing on the holdout, so these values are out of sample)."""
    metric = settings.selection_metric
    if btyd is not None and metric_of(btyd, metric) > metric_of(heuristic, metric):
        column, _ = btyd_feature_columns(settings.labels.horizon_days)
        return FreeScorer("bg/nbd", "BG/NBD alone", btyd_sql(spec.label, column), (column,))
    return heuristic_scorer(spec)


def heuristic_scorer(spec: ModelSpec) -> FreeScorer:
    """The recency/frequency heuristic (:func:`cdp.models.train.heuristic_sql`)."""
    return FreeScorer("heuristic", "the heuristic", heuristic_sql(spec.label), HEURISTIC_INPUTS)


def register_heuristic_fallback(
    ctx: StageContext,
    registry: R.Registry,
    spec: ModelSpec,
    as_of: date,
    inputs: Inputs,
    split: Split,
    train_rows: int,
    settings: ModelsConfig,
    reason: str,
    scorer: FreeScorer | None = None,
) -> tuple[str, Evaluation]:
    """Fit, log and register the free ``scorer`` (default: the heuristic) as a model; give it
    the ``champion`` alias. Returns its version and its holdout evaluation. ``reason``: why
    no model took the alias."""
    scorer = scorer or heuristic_scorer(spec)
    # A rank calibrated to the population it scores (a churn model may learn from everyone;
    # its free scorer's probabilities are of churn among the active customers).
    train = cap_rows(
        split.population_train, train_rows, settings.max_train_rows, settings.split_salt
    )
    model = drop_training_summaries(rank_pipeline(scorer.rank_sql).fit(train))
    holdout_eval = evaluate(
        with_score(model.transform(split.holdout)), deciles=settings.calibration_bins
    )
    input_pdf, output = examples_for(model, list(scorer.inputs), [], split.holdout)
    why = f"fallback to {scorer.label}: the candidate {reason}"
    logged = registry.log_run(
        model_name=spec.name,
        run_name=f"{KIND}-{spec.name}-{as_of}",
        model=model,
        params={
            "as_of": as_of.isoformat(),
            "label": spec.label,
            "population": spec.population,
            "estimator": scorer.name,
            "rank": scorer.rank_sql,
        },
        metrics=holdout_eval.metrics(HOLDOUT),
        tags={
            **training_tags(ctx, spec, as_of, inputs, KIND, ChampionCheck()),
            SCORER_TAG: scorer.name,
            "cdp.promotion": why,
        },
        json_artifacts={"calibration": holdout_eval.calibration},
        input_example=input_pdf,
        output_example=output,
        register=True,
    )
    if logged.version is None:  # pragma: no cover - log_run registers when a model is given
        raise RuntimeError(f"{spec.name}: the fallback ({scorer.name}) was not registered")
    registry.set_alias(spec.name, R.CHAMPION, logged.version)
    registry.tag_version(
        spec.name,
        logged.version,
        {
            "scorer": scorer.name,
            "as_of": as_of.isoformat(),
            "cdp.run_id": ctx.run.run_id,
            "promotion": why,
        },
    )
    ctx.progress(
        f"{spec.name}: no champion; registered {scorer.label} as version {logged.version} "
        f"(champion; holdout roc_auc {holdout_eval.roc_auc:.4f}): the candidate {reason}"
    )
    return logged.version, holdout_eval
