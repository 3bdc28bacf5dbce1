"""Fitting the BTYD models in the driver, on a bounded, seeded sample of the RFM summary.

Two models from PyMC-Marketing's CLV module (the reference implementation; ``lifetimes`` is
unmaintained, and a hand-written likelihood would be ours to get right):

* BG/NBD (``BetaGeoModel``): how often a customer buys while alive, and when they drop out;
  gives expected purchases over a horizon and P(alive);
* Gamma-Gamma (``GammaGammaModel``): the spend per purchase day, fitted on repeat customers
  with a positive mean spend (its assumption: spend is independent of frequency).

The fit needs the whole sample in one place, so the driver takes at most
``value.fit_sample_max`` customers: those with the smallest hash of (seed, customer id), a
sample that does not depend on partitioning and is the same on every rerun. The result is a
handful of numbers per model (:class:`BtydFit`), which the executors use to score everyone
(:mod:`cdp.value.score`). ``fit_method`` ``map`` (default) finds the posterior mode: seconds,
and deterministic; the sampling methods keep up to ``max_draws`` draws, over which the
predictions average.

PyTensor compiles the models' C code at first use (40 s cold on 2 cores, 8 s warm), cached in
its compile directory afterwards; set ``PYTENSOR_FLAGS=base_compiledir=...`` where the home
directory is not writable, and ``python -m cdp.value.warm`` fills it ahead of a run.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cdp.value.rfm import KEY, RFM_COLUMNS
from cdp.value.settings import ValueConfig

LIBRARY = "pymc-marketing"
PURCHASE_MODEL = "bg_nbd"
SPEND_MODEL = "gamma_gamma"
Params = dict[str, list[float]]  # parameter -> its draws (one value for a MAP fit)


def library_available() -> bool:
    """True when PyMC-Marketing is installed (the ``clv`` extra)."""
    return importlib.util.find_spec("pymc_marketing") is not None


def library_version() -> str:
    from importlib.metadata import version

    return version(LIBRARY)


@dataclass(frozen=True)
class BtydFit:
    """The fitted parameters (no customer data) and how they were obtained."""

    purchases: Params  # BG/NBD
    spend: Params | None  # Gamma-Gamma; None when too few repeat customers had a spend
    fit_method: str
    seed: int
    sample_customers: int
    sample_repeat_customers: int
    library_version: str
    seconds: float = field(default=0.0, compare=False)

    @property
    def version(self) -> str:
        """``clv-<hash>`` of the models, their parameters and the library version: the same
        fit gives the same version, so a rerun on the same data writes the same rows."""
        body = {k: v for k, v in self.to_json().items() if k != "seconds"}
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        return f"clv-{digest[:12]}"

    def to_json(self) -> dict[str, Any]:
        """Plain data for the MLflow artifact and the broadcast to executors."""
        out = asdict(self)
        out["purchase_model"] = PURCHASE_MODEL
        out["spend_model"] = SPEND_MODEL if self.spend is not None else None
        return out


def fit_sample(rfm: DataFrame, settings: ValueConfig) -> pd.DataFrame:
    """At most ``fit_sample_max`` rows of ``rfm`` in the driver: the smallest hashes of
    (seed, customer id), so the sample is the same whatever the partitioning (a top-k, not a
    sort of the whole table)."""
    order = F.xxhash64(F.lit(settings.seed), F.col(KEY))
    rows = rfm.select(*RFM_COLUMNS).orderBy(order, F.col(KEY)).limit(settings.fit_sample_max)
    pdf: pd.DataFrame = rows.toPandas()
    for column in RFM_COLUMNS[1:]:
        pdf[column] = pdf[column].astype("float64")
    return pdf


def _draws(result: Any, max_draws: int) -> Params:
    """Every scalar parameter of a fit's posterior as a list of draws (evenly thinned)."""
    out: Params = {}
    for name, var in result.data_vars.items():
        if set(var.dims) != {"chain", "draw"}:
            continue  # per-customer or vector variables: none in these models without covariates
        values = np.asarray(var.transpose("chain", "draw").values, dtype="float64").ravel()
        if values.size > max_draws:
            values = values[np.linspace(0, values.size - 1, max_draws).round().astype(int)]
        out[str(name)] = [float(v) for v in values]
    return out


class DegenerateFit(ValueError):
    """The optimum lies on the edge of a parameter's support: predictions from it are not
    meaningful (BG/NBD with no dropout at all gives negative expected purchases that rank
    customers backwards), so the caller goes on without them and says why."""


# Edges of the supports: BG/NBD's phi_dropout ~ Uniform(0, 1) (a = phi * kappa), every other
# parameter > 0; Gamma-Gamma's mean spend p * v / (q - 1) needs q > 1. kappa_dropout at its
# Pareto prior's lower bound (1) is the prior's mode winning over thin data, not an edge of
# the likelihood: such fits predicted well on generated data and are kept.
_EDGE = 1e-6


def check_purchases(params: Params) -> None:
    """Raise :class:`DegenerateFit` when the BG/NBD optimum is on an edge."""
    bad = [n for n, draws in params.items() if not all(np.isfinite(d) for d in draws)]
    bad += [n for n in ("a", "b", "alpha", "r") if min(params.get(n, [0.0])) <= _EDGE]
    phi = params.get("phi_dropout")
    if phi is not None and not all(_EDGE < v < 1 - _EDGE for v in phi):
        bad.append("phi_dropout")
    if bad:
        raise DegenerateFit(
            f"the BG/NBD fit is degenerate ({', '.join(sorted(set(bad)))} on the edge of "
            "its support: too little or too regular a history to tell dropout apart)"
        )


def spend_usable(params: Params) -> bool:
    """True when the Gamma-Gamma fit gives a finite, positive mean spend."""
    values = [params.get(n) for n in ("p", "q", "v")]
    return (
        all(v is not None and all(np.isfinite(d) and d > _EDGE for d in v) for v in values)
        and min(params["q"]) > 1 + _EDGE
    )


def _fit(model: Any, settings: ValueConfig) -> Params:
    if settings.fit_method == "map":
        kwargs: dict[str, Any] = {"seed": settings.seed, "progressbar": False}
    else:
        kwargs = {"random_seed": settings.seed, "progressbar": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(method=settings.fit_method, **kwargs)
    return _draws(model.fit_result, settings.max_draws)


def fit_btyd(sample: pd.DataFrame, settings: ValueConfig) -> BtydFit | None:
    """BG/NBD on every sampled customer and Gamma-Gamma on the repeat customers with a
    positive mean spend; None when fewer than ``min_fit_customers`` customers were sampled
    (nothing sensible to fit). Raises :class:`DegenerateFit` when the BG/NBD optimum is on an
    edge; a Gamma-Gamma fit without a finite mean spend is dropped (spend unknown)."""
    if len(sample) < settings.min_fit_customers:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # arviz announces its 1.0 migration on import
        from pymc_marketing.clv import BetaGeoModel, GammaGammaModel

    t0 = time.perf_counter()
    # Sorted: the optimiser's sums then do not depend on the order the rows arrived in, so
    # the same customers give bit-identical parameters (and the same model version).
    data = sample[list(RFM_COLUMNS)].sort_values(KEY, kind="stable").reset_index(drop=True)
    purchases = _fit(BetaGeoModel(data=data[[KEY, "frequency", "recency", "T"]]), settings)
    check_purchases(purchases)
    repeat = data[(data["frequency"] > 0) & (data["monetary_value"] > 0)]
    spend: Params | None = None
    if len(repeat) >= settings.min_spend_customers:
        spend = _fit(GammaGammaModel(data=repeat[[KEY, "frequency", "monetary_value"]]), settings)
    return BtydFit(
        purchases=purchases,
        spend=spend,
        fit_method=settings.fit_method,
        seed=settings.seed,
        sample_customers=len(data),
        sample_repeat_customers=len(repeat),
        library_version=library_version(),
        seconds=round(time.perf_counter() - t0, 3),
    )
