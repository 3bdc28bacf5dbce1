"""The ``privacy`` section of the run configuration (free of other cdp imports so that
:mod:`cdp.config` can import it without a cycle)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PrivacyConfig(BaseModel):
    """Where the pseudonymisation key comes from.

    Internal pseudonyms (privacy-request subjects, the suppression list, rejected-link values,
    report samples) and exported customer ids are HMAC-SHA256 under this key, so nobody holding
    the raw identifiers can recompute them without it. The key is read from the environment
    variable ``key_env`` or, failing that, from ``key_file`` (raw bytes, at least 32). In the
    environments listed in ``generated_key_envs`` (a laptop, the tests) a missing key is
    generated once into ``<data_root>/_secrets/privacy.key``; anywhere else the run refuses to
    start without one.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    key_env: str = "CDP_PRIVACY_KEY"
    key_file: str | None = None
    generated_key_envs: list[str] = Field(default_factory=lambda: ["local", "test"])
    # Erasure: a request's deadline (GDPR Art. 12(3): one month) and the vacuum retention of
    # the tables an erasure touched (0: the deleted files go at once, well inside it).
    deadline_days: int = Field(default=30, ge=1, le=90)
    erase_vacuum_retention_hours: float = Field(default=0.0, ge=0)
