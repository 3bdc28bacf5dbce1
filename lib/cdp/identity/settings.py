"""The ``identity`` section of the run configuration (kept free of cdp imports so that
:mod:`cdp.config` can import it without a cycle)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class IdentityConfig(BaseModel):
    """How the ``identity`` stage runs; the match rules themselves live in ``rules_file``."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # auto: GraphFrames when its JVM classes load, else the DataFrame engine.
    engine: Literal["auto", "dataframe", "graphframes"] = "auto"
    # Relative paths are taken from the conf directory, like silver's rules.
    rules_file: str = "rules/identity.yaml"
    # Probabilistic matching (comparisons, blocking, thresholds); None: exact rules only.
    matching_file: str | None = "rules/matching.yaml"
    # A data steward's must-link / cannot-link decisions (CSV); a missing file is no decisions.
    decisions_file: str | None = "rules/identity_decisions.csv"
    # Train the matching model again now instead of reusing the one in MLflow.
    retrain: bool = False
    max_rounds: int = Field(default=100, ge=1)
    checkpoint_interval: int = Field(default=2, ge=1)
    # Edges one task labels in memory with SciPy before any large-star / small-star round
    # (the dataframe engine's first phase, cdp.identity.components); 0: rounds only.
    local_component_edges: int = Field(default=25_000_000, ge=0)
