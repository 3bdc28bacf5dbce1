"""The ``profile`` section of the run configuration (kept free of other cdp imports so that
:mod:`cdp.config` can import it without a cycle). The survivorship rules themselves live in
``rules_file``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class EngagementConfig(_Model):
    """Which events count as what, and over which windows (days ending with ``as_of``)."""

    windows_days: list[int] = Field(default_factory=lambda: [7, 30, 90], min_length=1)
    # Sessions are counted over events of these channels; the session id is read from the
    # event's ``properties`` JSON at ``session_path``; events without one count one session
    # per channel and day.
    session_channels: list[str] = Field(default_factory=lambda: ["web", "app"])
    session_path: str = "$.session_id"
    page_view_types: list[str] = Field(default_factory=lambda: ["page_view", "screen_view"])
    email_open_types: list[str] = Field(default_factory=lambda: ["open", "email_open", "opened"])
    email_click_types: list[str] = Field(
        default_factory=lambda: ["click", "email_click", "clicked"]
    )
    # silver/events column -> gold/identity_identifiers id_type, strongest first: an event
    # whose identifiers point at several customers goes to the one its strongest identifier
    # names (a logged-in customer id beats a shared device).
    identifiers: dict[str, str] = Field(
        default_factory=lambda: {
            "customer_id": "customer_id",
            "email": "email",
            "device_id": "device_id",
            "anonymous_id": "anonymous_id",
        }
    )

    @field_validator("windows_days")
    @classmethod
    def _positive_distinct(cls, value: list[int]) -> list[int]:
        if any(v < 1 for v in value) or len(set(value)) != len(value):
            raise ValueError("windows must be distinct positive numbers of days")
        return sorted(value)


class ConsentConfig(_Model):
    """How consent statuses read, and which (purpose, channel) pairs get convenience flags."""

    granted_statuses: list[str] = Field(
        default_factory=lambda: ["granted", "opt_in", "opted_in", "subscribed", "yes", "true"]
    )
    marketing_purpose: str = "marketing"
    # Convenience boolean column -> consent channel (true only when the latest status for
    # (marketing_purpose, channel) is granted; unknown is false).
    flags: dict[str, str] = Field(
        default_factory=lambda: {"email_marketing_consent": "email", "sms_marketing_consent": "sms"}
    )


class RfmConfig(_Model):
    """Recency/frequency/monetary scoring."""

    # Scores run 1..bins; cut points are approximate quantiles over buying customers.
    bins: int = Field(default=5, ge=2, le=20)
    quantile_accuracy: int = Field(default=10_000, ge=100)
    # Amounts in a currency listed here are multiplied by its rate (to one reporting
    # currency) before summing; empty: amounts are summed as they are (one-currency shops).
    # With rates given, an amount in an unlisted currency is left out of monetary.
    fx_rates: dict[str, float] = Field(default_factory=dict)


class ProfileConfig(_Model):
    """How the ``profile`` stage runs."""

    # Relative paths are taken from the conf directory, like silver's and identity's rules.
    rules_file: str = "rules/profile.yaml"
    # as_of when none is given: the latest event/transaction date (capped at today UTC), so a
    # rerun on unchanged data writes the same profile; or simply today (UTC).
    default_as_of: Literal["latest_data", "today"] = "latest_data"
    engagement: EngagementConfig = Field(default_factory=EngagementConfig)
    consent: ConsentConfig = Field(default_factory=ConsentConfig)
    rfm: RfmConfig = Field(default_factory=RfmConfig)
