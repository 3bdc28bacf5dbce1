"""The BTYD fit (cdp.value.fit) is deterministic for a seed, and the executor-side scoring
(cdp.value.score) gives exactly what the library's own models predict in the driver."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession

from cdp.value.fit import fit_btyd
from cdp.value.score import VALUE_COLUMNS, FittedModels, predict_value, score_value
from cdp.value.settings import ValueConfig

pytest.importorskip("pymc_marketing")

SETTINGS = ValueConfig(seed=7)


def synthetic_rfm(n: int = 400, seed: int = 3) -> pd.DataFrame:
    """An RFM summary from a BG/NBD-like process: gamma purchase rates, geometric dropout."""
    rng = np.random.default_rng(seed)
    T = rng.integers(30, 400, n).astype(float)
    rate = rng.gamma(0.8, 1 / 40, n)
    p_drop = rng.beta(1.0, 6.0, n)
    freq, rec = np.zeros(n), np.zeros(n)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1 / rate[i])
            if t > T[i]:
                break
            freq[i] += 1
            rec[i] = np.floor(t)
            if rng.random() < p_drop[i]:
                break
    spend = np.where(freq > 0, rng.gamma(4.0, 12.0, n), 0.0)
    return pd.DataFrame(
        {
            "customer_id": [f"c{i:04d}" for i in range(n)],
            "frequency": freq,
            "recency": rec,
            "T": T,
            "monetary_value": spend,
        }
    )


def test_fit_is_deterministic_for_a_seed() -> None:
    data = synthetic_rfm()
    first = fit_btyd(data, SETTINGS)
    again = fit_btyd(data.sample(frac=1.0, random_state=1), SETTINGS)  # row order: no matter
    assert first is not None and again is not None
    assert first.spend is not None
    assert first.purchases == again.purchases and first.spend == again.spend
    assert first.version == again.version
    assert set(first.purchases) >= {"a", "b", "alpha", "r"}
    assert set(first.spend) >= {"p", "q", "v"}
    assert first.sample_customers == len(data)
    # Too few customers: nothing to fit.
    assert fit_btyd(data.head(5), SETTINGS) is None


def test_scoring_udf_equals_the_library_in_the_driver(spark: SparkSession) -> None:
    from pymc_marketing.clv import BetaGeoModel, GammaGammaModel

    data = synthetic_rfm()
    fit = fit_btyd(data, SETTINGS)
    assert fit is not None
    # The library's models fitted the same way, used directly.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bg = BetaGeoModel(data=data[["customer_id", "frequency", "recency", "T"]])
        bg.fit(method="map", seed=7, progressbar=False)
        repeat = data[(data["frequency"] > 0) & (data["monetary_value"] > 0)]
        gg = GammaGammaModel(data=repeat[["customer_id", "frequency", "monetary_value"]])
        gg.fit(method="map", seed=7, progressbar=False)
    assert float(bg.fit_result["r"].values.ravel()[0]) == fit.purchases["r"][0]

    rows = data.iloc[[0, 1, 2, 3, 5, 8, 13, 21, 34, 55]].reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = pd.DataFrame(
            {
                "customer_id": rows["customer_id"],
                "expected_purchases_90d": bg.expected_purchases(rows, future_t=90).values.ravel(),
                "expected_purchases_365d": bg.expected_purchases(rows, future_t=365).values.ravel(),
                "p_alive": bg.expected_probability_alive(rows).values.ravel(),
                "expected_spend_per_order": gg.expected_customer_spend(rows).values.ravel(),
                "clv_12m": gg.expected_customer_lifetime_value(
                    bg, rows, future_t=12, discount_rate=0.0, time_unit="D"
                ).values.ravel(),
            }
        )
    # In the driver, through the same function the UDF runs ...
    local = predict_value(rows, FittedModels(fit))
    pd.testing.assert_frame_equal(local, expected, rtol=1e-9)
    # ... and on the executors.
    scored = score_value(spark.createDataFrame(rows), fit).toPandas()
    scored = scored.set_index("customer_id").loc[rows["customer_id"]].reset_index()
    pd.testing.assert_frame_equal(scored[list(expected.columns)], expected, rtol=1e-9)
    assert scored["p_alive"].between(0, 1).all()
    assert (scored[list(VALUE_COLUMNS)] >= 0).all().all()


def test_a_fit_on_the_edge_is_refused() -> None:
    from cdp.value.fit import DegenerateFit, check_purchases, spend_usable

    fine = {"a": [0.88], "b": [5.3], "alpha": [42.0], "r": [0.43], "phi_dropout": [0.14]}
    check_purchases(fine)
    check_purchases({**fine, "kappa_dropout": [1.0000001]})  # the prior's mode: kept
    # No dropout at all (seen on a small, very regular history): expected purchases would
    # come out negative and rank customers backwards.
    with pytest.raises(DegenerateFit, match="phi_dropout"):
        check_purchases({**fine, "a": [0.0], "phi_dropout": [0.0]})
    with pytest.raises(DegenerateFit, match="alpha"):
        check_purchases({**fine, "alpha": [float("nan")]})
    assert spend_usable({"p": [2.6], "q": [3.7], "v": [48.0]})
    assert not spend_usable({"p": [2.6], "q": [0.9], "v": [48.0]})  # no finite mean spend
