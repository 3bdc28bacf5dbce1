"""The ``score`` stage: every selected model's champion over the features at ``as_of``,
written to gold/propensity_scores (one slice per as_of and model, replaced on a rerun)."""

from __future__ import annotations

from datetime import date, timedelta

from pyspark import StorageLevel
from pyspark.sql import functions as F

from cdp import tables as T
from cdp.models import registry as R
from cdp.models.features import AS_OF
from cdp.models.features_stage import FEATURES_TABLE, features_at
from cdp.models.inputs import (
    Inputs,
    for_each_model,
    model_metric,
    replace_rows,
    scalar,
    settings_of,
)
from cdp.models.labels import population
from cdp.models.score import raw_scores, score_rows
from cdp.models.settings import ModelSpec
from cdp.models.train import quantile_thresholds
from cdp.stage import StageContext

SCORES_TABLE = T.PROPENSITY_SCORES.name
# Run-log metric per model (``<model>.scored_version``): the version that scored.
SCORED_VERSION = "scored_version"


def default_score_as_of(ctx: StageContext, inputs: Inputs) -> date:
    """The newest as_of in gold/customer_features, else data end + 1 day."""
    if ctx.store.exists(FEATURES_TABLE):
        latest = scalar(ctx.store.read(FEATURES_TABLE).agg(F.max(AS_OF)))
        if latest is not None:
            return latest  # type: ignore[no-any-return]
    return inputs.data_end() + timedelta(days=1)


def score_model(
    ctx: StageContext, spec: ModelSpec, as_of: date, inputs: Inputs, registry: R.Registry
) -> int:
    """Score ``spec``'s population at ``as_of`` with its champion; replace the
    (as_of, model_name) partition of gold/propensity_scores. Returns rows written."""
    settings = settings_of(ctx)
    champ = registry.champion(spec.name)
    if champ is None and not registry.aliases(spec.name):
        # Never trained: the train stage left it out (too few labelled customers, a young
        # company) and said why; `run all` goes on to the audiences that need no score.
        ctx.progress(
            f"{spec.name}: not scored: no champion nor challenger yet (not trained: the train "
            "run log says why)"
        )
        ctx.run.metric(model_metric(spec.name, "not_scored"), "no champion nor challenger")
        return 0
    if champ is None:
        challenger = registry.aliases(spec.name).get(R.CHALLENGER)
        why = (
            f" (version {challenger} is the challenger: its 'promotion' tag and the train run "
            "log say why it was not promoted; models.out_of_time.heuristic_fallback lets the "
            "heuristic score instead)"
            if challenger
            else ""
        )
        raise ValueError(
            f"model {spec.name!r} has no champion in "
            f"{R.registered_name(ctx.config.env, spec.name)}{why}; run `cdp run train` first"
        )
    # Pin the version: the alias may move while we score.
    model = registry.load(f"models:/{R.registered_name(ctx.config.env, spec.name)}/{champ.version}")
    feats = population(features_at(ctx, inputs, as_of), spec, settings.labels)
    scored = raw_scores(model, feats).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        thresholds = quantile_thresholds(scored, 10)
        rows = score_rows(
            scored,
            thresholds=thresholds,
            model_name=spec.name,
            model_version=champ.version,
            as_of=as_of,
            run_id=ctx.run.run_id,
        )
        result = replace_rows(
            ctx,
            SCORES_TABLE,
            rows,
            f"as_of = DATE'{as_of.isoformat()}' AND model_name = '{spec.name}'",
        )
    finally:
        scored.unpersist()
    ctx.run.wrote(SCORES_TABLE, result.rows_written)
    ctx.run.metric(model_metric(spec.name, SCORED_VERSION), champ.version)
    ctx.progress(
        f"{spec.name}: scored {result.rows_written:,} customers at {as_of} with version {champ.version}"
    )
    return result.rows_written


def run_score(ctx: StageContext) -> None:
    """The ``score`` stage: every selected model's champion over the features at ``as_of``."""
    for_each_model(ctx, default_score_as_of, score_model)
