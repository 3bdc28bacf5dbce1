"""The probabilistic step of the ``identity`` stage: matching input -> model (trained or
reused from MLflow) -> scored pairs -> links, review queue and the pairs' explanations.

Nothing here writes a table: the stage writes what :func:`run_matching` returns, after every
check has passed (a bad blocking rule fails before any write).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import reduce
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp.identity.matching import links as L
from cdp.identity.matching.comparisons import ELSE_LABEL, NULL_LABEL
from cdp.identity.matching.config import MatchingRules, PersonCheck
from cdp.identity.matching.model import (
    NoTrainingPairs,
    TrainedModel,
    drop_scratch,
    explain,
    levels_of,
    plan_blocking,
    score,
    smoothed,
    train,
    with_prediction_blocking,
)
from cdp.identity.matching.prepare import matching_input

log = logging.getLogger(__name__)

MODEL_NAME = "identity_matching"


@dataclass
class MatchingResult:
    """What the probabilistic step found (every frame lazy or materialised, none collected)."""

    links: DataFrame | None  # LINK_COLUMNS layout: scored pairs and must-link decisions
    pairs: DataFrame | None  # accepted scored pairs with levels and weights
    review: DataFrame | None  # grey-zone pairs for a steward
    cannot_tokens: DataFrame | None  # node, _v__cannot
    metrics: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # Fields of the person checks that stood down: too noisy, by the model, to tell people
    # apart (the stage relaxes merge protection's conflicts on them too).
    noisy_fields: list[str] = field(default_factory=list)


class ModelStore:
    """Where trained matching models live (MLflow through :mod:`cdp.models.registry`)."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry

    def load(self, rules: MatchingRules) -> tuple[TrainedModel, datetime] | None:
        run = self.registry.latest_run(MODEL_NAME, {"fingerprint": rules.fingerprint()})
        if run is None:
            return None
        # Floored on reading too (idempotent): a model saved before untrained levels were
        # floored scores like one trained now, instead of with Splink's defaults.
        settings = smoothed(self.registry.read_json(run.info.run_id, "evaluation/model.json"))
        records = int(run.data.metrics.get("records", 0))
        started = datetime.fromtimestamp(run.info.start_time / 1000, tz=timezone.utc)
        return TrainedModel(settings, rules.fingerprint(), records), started

    def save(
        self, model: TrainedModel, rules: MatchingRules, *, run_name: str, data_versions: str
    ) -> str:
        weights = model.match_weights()
        logged = self.registry.log_run(
            model_name=MODEL_NAME,
            run_name=run_name,
            model=None,
            params={
                "comparisons": [c.name for c in rules.comparisons],
                "blocking": rules.blocking,
                "tables": rules.tables,
                "min_fields": rules.min_fields,
                "seed": rules.training.seed,
                "engine": rules.training.engine,
                "max_records": rules.training.max_records,
                "u_max_pairs": rules.training.u_max_pairs,
                "em_blocking": rules.training.em_blocking,
                "em_max_pairs": rules.training.em_max_pairs,
                "training_data_versions": data_versions,
            },
            metrics={
                "records": float(model.records),
                "probability_two_random_records_match": float(
                    model.settings.get("probability_two_random_records_match", 0.0)
                ),
            },
            tags={"fingerprint": rules.fingerprint(), "training_data_versions": data_versions},
            figures={"match_weights": _weights_chart(weights)},
            json_artifacts={
                "model": model.settings,
                "match_weights": weights,
                "em_sessions": model.em_sessions,
            },
            register=False,
        )
        return str(logged.run_id)


def _weights_chart(weights: Sequence[Mapping[str, Any]]) -> Any:
    """A horizontal bar chart of every level's match weight (Splink's chart, in matplotlib)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    rows = [w for w in weights if w["match_weight"] is not None][::-1]
    fig, ax = plt.subplots(figsize=(7, max(3, 0.25 * len(rows) + 1)))
    ax.barh(
        [f"{w['comparison']}: {w['level']}" for w in rows],
        [max(-20.0, min(20.0, w["match_weight"])) for w in rows],
        color=["#2a7" if w["match_weight"] > 0 else "#c44" for w in rows],
    )
    ax.axvline(0, color="k", linewidth=0.8)
    ax.set_xlabel("match weight (log2 Bayes factor, clipped to ±20)")
    ax.set_title("identity matching: match weights per comparison level")
    return fig


def run_matching(
    spark: SparkSession,
    frames: Mapping[str, DataFrame],
    records: DataFrame,
    rules: MatchingRules,
    *,
    nicknames: Mapping[str, Sequence[str]],
    decisions: list[L.Decision],
    models: ModelStore | None,
    retrain: bool,
    run_id: str,
    data_versions: str,
    now: datetime,
    cut: Callable[[DataFrame], DataFrame],
    progress: Callable[[str], None] = lambda m: None,
) -> MatchingResult:
    """Score record pairs and turn them (and the steward's decisions) into graph links.

    ``cut`` materialises a frame *without* its lineage (Parquet written and read back): the
    links, pairs and review rows then carry no trace of Splink's plans into the stage.
    """
    result = MatchingResult(None, None, None, None)
    decided = None
    if decisions:
        decided = cut(L.decided_pairs(L.decisions_frame(spark, decisions), records))
        must = decided.where(F.col("decision") == "must_link")
        result.links = L.pair_links(
            must, rule=L.MUST_LINK_RULE, id_type=L.STEWARD_TYPE, priority=L.MUST_LINK_PRIORITY
        )
        result.cannot_tokens = L.cannot_link_tokens(decided)
        counts = {r["decision"]: int(r["n"]) for r in decided.groupBy("decision").agg(
            F.count(F.lit(1)).alias("n")).collect()}  # fmt: skip
        result.metrics.update({f"decisions.{k}": v for k, v in counts.items()})
        if len(decisions) > sum(counts.values()):
            result.notes.append(
                f"{len(decisions) - sum(counts.values())} decision(s) name a record that is "
                "not live; ignored"
            )
    if not rules.enabled or not rules.comparisons or not rules.blocking:
        result.notes.append("probabilistic matching off (disabled or nothing to compare)")
        return result

    if not set(rules.tables) & set(frames):
        # A company without those tables yet (transactions only): nothing to compare.
        result.notes.append(f"probabilistic matching: no table of {rules.tables} present")
        return result
    started = time.monotonic()
    inputs = cut(matching_input(frames, rules, nicknames))
    n = inputs.count()
    result.metrics["matching.records"] = n
    if n < 2:
        result.notes.append("probabilistic matching: fewer than two records to compare")
        return result
    # Fails before any write on a blow-up; broad rules join where the data affords them.
    planned, blocked, left_out = plan_blocking(inputs, rules)
    result.notes += left_out
    result.metrics["matching.pairs_blocked"] = sum(blocked)
    result.metrics["matching.broad_rules_used"] = len(planned.blocking) - len(rules.blocking)

    model = None
    if models is not None and not retrain:
        found = models.load(rules)
        if found is not None:
            model, trained_at = found
            every = rules.training.train_every_days
            if every is not None and now - trained_at > timedelta(days=every):
                progress(f"matching model trained {trained_at:%Y-%m-%d}: older than {every} days")
                model = None
    if model is None:
        from splink.internals.exceptions import EMTrainingException

        t0 = time.monotonic()
        try:
            model = train(spark, inputs, rules)
        except EMTrainingException:
            # A small company's first records (a few dozen customers, none twice in the
            # person tables) give a training rule no pair at all: the exact rules still link
            # them; matching is trained on a later run, once there are pairs to learn from.
            result.notes.append(
                f"probabilistic matching not trained: a training blocking rule finds no pair "
                f"among {n:,} records; exact rules only this run"
            )
            return result
        except NoTrainingPairs as exc:
            result.notes.append(
                f"probabilistic matching not trained: {exc}; exact rules only this run"
            )
            return result
        result.metrics["matching.train_seconds"] = round(time.monotonic() - t0, 1)
        result.metrics["matching.trained"] = 1
        if models is not None:
            mlflow_run = models.save(
                model, rules, run_name=f"identity-matching-{run_id}", data_versions=data_versions
            )
            result.metrics["matching.mlflow_run"] = mlflow_run
        progress(f"matching model trained on {n:,} records")
    else:
        result.metrics["matching.trained"] = 0
        progress("matching model reused from MLflow")

    t0 = time.monotonic()
    th = rules.thresholds
    model = with_prediction_blocking(model, planned)
    scored = score(spark, inputs, model, th.review)
    keys = inputs.select("unique_id", "member_key")
    kept = cut(scored.select("unique_id_l", "unique_id_r", "match_probability", "match_weight",
                             explain(model).alias("weights")))  # fmt: skip
    pairs = (
        levels_of(kept, inputs, model)
        .join(
            keys.select(
                F.col("unique_id").alias("unique_id_l"), F.col("member_key").alias("key_l")
            ),
            "unique_id_l",
        )
        .join(
            keys.select(
                F.col("unique_id").alias("unique_id_r"), F.col("member_key").alias("key_r")
            ),
            "unique_id_r",
        )
        .select(
            F.col("unique_id_l").alias("node_l"),
            F.col("unique_id_r").alias("node_r"),
            "key_l",
            "key_r",
            "match_probability",
            "match_weight",
            "levels",
            "weights",
        )
    )
    if decided is not None:
        pairs = L.without_decided(pairs, decided)
    pairs = cut(pairs)
    drop_scratch(spark)
    checks, stood_down = active_person_checks(rules.person_checks, model)
    result.notes += stood_down
    columns = {c.name: c.columns() for c in rules.comparisons}
    result.noisy_fields = sorted(
        {f for c in rules.person_checks if c not in checks for f in columns.get(c.disagree, [])}
    )
    result.metrics["matching.person_checks_active"] = len(checks)
    held = person_checks_failed(checks)
    accepted = pairs.where((F.col("match_probability") >= th.match) & ~held)
    review = pairs.where((F.col("match_probability") < th.match) | held)
    scored_links = L.pair_links(
        accepted, rule=rules.rule, id_type=rules.rule, priority=rules.priority
    )
    result.links = scored_links if result.links is None else result.links.unionByName(scored_links)
    result.pairs = accepted
    result.review = review.withColumn("run_id", F.lit(run_id))
    stats = pairs.agg(
        F.count(F.lit(1)).alias("scored"),
        F.sum(((F.col("match_probability") >= th.match) & ~held).cast("long")).alias("links"),
        F.sum(((F.col("match_probability") >= th.match) & held).cast("long")).alias("held"),
    ).first()
    assert stats is not None
    result.metrics["matching.pairs_scored"] = int(stats["scored"])
    result.metrics["matching.pairs_linked"] = int(stats["links"] or 0)
    result.metrics["matching.pairs_review"] = int(stats["scored"]) - int(stats["links"] or 0)
    result.metrics["matching.pairs_held_by_person_checks"] = int(stats["held"] or 0)
    result.metrics["matching.score_seconds"] = round(time.monotonic() - t0, 1)
    result.metrics["matching.seconds"] = round(time.monotonic() - started, 1)
    progress(
        f"matching: {n:,} records, {sum(blocked):,} blocked pairs, {stats['scored']:,} scored "
        f">= {th.review}, {stats['links'] or 0:,} linked >= {th.match}, "
        f"{stats['held'] or 0:,} held for review by person_checks"
    )
    return result


def active_person_checks(
    checks: Sequence[PersonCheck], model: TrainedModel
) -> tuple[list[PersonCheck], list[str]]:
    """The checks that hold pairs under ``model``, and a note per check that stands down
    because the model finds its field disagreeing outright in more matching pairs than the
    check's ``max_m_probability`` (see :class:`~cdp.identity.matching.config.PersonCheck`)."""
    kept, notes = [], []
    for check in checks:
        m_else = model.else_m_probability(check.disagree)
        if m_else is not None and m_else > check.max_m_probability:
            notes.append(
                f"person check on {check.disagree} stood down: the model finds it disagreeing "
                f"in {m_else:.0%} of matching pairs (above {check.max_m_probability:.0%}), "
                "too noisy a field to overrule the model"
            )
        else:
            kept.append(check)
    return kept, notes


def person_checks_failed(checks: Sequence[PersonCheck]) -> Column:
    """Whether a scored pair (its ``levels`` map: comparison -> level label) fails one of
    ``checks`` (see :class:`~cdp.identity.matching.config.PersonCheck`)."""
    levels = F.col("levels")
    failed = F.lit(False)
    for check in checks:
        agrees = [
            F.coalesce(~levels[name].isin(ELSE_LABEL, NULL_LABEL), F.lit(False))
            for name in check.unless_agree
        ]
        saved = reduce(lambda a, b: a | b, agrees, F.lit(False))
        failed = failed | (F.coalesce(levels[check.disagree] == ELSE_LABEL, F.lit(False)) & ~saved)
    return failed
