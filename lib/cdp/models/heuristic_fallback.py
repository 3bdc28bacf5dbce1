"""The heuristic as the champion, when no model has earned the alias.

A candidate that loses to the recency/frequency heuristic is never promoted
(:mod:`cdp.models.promotion`). With a champion in place, that champion keeps scoring. With
none (a first training, or a champion that can no longer score the features), the score stage
and the audiences would have nothing to run on, while the better ranking is at hand: the
heuristic. So it is registered as a model version of its own (``models.out_of_time.
heuristic_fallback``) and given the ``champion`` alias: its rank through a one-input logistic
regression fitted on the train customers (:func:`cdp.models.train.heuristic_pipeline`), which
keeps the heuristic's order and makes its score a probability, so deciles, audience rules on
``<model>_score`` and the report read it like any model. Its MLflow run and version say
``scorer: heuristic``; the next candidate that beats it (and the heuristic out of time) takes
the alias as usual.
"""

from __future__ import annotations

from datetime import date

from cdp.models import registry as R
from cdp.models.inputs import Inputs
from cdp.models.settings import ModelsConfig, ModelSpec
from cdp.models.train import (
    HEURISTIC_INPUTS,
    Evaluation,
    Split,
    cap_rows,
    drop_training_summaries,
    evaluate,
    heuristic_pipeline,
    heuristic_sql,
    with_score,
)
from cdp.models.train_record import HOLDOUT, examples_for, training_tags
from cdp.models.train_steps import ChampionCheck
from cdp.stage import StageContext

KIND = "heuristic_fallback"  # the MLflow run's cdp.kind
SCORER_TAG = "cdp.scorer"  # "heuristic" on the fallback's run and version


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
) -> tuple[str, Evaluation]:
    """Fit, log and register the heuristic model; give it the ``champion`` alias. Returns its
    version and its holdout evaluation. ``reason``: why no model took the alias."""
    train = cap_rows(split.train, train_rows, settings.max_train_rows, settings.split_salt)
    model = drop_training_summaries(heuristic_pipeline(spec.label).fit(train))
    holdout_eval = evaluate(
        with_score(model.transform(split.holdout)), deciles=settings.calibration_bins
    )
    input_pdf, output = examples_for(model, list(HEURISTIC_INPUTS), [], split.holdout)
    why = f"heuristic fallback: the candidate {reason}"
    logged = registry.log_run(
        model_name=spec.name,
        run_name=f"{KIND}-{spec.name}-{as_of}",
        model=model,
        params={
            "as_of": as_of.isoformat(),
            "label": spec.label,
            "population": spec.population,
            "estimator": "heuristic",
            "heuristic": heuristic_sql(spec.label),
        },
        metrics=holdout_eval.metrics(HOLDOUT),
        tags={
            **training_tags(ctx, spec, as_of, inputs, KIND, ChampionCheck()),
            SCORER_TAG: "heuristic",
            "cdp.promotion": why,
        },
        json_artifacts={"calibration": holdout_eval.calibration},
        input_example=input_pdf,
        output_example=output,
        register=True,
    )
    if logged.version is None:  # pragma: no cover - log_run registers when a model is given
        raise RuntimeError(f"{spec.name}: the heuristic fallback was not registered")
    registry.set_alias(spec.name, R.CHAMPION, logged.version)
    registry.tag_version(
        spec.name,
        logged.version,
        {
            "scorer": "heuristic",
            "as_of": as_of.isoformat(),
            "cdp.run_id": ctx.run.run_id,
            "promotion": why,
        },
    )
    ctx.progress(
        f"{spec.name}: no champion; registered the heuristic as version {logged.version} "
        f"(champion; holdout roc_auc {holdout_eval.roc_auc:.4f}): the candidate {reason}"
    )
    return logged.version, holdout_eval
