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
    max_rounds: int = Field(default=100, ge=1)
    checkpoint_interval: int = Field(default=2, ge=1)
