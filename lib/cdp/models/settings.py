"""The ``models`` section of the run configuration: features, labels, training, scoring.

Kept free of other cdp imports so :mod:`cdp.config` can import it.

    models:
      only: null                  # run train/score for this model only (--model NAME)
      windows_days: [7, 30, 90]
      labels: {horizon_days: 90, lookback_days: 365}
      models:
        - {name: purchase_90d, label: purchase}
        - {name: churn_90d, label: churn, population: active}
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_NAME = r"^[a-z][a-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LabelConfig(_Strict):
    """Outcomes looked for after ``as_of``: ``[as_of, as_of + horizon_days)``."""

    horizon_days: int = Field(default=90, ge=1, le=3650)
    # 'Active' (the churn population): a purchase in [as_of - lookback_days, as_of).
    lookback_days: int = Field(default=365, ge=1, le=3650)
    # Refuse to train at an as_of whose horizon the data does not cover yet (the labels of
    # such a date would be mostly 'no purchase', which is not what happened).
    require_complete_horizon: bool = True


class ModelSpec(_Strict):
    """One propensity model: its label and the customers it is trained and scored on."""

    name: str = Field(pattern=_NAME)
    label: Literal["purchase", "churn"]
    # active: only customers with a purchase in the lookback window (churn needs it).
    population: Literal["all", "active"] = "all"
    # The customers the model learns from; null: its population. A churn model trained on
    # "all" learns "no purchase in the horizon" from every known customer (the active ones
    # and those who lapsed earlier, whose future says as much about what precedes a last
    # purchase) and is still validated, tested, gated and scored on its population only.
    train_population: Literal["all", "active"] | None = None
    enabled: bool = True

    @property
    def scores_active(self) -> bool:
        """Scored (and measured) on the active customers only: churn always is."""
        return self.population == "active" or self.label == "churn"

    @property
    def trains_beyond_population(self) -> bool:
        """Training rows include customers outside the scored population."""
        return self.scores_active and self.train_population == "all"


class ConsentFlag(_Strict):
    """A feature ``consent_<purpose>_<channel>``: 1 granted, 0 withdrawn, null never asked."""

    purpose: str
    channel: str


class SearchConfig(_Strict):
    """The small hyperparameter search; candidates run in order until the budget is spent
    (the first logistic regression and the first GBT always run)."""

    time_budget_seconds: float = Field(default=600.0, gt=0)
    gbt_max_depth: list[int] = Field(default_factory=lambda: [4, 6])
    gbt_max_iter: list[int] = Field(default_factory=lambda: [30])
    gbt_step_size: list[float] = Field(default_factory=lambda: [0.1])
    lr_reg_param: list[float] = Field(default_factory=lambda: [0.0, 0.01])
    lr_elastic_net: list[float] = Field(default_factory=lambda: [0.0])
    lr_max_iter: int = Field(default=100, ge=1)
    seed: int = 42


class BacktestConfig(_Strict):
    """``cdp run backtest --as-of D``: train at ``D - train_offset_days``, score at ``D``,
    evaluate against what happened in ``[D, D + horizon)``."""

    train_offset_days: int | None = Field(default=None, ge=1, description="None: horizon_days")


Metric = Literal["roc_auc", "pr_auc"]
_GATE_METRICS: tuple[Metric, ...] = ("roc_auc", "pr_auc")


class OutOfTimeConfig(_Strict):
    """The train stage's out-of-time check (:mod:`cdp.models.out_of_time`): the chosen
    candidate's configuration fitted one horizon earlier (features at ``as_of - horizon``,
    labels up to ``as_of``) and scored on the holdout customers at ``as_of``, beside the
    recency/frequency heuristic, BG/NBD's expected purchases alone and the champion on the
    same rows.

    A candidate below the heuristic there on any of ``gate_metrics`` (by ``min_margin``), or
    below BG/NBD alone (``btyd_gate``), is registered but never given the ``champion`` alias.
    Where the check cannot run (too little history, or ``enabled: false``) the same gate reads
    the holdout measures instead."""

    enabled: bool = True
    gate_metrics: list[Metric] = Field(default_factory=lambda: list(_GATE_METRICS))
    # The candidate must reach the free scorers' values plus this on every gate metric.
    min_margin: float = Field(default=0.0, ge=0)
    # BG/NBD's expected purchases alone (a BTYD feature, fitted before as_of) gates like the
    # heuristic where the features carry a fit.
    btyd_gate: bool = True
    # With no usable champion and a candidate that lost to a free scorer, register the better
    # free scorer on the selection metric (heuristic or BG/NBD alone, a logistic calibration
    # of its rank) as the champion, so that score and the audiences run on the better
    # ranking; false: no champion, and score says why.
    heuristic_fallback: bool = True


class ModelsConfig(_Strict):
    only: str | None = None
    models: list[ModelSpec] = Field(
        default_factory=lambda: [
            ModelSpec(name="purchase_90d", label="purchase"),
            ModelSpec(name="churn_90d", label="churn", population="active"),
        ]
    )
    labels: LabelConfig = Field(default_factory=LabelConfig)
    windows_days: list[int] = Field(default_factory=lambda: [7, 30, 90])
    # silver/events column -> gold/identity_identifiers id_type, tried in this order to
    # attribute an event to a customer.
    event_identifiers: dict[str, str] = Field(
        default_factory=lambda: {
            "customer_id": "customer_id",
            "email": "email",
            "anonymous_id": "anonymous_id",
            "device_id": "device_id",
        }
    )
    web_channels: list[str] = Field(default_factory=lambda: ["web", "app"])
    email_channel: str = "email"
    # Events of these types are support contacts (an 'other' source's rows get its name).
    support_event_types: list[str] = Field(default_factory=lambda: ["support_tickets"])
    consent_flags: list[ConsentFlag] = Field(
        default_factory=lambda: [
            ConsentFlag(purpose="marketing", channel="email"),
            ConsentFlag(purpose="marketing", channel="sms"),
            ConsentFlag(purpose="marketing", channel="push"),
        ]
    )
    granted_statuses: list[str] = Field(default_factory=lambda: ["granted", "opt_in", "yes"])
    categorical_features: list[str] = Field(default_factory=lambda: ["gender", "country"])
    # Holdout: customers whose hash bucket (of 1000) is below holdout_fraction * 1000;
    # validation (for the search) likewise from the remaining customers.
    holdout_fraction: float = Field(default=0.2, gt=0, lt=0.9)
    validation_fraction: float = Field(default=0.2, gt=0, lt=0.9)
    split_salt: str = "cdp-holdout"
    # Train on at most this many customers (a deterministic hash sample); None: all.
    max_train_rows: int | None = Field(default=500_000, ge=100)
    selection_metric: Literal["roc_auc", "pr_auc"] = "roc_auc"
    # The champion alias moves only when the new version beats the champion by more than this.
    min_improvement: float = Field(default=0.0, ge=0)
    search: SearchConfig = Field(default_factory=SearchConfig)
    backtest: BacktestConfig = Field(default_factory=BacktestConfig)
    out_of_time: OutOfTimeConfig = Field(default_factory=OutOfTimeConfig)
    calibration_bins: int = Field(default=10, ge=2, le=100)

    @field_validator("windows_days")
    @classmethod
    def _windows(cls, value: list[int]) -> list[int]:
        if not value or any(w < 1 for w in value):
            raise ValueError("must be a non-empty list of positive day counts")
        return sorted(set(value))

    @model_validator(mode="after")
    def _names(self) -> ModelsConfig:
        names = [m.name for m in self.models]
        if len(names) != len(set(names)):
            raise ValueError(f"model names must be unique, got {names}")
        if self.only is not None and self.only not in names:
            raise ValueError(f"only: unknown model {self.only!r}; declared: {names}")
        return self

    def selected(self) -> list[ModelSpec]:
        """The models a train/score run handles (``only``, else every enabled one)."""
        if self.only is not None:
            return [m for m in self.models if m.name == self.only]
        return [m for m in self.models if m.enabled]
