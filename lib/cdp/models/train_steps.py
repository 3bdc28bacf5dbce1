"""The steps of training one model, in the order the train stage runs them: labelled data,
the split (both classes in every part), the candidate search, the holdout evaluation (beside
logistic regression, the recency/frequency heuristic, BG/NBD alone and the current champion)
and the alias
given (the rule itself is ``promotion``, the out-of-time check ``out_of_time``). Each returns
what the next needs; the MLflow record is ``train_record``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cdp.models import registry as R
from cdp.models.features_stage import features_at
from cdp.models.inputs import Inputs, scalar
from cdp.models.labels import LABEL, build_labels, labelled
from cdp.models.promotion import Decision
from cdp.models.settings import ModelsConfig, ModelSpec
from cdp.models.train import (
    Evaluation,
    Split,
    Trial,
    best,
    btyd_score,
    cap_rows,
    evaluate,
    feature_columns,
    heuristic_score,
    metric_of,
    non_empty,
    search,
    with_score,
)
from cdp.stage import StageContext
from cdp.value.score import feature_columns as btyd_feature_columns

PARTS = ("train", "validation", "holdout")


@dataclass
class SearchResult:
    """The search's trials, the chosen one and the best logistic regression."""

    trials: list[Trial]
    chosen: Trial
    lr: Trial
    numeric: list[str]
    categorical: list[str]
    seconds: float
    left_out: list[str] = field(default_factory=list)  # features of inputs without rows


@dataclass
class HoldoutEvaluations:
    """The chosen model, the best LR, the heuristic and BG/NBD alone (None without a BTYD
    fit) on the same holdout customers."""

    chosen_scored: DataFrame
    model: Evaluation
    lr: Evaluation
    heuristic: Evaluation
    btyd: Evaluation | None = None


@dataclass
class ChampionCheck:
    """The current champion on the same holdout, so the comparison is like for like."""

    info: R.ChampionInfo | None = None
    holdout: Evaluation | None = None
    error: str | None = None  # why it could not score the holdout


def labelled_data(
    ctx: StageContext, spec: ModelSpec, as_of: date, inputs: Inputs, settings: ModelsConfig
) -> DataFrame:
    """The features at ``as_of`` of the customers ``spec`` trains on, with their labels (not
    persisted); :func:`cdp.models.train.split_customers` keeps validation and holdout to
    its population."""
    features = features_at(ctx, inputs, as_of)
    labels_df = build_labels(
        transactions=inputs.frames["transactions"],
        identity_map=inputs.frames["identity_map"],
        as_of=as_of,
        labels=settings.labels,
    )
    return labelled(features, labels_df, spec, settings.labels, training=True)


def split_counts(split: Split) -> dict[str, tuple[int, int]]:
    """(customers, positives) per part, in one aggregate."""
    return {
        r["part"]: (int(r["n"]), int(r["pos"] or 0))
        for r in split.train.select(F.lit("train").alias("part"), LABEL)
        .unionByName(split.validation.select(F.lit("validation").alias("part"), LABEL))
        .unionByName(split.holdout.select(F.lit("holdout").alias("part"), LABEL))
        .groupBy("part")
        .agg(F.count(F.lit(1)).alias("n"), F.sum(LABEL).alias("pos"))
        .collect()
    }


class TooFewLabels(ValueError):
    """A split part without both classes: nothing to fit or evaluate at this ``as_of`` (the
    message gives the part and its counts)."""


def check_classes(spec: ModelSpec, as_of: date, counts: dict[str, tuple[int, int]]) -> None:
    """Refuse a split part without both classes (no AUC, no fit)."""
    for part in PARTS:
        n, pos = counts.get(part, (0, 0))
        if n == 0 or pos in (0, n):
            raise TooFewLabels(
                f"{spec.name} at {as_of}: the {part} split has {n} customers and {pos} "
                "positives; both classes are needed (more data or an earlier as_of)"
            )


def search_candidates(
    ctx: StageContext,
    data: DataFrame,
    split: Split,
    counts: dict[str, tuple[int, int]],
    settings: ModelsConfig,
    left_out: Sequence[str] = (),
) -> SearchResult:
    """The candidate search on the (capped) train part, chosen on the validation part.

    ``left_out``: feature columns the model must not use (those of an input without rows,
    :func:`cdp.models.features_stage.left_out_features`)."""
    numeric, categorical = feature_columns(data, settings.categorical_features)
    numeric = [c for c in numeric if c not in left_out]
    categorical = [c for c in categorical if c not in left_out]
    train_df = cap_rows(
        split.train, counts["train"][0], settings.max_train_rows, settings.split_salt
    )
    kept = non_empty(train_df, numeric + categorical)
    numeric = [c for c in numeric if c in kept]
    categorical = [c for c in categorical if c in kept]
    t_search = time.perf_counter()
    trials = search(train_df, split.validation, numeric, categorical, settings, log=ctx.progress)
    seconds = time.perf_counter() - t_search
    metric = settings.selection_metric
    return SearchResult(
        trials=trials,
        chosen=best(trials, metric),
        lr=best(trials, metric, "lr"),
        numeric=numeric,
        categorical=categorical,
        seconds=seconds,
        left_out=sorted(left_out),
    )


def evaluate_holdout(
    ctx: StageContext,
    spec: ModelSpec,
    found: SearchResult,
    holdout: DataFrame,
    settings: ModelsConfig,
) -> HoldoutEvaluations:
    """The chosen model, the best LR and the heuristic on the holdout."""
    bins = settings.calibration_bins
    chosen_scored = with_score(found.chosen.model.transform(holdout))
    chosen_eval = evaluate(chosen_scored, deciles=bins)
    lr_eval = (
        chosen_eval
        if found.lr is found.chosen
        else evaluate(with_score(found.lr.model.transform(holdout)), deciles=bins)
    )
    heur_eval = evaluate(holdout.transform(heuristic_score(spec.label)), probabilities=False)
    btyd_eval = evaluate_btyd(holdout, spec, settings)
    ctx.progress(
        f"{spec.name}: holdout roc_auc {chosen_eval.roc_auc:.4f} pr_auc {chosen_eval.pr_auc:.4f} "
        f"({found.chosen.candidate.label}); LR {lr_eval.roc_auc:.4f}/{lr_eval.pr_auc:.4f}; "
        f"heuristic {heur_eval.roc_auc:.4f}/{heur_eval.pr_auc:.4f}"
        + (
            f"; BG/NBD alone {btyd_eval.roc_auc:.4f}/{btyd_eval.pr_auc:.4f}"
            if btyd_eval is not None
            else ""
        )
    )
    return HoldoutEvaluations(chosen_scored, chosen_eval, lr_eval, heur_eval, btyd_eval)


def evaluate_btyd(holdout: DataFrame, spec: ModelSpec, settings: ModelsConfig) -> Evaluation | None:
    """BG/NBD's expected purchases alone (:func:`btyd_score`) on the holdout, the peer a
    model must beat besides the heuristic (issue 26); None when the features carry no BTYD
    fit (the option off, too few buyers, PyMC-Marketing absent)."""
    column, _ = btyd_feature_columns(settings.labels.horizon_days)
    if column not in holdout.columns:
        return None
    if scalar(holdout.agg(F.count(column))) in (None, 0):
        return None
    return evaluate(holdout.transform(btyd_score(spec.label, column)), probabilities=False)


def champion_on_holdout(
    ctx: StageContext,
    registry: R.Registry,
    spec: ModelSpec,
    holdout: DataFrame,
    settings: ModelsConfig,
) -> ChampionCheck:
    """The current champion evaluated on ``holdout``; its error when it cannot score it."""
    champ = registry.champion(spec.name)
    if champ is None:
        return ChampionCheck()
    try:
        champ_model = registry.load(
            f"models:/{R.registered_name(ctx.config.env, spec.name)}/{champ.version}"
        )
        champ_eval = evaluate(
            with_score(champ_model.transform(holdout)), deciles=settings.calibration_bins
        )
        return ChampionCheck(champ, champ_eval)
    except Exception as exc:  # features changed shape: the champion cannot compete
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        ctx.progress(f"{spec.name}: champion v{champ.version} could not score the holdout: {error}")
        return ChampionCheck(champ, None, error)


def move_alias(
    ctx: StageContext,
    registry: R.Registry,
    spec: ModelSpec,
    as_of: date,
    version: str,
    chosen: Evaluation,
    decision: Decision,
    settings: ModelsConfig,
) -> str:
    """Give the new version the alias :func:`cdp.models.promotion.decide` chose (``champion``
    or ``challenger``) and tag it with the reason."""
    metric = settings.selection_metric
    alias = decision.alias
    registry.set_alias(spec.name, alias, version)
    registry.tag_version(
        spec.name,
        version,
        {
            f"holdout_{metric}": f"{metric_of(chosen, metric):.6f}",
            "as_of": as_of.isoformat(),
            "cdp.run_id": ctx.run.run_id,
            "promotion": decision.reason,
        },
    )
    ctx.progress(f"{spec.name}: registered version {version} as {alias}: {decision.reason}")
    return alias
