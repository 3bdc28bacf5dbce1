"""Audience declarations: YAML files, validated when loaded, errors naming file and key.

One file holds one audience (a mapping) or several (``audiences: [...]``)::

    name: lapsed_high_intent
    description: Likely buyers who have not bought for two months
    purpose: marketing          # consent needed: the latest consent for purpose + channel
    channel: email              # must be 'granted'
    models: [purchase]          # propensity models whose score columns the rule uses
    rule: purchase_decile >= 9 AND (recency_days IS NULL OR recency_days > 60)

``rule`` is a Spark SQL boolean expression over the profile's columns and, for each model in
``models``, ``<model>_score``, ``<model>_decile`` and ``<model>_model_version`` (the model's
latest scores on or before the audience's ``as_of``), and ``consent_<purpose>_<channel>``
(true when the latest consent for that purpose and channel, or channel ``all``, is ``granted``).
With ``require_consent`` (the default) only customers holding the consent for the audience's own
``purpose`` and ``channel`` are members, whatever the rule says.

``rule`` may call only Spark's built-in functions (not ``reflect`` / ``java_method``) and holds
no subquery: the allow-list of :mod:`cdp.expressions`, checked here while a session is active
and again before any rule is analysed. What needs no data is checked here, at load; the rule's
columns and the model names are checked against the real tables before the stage computes
anything (:func:`cdp.audiences.members.check_rules`), with the same file-and-key messages.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cdp.config import CdpConfig, ConfigError
from cdp.expressions import ExpressionError, check_at_load
from cdp.yamlio import read_yaml

# The values silver accepts (conf/rules/silver.yaml); a typo here would silently empty an
# audience, so it is refused at load instead.
CONSENT_PURPOSES = ("marketing", "analytics", "personalization", "profiling", "third_party")
CONSENT_CHANNELS = ("email", "sms", "push", "web", "phone", "post")

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
# consent_<purpose>_<channel> references in a rule (purposes may hold '_', e.g. third_party).
_CONSENT_REF = re.compile(r"(?<![A-Za-z0-9_`.])consent_([a-z0-9_]+)", re.IGNORECASE)


class AudienceError(ConfigError):
    """An audience declaration is wrong; the message names the file and the key."""


def model_prefix(model_name: str) -> str:
    """The column prefix of a model's scores: ``Purchase-v2`` -> ``purchase_v2``."""
    return re.sub(r"[^a-z0-9]+", "_", model_name.strip().lower()).strip("_")


def consent_column(purpose: str, channel: str) -> str:
    """The rule column telling whether a customer holds a consent: ``consent_marketing_email``."""
    return f"consent_{purpose}_{channel}"


def _split_consent_ref(suffix: str) -> tuple[str, str] | None:
    """``marketing_email`` -> ("marketing", "email"); None when no known pair matches."""
    lowered = suffix.lower()
    for purpose in CONSENT_PURPOSES:
        for channel in (*CONSENT_CHANNELS, "all"):
            if lowered == f"{purpose}_{channel}":
                return purpose, channel
    return None


class AudienceSpec(BaseModel):
    """One declared audience."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    purpose: str
    channel: str
    rule: str
    models: tuple[str, ...] = ()
    # Members must hold the consent for (purpose, channel); false only for audiences that are
    # not activated on a person-level channel (analytics counts, for example).
    require_consent: bool = True
    enabled: bool = True
    source_file: str = Field(default="", exclude=True)

    @field_validator("name")
    @classmethod
    def _path_safe(cls, value: str) -> str:
        # The name becomes a path segment of every exported object.
        if not _NAME.match(value):
            raise ValueError("must be lower-case letters, digits, '_' or '-' (max 100)")
        return value

    @field_validator("purpose")
    @classmethod
    def _known_purpose(cls, value: str) -> str:
        if value not in CONSENT_PURPOSES:
            raise ValueError(f"must be one of {', '.join(CONSENT_PURPOSES)}")
        return value

    @field_validator("channel")
    @classmethod
    def _known_channel(cls, value: str) -> str:
        if value not in CONSENT_CHANNELS:
            raise ValueError(f"must be one of {', '.join(CONSENT_CHANNELS)}")
        return value

    @field_validator("rule")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be a Spark SQL boolean expression")
        return value.strip()

    @field_validator("rule")
    @classmethod
    def _known_consents(cls, value: str) -> str:
        for match in _CONSENT_REF.finditer(value):
            if _split_consent_ref(match.group(1)) is None:
                raise ValueError(
                    f"'{match.group(0)}' is not a consent column: use consent_<purpose>_<channel> "
                    f"with a purpose in {', '.join(CONSENT_PURPOSES)} and a channel in "
                    f"{', '.join((*CONSENT_CHANNELS, 'all'))}"
                )
        return value

    @field_validator("models")
    @classmethod
    def _usable_models(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        prefixes = [model_prefix(m) for m in value]
        if any(not p for p in prefixes):
            raise ValueError("a model name needs at least one letter or digit")
        if len(set(prefixes)) != len(prefixes):
            raise ValueError("two model names map to the same column prefix")
        return value

    def where(self) -> str:
        """Where this audience was declared, for messages."""
        return self.source_file or "<inline>"

    def consents_used(self) -> list[tuple[str, str]]:
        """(purpose, channel) pairs whose consent columns the audience needs, own pair first."""
        pairs = [(self.purpose, self.channel)]
        for match in _CONSENT_REF.finditer(self.rule):
            pair = _split_consent_ref(match.group(1))
            if pair is not None and pair not in pairs:
                pairs.append(pair)
        return pairs


def parse_audience(data: Any, source: str, index: int | None = None) -> AudienceSpec:
    """Validate one declaration; ``source`` (and ``index`` in a list) name it in errors."""
    where = source if index is None else f"{source} audiences[{index}]"
    if not isinstance(data, dict):
        raise AudienceError(f"{where}: an audience must be a mapping, got {type(data).__name__}")
    try:
        spec = AudienceSpec.model_validate({**data, "source_file": source})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "<audience>"
            if err["type"] == "extra_forbidden":
                problems.append(f"unknown key '{key}'")
            elif err["type"] == "missing":
                problems.append(f"missing key '{key}'")
            else:
                problems.append(f"key '{key}': {err['msg']} (got {err.get('input')!r})")
        raise AudienceError(f"{where}: " + "; ".join(problems)) from None
    try:
        check_at_load(spec.rule, where=where, key="rule")
    except ExpressionError as exc:
        raise AudienceError(str(exc)) from None
    return spec


def load_audience_files(paths: Iterable[Path]) -> list[AudienceSpec]:
    """Every enabled audience in ``paths``, sorted by name; duplicate names are an error."""
    found: dict[str, AudienceSpec] = {}
    for path in paths:
        data = read_yaml(path, "activation.audiences_dirs", mapping=False)
        if data == {}:
            continue
        if isinstance(data, dict) and set(data) == {"audiences"}:
            if not isinstance(data["audiences"], list):
                raise AudienceError(f"{path}: key 'audiences' must be a list of audiences")
            specs = [parse_audience(d, str(path), i) for i, d in enumerate(data["audiences"])]
        else:
            specs = [parse_audience(data, str(path))]
        for spec in specs:
            if spec.name in found:
                raise AudienceError(
                    f"{path}: key 'name': audience {spec.name!r} is already declared in "
                    f"{found[spec.name].where()}"
                )
            found[spec.name] = spec
    return [found[n] for n in sorted(found) if found[n].enabled]


def audience_dirs(config: CdpConfig) -> list[Path]:
    """The configured audience directories; relative ones are taken from the conf directory."""
    return [config.conf_path(d) for d in config.activation.audiences_dirs]


def load_audiences(config: CdpConfig) -> list[AudienceSpec]:
    """Every enabled audience declared in the configured directories (``*.yaml``, ``*.yml``).

    A directory entry may also name a single file (``audiences.yaml``).
    """
    files: list[Path] = []
    for entry in audience_dirs(config):
        if entry.is_file():
            files.append(entry)
        elif entry.is_dir():
            files += sorted(p for p in entry.iterdir() if p.suffix in (".yaml", ".yml"))
        else:
            raise AudienceError(f"activation.audiences_dirs: {entry} does not exist")
    return load_audience_files(files)
