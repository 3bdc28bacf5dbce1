"""Who gets the ``champion`` alias: the promotion rule of the train stage, as one pure function.

Two gates, in this order:

1. **The free scorers, out of time.** The candidate's configuration, fitted one horizon
   earlier and scored on the holdout customers at ``as_of`` (:mod:`cdp.models.out_of_time`),
   must not fall below the recency/frequency heuristic on those same customers on any of
   ``out_of_time.gate_metrics`` (ROC-AUC and PR-AUC by default: ROC-AUC ranks everyone,
   PR-AUC the top where campaigns target, and a model that loses either to a free, readable
   rule is not worth serving), nor below BG/NBD's expected purchases alone where the features
   carry a BTYD fit (``out_of_time.btyd_gate``: a two-parameter-per-population model fitted
   before ``as_of``, the peer of every propensity model in the field). When the check could
   not run, the candidate's holdout measures stand in: the free scorers fit nothing on the
   holdout, so their holdout values are already out of sample.
2. **The champion, on the holdout.** As before: the selection metric must beat the current
   champion's on the same holdout customers by more than ``min_improvement``.

A candidate that fails either is registered as ``challenger``; the reason is the run log's,
the MLflow run's and the model version's ``promotion`` text.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdp.models import registry as R
from cdp.models.settings import ModelsConfig
from cdp.models.train import Evaluation, metric_of, promotes


@dataclass(frozen=True)
class Decision:
    """Whether the candidate takes the ``champion`` alias, and why, in words."""

    promote: bool
    reason: str
    # The candidate lost to a free scorer, the heuristic or BG/NBD alone (the fallback may
    # then serve the better of the two).
    loses_to_heuristic: bool = False

    @property
    def alias(self) -> str:
        return R.CHAMPION if self.promote else R.CHALLENGER


def decide(
    *,
    holdout: Evaluation,
    heuristic: Evaluation,
    settings: ModelsConfig,
    out_of_time: Evaluation | None = None,
    champion: Evaluation | None = None,
    champion_version: str | None = None,
    btyd: Evaluation | None = None,
) -> Decision:
    """The promotion rule (module docstring).

    ``holdout``: the candidate on the holdout; ``heuristic``: the heuristic on the same rows;
    ``out_of_time``: the candidate's configuration fitted one horizon earlier, on those rows
    (None when the check did not run); ``champion``: the current champion on those rows (None
    when there is none, or it could not score them); ``btyd``: BG/NBD alone on those rows
    (None without a BTYD fit)."""
    oot = settings.out_of_time
    evidence, where = (
        (out_of_time, "out of time") if out_of_time is not None else (holdout, "on the holdout")
    )
    free = [("heuristic", heuristic)]
    if btyd is not None and oot.btyd_gate:
        free.append(("BG/NBD alone", btyd))
    for name, scorer in free:
        lost = [
            f"{m} {metric_of(evidence, m):.4f} < {name} {metric_of(scorer, m):.4f}"
            + (f" + {oot.min_margin:g}" if oot.min_margin else "")
            for m in oot.gate_metrics
            if metric_of(evidence, m) < metric_of(scorer, m) + oot.min_margin
        ]
        if lost:
            return Decision(False, f"loses to the {name} {where}: " + "; ".join(lost), True)
    metric = settings.selection_metric
    new_value = metric_of(holdout, metric)
    champ_value = None if champion is None else metric_of(champion, metric)
    versus = f"holdout {metric} {new_value:.4f}"
    if champ_value is not None:
        versus += f" vs champion v{champion_version} {champ_value:.4f}"
    names = " and ".join(name for name, _ in free)
    beats_heuristic = (
        f"not below the {names} {where} ({', '.join(oot.gate_metrics)})"
        if oot.gate_metrics
        else "no heuristic gate"
    )
    if not promotes(new_value, champ_value, settings.min_improvement):
        return Decision(False, f"does not beat the champion ({versus}); {beats_heuristic}")
    first = " (no champion yet)" if champ_value is None else ""
    return Decision(True, f"promoted{first}: {versus}; {beats_heuristic}")
