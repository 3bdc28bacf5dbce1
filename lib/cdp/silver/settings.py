"""The ``silver`` section of the run configuration (free of other cdp imports so that
:mod:`cdp.config` can import it without a cycle). The data-quality rules live in
``rules_file``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SilverConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # Data-quality rules per silver table; a relative path is taken from the conf directory.
    # null: no rules beyond the standardizers' own checks.
    rules_file: str | None = "rules/silver.yaml"
