"""The ``silver`` section of the run configuration (free of other cdp imports so that
:mod:`cdp.config` can import it without a cycle). The data-quality rules live in
``rules_file``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SilverConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # Data-quality rules per silver table; a relative path is taken from the conf directory.
    # null: no rules beyond the standardizers' own checks.
    rules_file: str | None = "rules/silver.yaml"
    # Longest text a standardized field may hold (see cdp.silver.field_limits); a longer
    # value is invalid, with a reason, rather than cut short and marked ok.
    max_field_chars: int = Field(default=10_000, ge=1)
    # Per-field limits that replace max_field_chars (``{address: 2000}``).
    field_max_chars: dict[str, int] = Field(default_factory=dict)

    def max_chars(self, field: str) -> int:
        """The length limit of ``field``."""
        return self.field_max_chars.get(field, self.max_field_chars)
