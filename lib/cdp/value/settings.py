"""The ``value`` section of the run configuration: customer lifetime value (BTYD models).

Kept free of other cdp imports so :mod:`cdp.config` can import it.

    value:
      fit_method: map             # map (seconds) | mcmc | advi | fullrank_advi | demz
      fit_sample_max: 50000       # customers in the driver-side fit (seeded hash sample)
      min_fit_customers: 20       # fewer buyers before as_of: no fit (empty output, said so)
      min_spend_customers: 10     # fewer repeat buyers with spend: no Gamma-Gamma (spend null)
      seed: 42
      discount_rate_monthly: 0.0
      features: true              # BTYD features for the propensity models
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FitMethod = Literal["map", "mcmc", "advi", "fullrank_advi", "demz"]


class ValueConfig(BaseModel):
    """Settings of the ``value`` stage and of the BTYD features."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # "map" finds the posterior mode with L-BFGS (seconds, deterministic); the others sample
    # or approximate the posterior (minutes) and the predictions average over the draws.
    fit_method: FitMethod = "map"
    # The driver fits on at most this many customers: a deterministic hash sample, so the fit
    # costs the same at 50k and at 50M customers and reruns on the same data agree.
    fit_sample_max: int = Field(default=50_000, ge=100, le=2_000_000)
    min_fit_customers: int = Field(default=20, ge=2)
    min_spend_customers: int = Field(default=10, ge=2)
    seed: int = 42
    # Monthly discount rate of the CLV (0: the undiscounted expected spend).
    discount_rate_monthly: float = Field(default=0.0, ge=0.0, lt=1.0)
    # Draws kept from a sampling fit (mcmc/advi): the scoring UDF evaluates every draw.
    max_draws: int = Field(default=200, ge=1, le=5000)
    features: bool = True
