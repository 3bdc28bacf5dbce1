"""The train stage's out-of-time check: does the chosen configuration still beat the heuristic
when it has to predict a period it never saw?

Why: a hash split puts the same weeks in train and holdout, so a model can look better there
than it is on next quarter's customers. On a real retail log the stage's GBT winner had an
out-of-time ROC-AUC of 0.749 against the recency/frequency heuristic's 0.771, while its hash
holdout (0.759) did not show it (issue 26).

The dates, with ``t0`` the train stage's ``as_of`` (the normal fit: features at ``t0``, labels
in the horizon after it) and ``h`` the label horizon:

* **fit** the chosen candidate's configuration (the same estimator and hyper-parameters: no
  second search, one extra fit per model) on the train-part customers' features at
  ``t0 - h`` with their labels in the horizon after it, which ends at ``t0``: only outcomes
  that are known;
* **score** the holdout customers at ``t0`` with their labels: the rows the candidate, the
  heuristic and the champion were already evaluated on, so the three compare on the same
  customers and the same period. These customers are in no model's training set (the split
  is a stable hash), which also keeps a champion trained at a later date than ``t0`` from
  being scored on outcomes it learned from. The heuristic and the champion fit nothing on
  these rows, so their values here are their holdout values.

The features at ``t0 - h`` are read or built through ``features_at`` (as the backtest does),
and stay in gold/customer_features for the next run. When the history is too short for the
earlier fit (no purchase before ``t0 - h``, or one class only among its customers) the check
is skipped with the reason in the run log and the MLflow run; it is never a failure. The rule
that uses the result is :mod:`cdp.models.promotion`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from pyspark import StorageLevel
from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cdp.models.inputs import Inputs, scalar
from cdp.models.labels import LABEL
from cdp.models.settings import ModelsConfig, ModelSpec
from cdp.models.train import (
    Candidate,
    Evaluation,
    build_pipeline,
    cap_rows,
    drop_training_summaries,
    evaluate,
    non_empty,
    split_customers,
    with_score,
)
from cdp.models.train_record import BTYD_OOT, CHAMPION_OOT, HEURISTIC_OOT, OUT_OF_TIME
from cdp.models.train_steps import ChampionCheck, HoldoutEvaluations, SearchResult, labelled_data
from cdp.stage import StageContext


@dataclass
class OutOfTime:
    """The check's result: the candidate's configuration fitted at ``train_as_of``, the
    heuristic and the champion, each on the holdout customers at the stage's ``as_of``;
    ``skipped`` says why there is no ``model`` evaluation."""

    train_as_of: date
    model: Evaluation | None = None
    heuristic: Evaluation | None = None
    champion: Evaluation | None = None
    btyd: Evaluation | None = None  # BG/NBD alone: fitted before as_of, so its holdout values
    skipped: str | None = None
    # Features without a value at train_as_of, which the earlier fit had to leave out.
    dropped: list[str] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        """``oot_*``, ``heuristic_oot_*``, ``champion_oot_*`` and ``btyd_oot_*`` (empty when
        skipped)."""
        if self.model is None:
            return {}
        out = self.model.metrics(OUT_OF_TIME)
        if self.heuristic is not None:
            out.update(self.heuristic.metrics(HEURISTIC_OOT))
        if self.champion is not None:
            out.update(self.champion.metrics(CHAMPION_OOT))
        if self.btyd is not None:
            out.update(self.btyd.metrics(BTYD_OOT))
        return out


def earlier_as_of(as_of: date, settings: ModelsConfig) -> date:
    """Where the check fits: one label horizon before ``as_of``."""
    return as_of - timedelta(days=settings.labels.horizon_days)


def history_gap(first_purchase: date | None, train_as_of: date) -> str | None:
    """Why the history is too short to fit at ``train_as_of`` (None when it is not)."""
    if first_purchase is None:
        return "no transactions"
    if first_purchase >= train_as_of:
        return (
            f"the history starts {first_purchase}; a fit at {train_as_of} "
            "needs purchases before that date"
        )
    return None


def refit_candidate(found: SearchResult) -> Candidate:
    """The configuration the check fits again: the search's choice, no new search."""
    return found.chosen.candidate


def fit_earlier(
    ctx: StageContext,
    spec: ModelSpec,
    inputs: Inputs,
    found: SearchResult,
    train_as_of: date,
    settings: ModelsConfig,
) -> tuple[PipelineModel | None, str | None, list[str]]:
    """(model, None, features dropped) fitted at ``train_as_of`` on the train-part customers,
    or (None, why not, [])."""
    first = scalar(inputs.frames["transactions"].agg(F.min("order_time")))
    gap = history_gap(None if first is None else first.date(), train_as_of)
    if gap:
        return None, gap, []
    data = labelled_data(ctx, spec, train_as_of, inputs, settings)
    data = data.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        train = split_customers(data, settings).train
        row = train.agg(F.count(F.lit(1)).alias("n"), F.sum(LABEL).alias("pos")).first()
        n = int(row["n"]) if row is not None else 0
        pos = int(row["pos"] or 0) if row is not None else 0
        if n == 0 or pos in (0, n):
            return (
                None,
                f"at {train_as_of} the train customers number {n} with {pos} positives; "
                "both classes are needed",
                [],
            )
        capped = cap_rows(train, n, settings.max_train_rows, settings.split_salt)
        # The search dropped features without a value at as_of; those without one at the
        # earlier date go too (an imputer cannot fit an empty column).
        kept = set(non_empty(capped, found.numeric + found.categorical))
        numeric = [c for c in found.numeric if c in kept]
        categorical = [c for c in found.categorical if c in kept]
        dropped = sorted(set(found.numeric + found.categorical) - kept)
        try:
            pipeline = build_pipeline(
                numeric, categorical, refit_candidate(found), settings.search.seed
            )
            model = drop_training_summaries(pipeline.fit(capped))
        except Exception as exc:  # the gate then reads the holdout: say why, do not fail
            return None, f"the fit at {train_as_of} failed: {_first_line(exc)}", []
        return model, None, dropped
    finally:
        data.unpersist()


def out_of_time_check(
    ctx: StageContext,
    spec: ModelSpec,
    as_of: date,
    inputs: Inputs,
    found: SearchResult,
    holdout: DataFrame,
    evals: HoldoutEvaluations,
    champion: ChampionCheck,
    settings: ModelsConfig,
) -> OutOfTime:
    """The check (module docstring); ``holdout``: the holdout customers at ``as_of`` with
    their labels, on which ``evals`` and ``champion`` were measured."""
    train_as_of = earlier_as_of(as_of, settings)
    model: PipelineModel | None = None
    dropped: list[str] = []
    skipped: str | None = "models.out_of_time.enabled is false"
    if settings.out_of_time.enabled:
        model, skipped, dropped = fit_earlier(ctx, spec, inputs, found, train_as_of, settings)
    if model is None:
        reason = skipped or "no model"
        ctx.progress(f"{spec.name}: out-of-time check skipped: {reason}")
        return OutOfTime(train_as_of, skipped=reason)
    ev = evaluate(with_score(model.transform(holdout)), deciles=settings.calibration_bins)
    result = OutOfTime(
        train_as_of, ev, evals.heuristic, champion.holdout, btyd=evals.btyd, dropped=dropped
    )
    heur = evals.heuristic
    ctx.progress(
        f"{spec.name}: out of time ({found.chosen.candidate.label} fitted at {train_as_of}, "
        f"scored at {as_of}): roc_auc {ev.roc_auc:.4f} pr_auc {ev.pr_auc:.4f}; heuristic "
        f"{heur.roc_auc:.4f}/{heur.pr_auc:.4f}"
        + (
            f"; champion {champion.holdout.roc_auc:.4f}/{champion.holdout.pr_auc:.4f}"
            if champion.holdout is not None
            else ""
        )
        + (
            f"; BG/NBD alone {evals.btyd.roc_auc:.4f}/{evals.btyd.pr_auc:.4f}"
            if evals.btyd is not None
            else ""
        )
        + (f"; left out (no value at {train_as_of}): {', '.join(dropped)}" if dropped else "")
    )
    return result


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}"
