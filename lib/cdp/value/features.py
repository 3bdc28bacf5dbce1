"""BTYD features for the propensity models: expected purchases over the label horizon and
P(alive) at the features' ``as_of``, from a BG/NBD fitted strictly on data before ``as_of``.

:func:`fit_for_features` fits once per feature build (the ``features`` stage, or ``train`` /
``score`` / ``backtest`` building a missing slice), on the same bounded sample as the
``value`` stage; :func:`btyd_columns` adds the scored columns to the transaction features.
Without a fit (the option off, PyMC-Marketing absent, too few buyers, a degenerate fit) the columns exist but
are null, so gold/customer_features keeps one schema and training drops the empty columns
like any other (:func:`cdp.models.train.non_empty`).
"""

from __future__ import annotations

from datetime import date

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cdp.value.fit import BtydFit, DegenerateFit, fit_btyd, fit_sample, library_available
from cdp.value.rfm import KEY, rfm_summary
from cdp.value.score import feature_columns, score_features
from cdp.value.settings import ValueConfig


def fit_for_features(
    transactions: DataFrame, as_of: date, settings: ValueConfig
) -> tuple[BtydFit | None, str]:
    """The fit at ``as_of`` from attributed ``transactions`` (customer_id, order_time,
    amount), or None, and a sentence that says what happened (for the stage's progress)."""
    if not settings.features:
        return None, "BTYD features off (value.features=false)"
    if not library_available():
        return None, "BTYD features left out: pymc-marketing is not installed"
    try:
        fit = fit_btyd(fit_sample(rfm_summary(transactions, as_of), settings), settings)
    except DegenerateFit as e:
        return None, f"BTYD features left out at {as_of}: {e}"
    if fit is None:
        return None, (
            f"BTYD features left out: fewer than value.min_fit_customers="
            f"{settings.min_fit_customers} buyers before {as_of}"
        )
    return fit, (
        f"BTYD features: BG/NBD fitted on {fit.sample_customers:,} customers before {as_of} "
        f"in {fit.seconds:.1f}s"
    )


def btyd_columns(
    features: DataFrame,
    transactions: DataFrame,
    as_of: date,
    fit: BtydFit | None,
    horizon_days: int,
) -> DataFrame:
    """``features`` (one row per customer_id) with the BTYD feature columns
    (:func:`cdp.value.score.feature_columns`): scored on the executors, null without a fit."""
    purchases, alive = feature_columns(horizon_days)
    if fit is None:
        return features.withColumn(purchases, F.lit(None).cast("double")).withColumn(
            alive, F.lit(None).cast("double")
        )
    scored = score_features(rfm_summary(transactions, as_of), fit, horizon_days)
    return features.join(scored, KEY, "left")
