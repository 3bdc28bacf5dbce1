"""Scoring every customer with a fitted :class:`~cdp.value.fit.BtydFit`, on the executors.

The fitted parameters are a few numbers; they travel inside the ``mapInPandas`` function
(Spark serialises its closure once per task), and each task rebuilds the library's models
from them once (about 0.3 s, no compilation: the predictions are closed-form expressions in
NumPy/SciPy) and calls the library's own prediction functions on each Arrow batch:
``expected_purchases``, ``expected_probability_alive``, ``expected_customer_spend`` and
``expected_customer_lifetime_value``. No customer row reaches the driver.

:func:`predict_value` and :func:`predict_features` are plain pandas functions, so a test can
compare them with the library's predictions in the driver.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame

from cdp.value.fit import BtydFit, Params
from cdp.value.rfm import KEY, RFM_COLUMNS

DAYS_PER_MONTH = 30  # the library's factor for daily data (time_unit="D")
CLV_MONTHS = 12
VALUE_COLUMNS = (
    "expected_purchases_90d",
    "expected_purchases_365d",
    "p_alive",
    "expected_spend_per_order",
    "clv_12m",
)
SCORE_DDL = f"{KEY} string, " + ", ".join(f"{c} double" for c in VALUE_COLUMNS)


def feature_columns(horizon_days: int) -> tuple[str, str]:
    """The BTYD feature columns of gold/customer_features for a label horizon."""
    return f"btyd_expected_purchases_{horizon_days}d", "btyd_p_alive"


def _posterior(params: Params) -> Any:
    import arviz as az
    import xarray as xr

    return az.InferenceData(
        posterior=xr.Dataset(
            {name: (("chain", "draw"), [list(draws)]) for name, draws in params.items()}
        )
    )


class FittedModels:
    """The library's model objects carrying the fitted parameters (built once per task)."""

    def __init__(self, fit: BtydFit) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pymc_marketing.clv import BetaGeoModel, GammaGammaModel

            # The prediction methods read the model's coordinates, so the graph is built,
            # from one placeholder row; the fitted parameters replace the posterior.
            placeholder = pd.DataFrame(
                {KEY: ["_"], "frequency": [1.0], "recency": [1.0], "T": [2.0]}
            )
            self.purchases = BetaGeoModel(data=placeholder)
            self.purchases.build_model()
            self.purchases.idata = _posterior(fit.purchases)
            self.spend: Any = None
            if fit.spend is not None:
                self.spend = GammaGammaModel(
                    data=placeholder.assign(monetary_value=1.0)[
                        [KEY, "frequency", "monetary_value"]
                    ]
                )
                self.spend.idata = _posterior(fit.spend)


def _per_customer(result: Any, ids: pd.Series) -> np.ndarray:
    """The posterior mean per customer, in the order of ``ids`` (the library indexes its
    results by customer id and may reorder them)."""
    dims = [d for d in ("chain", "draw") if d in result.dims]
    series = result.mean(dims).to_series() if dims else result.to_series()
    values = series.reindex(ids.to_numpy()).to_numpy(dtype="float64")
    return np.where(np.isfinite(values), values, np.nan)


def _rfm(pdf: pd.DataFrame) -> pd.DataFrame:
    out = pdf[list(RFM_COLUMNS)].reset_index(drop=True)
    for column in RFM_COLUMNS[1:]:
        out[column] = out[column].astype("float64")
    return out


def predict_value(
    pdf: pd.DataFrame, models: FittedModels, discount_rate_monthly: float = 0.0
) -> pd.DataFrame:
    """customer_id and :data:`VALUE_COLUMNS` of the customers of ``pdf`` (RFM columns).

    Without a spend model the spend and CLV columns are null."""
    data = _rfm(pdf)
    ids = data[KEY]
    out = pd.DataFrame({KEY: ids.astype(str)})
    if data.empty:
        return out.assign(**{c: pd.Series(dtype="float64") for c in VALUE_COLUMNS})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bg = models.purchases
        for days in (90, 365):
            out[f"expected_purchases_{days}d"] = _per_customer(
                bg.expected_purchases(data, future_t=days), ids
            )
        out["p_alive"] = _per_customer(bg.expected_probability_alive(data), ids)
        if models.spend is None:
            out["expected_spend_per_order"] = np.nan
            out["clv_12m"] = np.nan
            return out
        gg = models.spend
        out["expected_spend_per_order"] = _per_customer(gg.expected_customer_spend(data), ids)
        out["clv_12m"] = _per_customer(
            gg.expected_customer_lifetime_value(
                bg,
                data,
                future_t=CLV_MONTHS,
                discount_rate=discount_rate_monthly,
                time_unit="D",
            ),
            ids,
        )
    return out


def predict_features(pdf: pd.DataFrame, models: FittedModels, horizon_days: int) -> pd.DataFrame:
    """customer_id and the BTYD feature columns (:func:`feature_columns`)."""
    data = _rfm(pdf)
    ids = data[KEY]
    purchases, alive = feature_columns(horizon_days)
    out = pd.DataFrame({KEY: ids.astype(str)})
    if data.empty:
        return out.assign(
            **{purchases: pd.Series(dtype="float64"), alive: pd.Series(dtype="float64")}
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bg = models.purchases
        out[purchases] = _per_customer(bg.expected_purchases(data, future_t=horizon_days), ids)
        out[alive] = _per_customer(bg.expected_probability_alive(data), ids)
    return out


def _batches(
    fit: BtydFit, predict: Callable[[pd.DataFrame, FittedModels], pd.DataFrame]
) -> Any:  # Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]], as mapInPandas takes it
    """The ``mapInPandas`` function: the models built once per task, then every batch."""

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        models: FittedModels | None = None
        for pdf in batches:
            if pdf.empty:
                continue
            models = models or FittedModels(fit)
            yield predict(pdf, models)

    return run


def score_value(rfm: DataFrame, fit: BtydFit, discount_rate_monthly: float = 0.0) -> DataFrame:
    """customer_id and :data:`VALUE_COLUMNS` of every row of ``rfm``, computed on the
    executors."""
    return rfm.select(*RFM_COLUMNS).mapInPandas(
        _batches(fit, lambda pdf, m: predict_value(pdf, m, discount_rate_monthly)), SCORE_DDL
    )


def score_features(rfm: DataFrame, fit: BtydFit, horizon_days: int) -> DataFrame:
    """customer_id and the BTYD feature columns of every row of ``rfm`` (executors)."""
    purchases, alive = feature_columns(horizon_days)
    return rfm.select(*RFM_COLUMNS).mapInPandas(
        _batches(fit, lambda pdf, m: predict_features(pdf, m, horizon_days)),
        f"{KEY} string, {purchases} double, {alive} double",
    )
