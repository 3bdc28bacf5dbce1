"""Typed, layered configuration.

Layers, lowest to highest precedence::

    conf/base.yaml  <-  conf/<env>.yaml  <-  --conf FILE (any number)  <-  environment  <-  CLI flags

A site's conf directory (made by ``cdp init``) says ``extends: shipped`` in its base.yaml: the
shipped ``conf/base.yaml`` and ``conf/<env>.yaml`` are then read first and the site's
``base.yaml`` and ``<env>.yaml`` over them, so a site's files hold only what it changes.

Every value is validated once, at start, by pydantic models that forbid unknown keys.
A bad key or value fails fast with :class:`ConfigError`, whose message names the key
and the file (or environment variable, or flag) that set it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cdp.audiences.settings import ActivationConfig
from cdp.conf_layers import (
    DECLARATION_KEYS,
    DEMO_OVERLAY,
    EXTENDS_SHIPPED,
    default_conf_dir,
    demo_overlay,
    merge_conf_dirs,
    merge_layer,
    rebase,
    shipped_conf_dir,
)
from cdp.errors import ConfigError
from cdp.identity.settings import IdentityConfig
from cdp.models.settings import ModelsConfig
from cdp.privacy.settings import PrivacyConfig
from cdp.profile.settings import ProfileConfig
from cdp.silver.settings import SilverConfig
from cdp.value.settings import ValueConfig
from cdp.yamlio import parse_scalar, read_yaml

__all__ = [
    "DEMO_OVERLAY",
    "EXTENDS_SHIPPED",
    "CdpConfig",
    "ConfigError",
    "default_conf_dir",
    "demo_overlay",
    "load_config",
    "parse_overrides",
    "shipped_conf_dir",
]

ENV_PREFIX = "CDP__"

# Well-known variables and the config key each one sets.
ENV_ALIASES: dict[str, str] = {
    "CDP_ENV": "env",
    "CDP_DATA_ROOT": "data_root",
    "CDP_LANDING_ROOT": "landing_root",
    "CDP_STORAGE_BACKEND": "storage.backend",
    "CDP_SPARK_MASTER": "spark.master",
    "CDP_LOG_LEVEL": "log.level",
    "MLFLOW_TRACKING_URI": "mlflow.tracking_uri",
    # Packaged jobs carry no .git; the build or the scheduler names the commit.
    "GIT_COMMIT": "git_commit",
    "CDP_GIT_COMMIT": "git_commit",
}


class StorageBackend(str, Enum):
    AUTO = "auto"
    DELTA_SPARK = "delta-spark"
    DELTA_RS = "delta-rs"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SparkConfig(_Model):
    """How the embedded SparkSession is built (ignored where spark-submit already made one)."""

    master: str = "local[*]"
    app_name: str = "cdp"
    shuffle_partitions: int | None = Field(
        default=None, ge=1, description="None: twice the number of cores."
    )
    ui_enabled: bool = True
    driver_memory: str = "4g"
    log_level: str = "WARN"
    conf: dict[str, str] = Field(default_factory=dict)


class StorageConfig(_Model):
    backend: StorageBackend = StorageBackend.AUTO
    commit_retries: int = Field(default=5, ge=0, le=100)
    vacuum_retention_hours: float = Field(default=168.0, ge=0)
    target_file_size_mb: int = Field(default=128, ge=1)


class RunnerConfig(_Model):
    """The data root's run lock (see :mod:`cdp.lock`)."""

    # False: no lease file (the orchestrator serialises runs itself).
    lock: bool = True
    # How long a run waits for another run's lock before refusing (0: refuse at once).
    lock_wait_seconds: float = Field(default=0.0, ge=0)
    # A lease not renewed for this long (its run died) may be taken over.
    lock_ttl_seconds: float = Field(default=300.0, ge=1)


class MlflowConfig(_Model):
    tracking_uri: str | None = None
    registry_uri: str | None = None


class LogConfig(_Model):
    level: str = "INFO"
    dir: str | None = None

    @field_validator("level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return upper


class IngestConfig(_Model):
    # batch: list and read new files; stream: Structured Streaming, trigger availableNow,
    # checkpoint under <data_root>/_checkpoints/ingest/<source>.
    mode: Literal["batch", "stream"] = "batch"
    # Only these sources (None: every enabled source).
    sources: list[str] | None = None
    max_files_per_run: int | None = Field(default=None, ge=1)
    quarantine_raw_max_chars: int = Field(default=100_000, ge=100)
    # Read splits of this size: big files are read in parallel, small ones are never packed
    # together. Fixed (not derived from the batch) so a rerun numbers rows exactly as before.
    split_mb: int = Field(default=8, ge=1, le=1024)
    # Source ``path`` globs must stay inside the landing root (no ``..`` out of it, no absolute
    # path or URI elsewhere): a source declaration cannot point ingest at any file the job can
    # read. True only for deployments that really land sources in several roots.
    allow_paths_outside_landing: bool = False
    # A file larger than this is quarantined whole, unparsed (a runaway export or a wrong
    # file must not take the cluster's memory).
    max_file_mb: int = Field(default=2048, ge=1)
    # A record whose text is longer than this goes to the quarantine with a reason; it is
    # never landed cut short.
    max_record_chars: int = Field(default=1_000_000, ge=1000)
    # A file with more columns (nested fields counted) is quarantined whole, unparsed.
    max_columns: int = Field(default=10_000, ge=1)
    # Files modified less than this long ago are still being written: they wait for the next
    # run (not recorded in the ledger). Sources may also declare a completion marker.
    min_file_age_seconds: int = Field(default=0, ge=0)


class CdpConfig(_Model):
    """The whole, validated configuration of one run."""

    env: str = "local"
    data_root: str = "./data"
    landing_root: str | None = None
    sources_dirs: list[str] = Field(default_factory=lambda: ["sources"])
    spark: SparkConfig = Field(default_factory=SparkConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    runner: RunnerConfig = Field(default_factory=RunnerConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    activation: ActivationConfig = Field(default_factory=ActivationConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    profile: ProfileConfig = Field(default_factory=ProfileConfig)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    silver: SilverConfig = Field(default_factory=SilverConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    value: ValueConfig = Field(default_factory=ValueConfig)
    # The commit of the code that runs (tagged on MLflow runs); None: read from .git.
    git_commit: str | None = None
    # Where each top-level file layer came from, for messages and the run log.
    origins: list[str] = Field(default_factory=list)
    conf_dir: str | None = None

    @field_validator("env")
    @classmethod
    def _safe_env(cls, value: str) -> str:
        if not value or not all(c.isalnum() or c in "-_" for c in value):
            raise ValueError("must be letters, digits, '-' or '_'")
        return value

    # Derived locations -------------------------------------------------------------------
    @property
    def data_root_uri(self) -> str:
        return _absolute(self.data_root)

    @property
    def landing_uri(self) -> str:
        return (
            _absolute(self.landing_root)
            if self.landing_root
            else _join(self.data_root_uri, "landing")
        )

    def privacy_key(self) -> bytes:
        """The pseudonymisation key (see :class:`cdp.privacy.settings.PrivacyConfig`)."""
        from cdp.privacy.keys import load_key

        return load_key(self.privacy, env=self.env, data_root=self.data_root_uri)

    @property
    def checkpoint_dir(self) -> str:
        return _join(self.data_root_uri, "_checkpoints")

    @property
    def log_dir(self) -> str:
        return _absolute(self.log.dir) if self.log.dir else _join(self.data_root_uri, "logs")

    @property
    def mlflow_tracking_uri(self) -> str:
        if self.mlflow.tracking_uri:
            return self.mlflow.tracking_uri
        return f"sqlite:///{_join(self.data_root_uri, 'mlflow', 'mlflow.db')}"

    def conf_path(self, entry: str | Path) -> Path:
        """The one resolver of file settings: an absolute path stays, a relative one is taken
        from the conf directory (the working directory when there is none)."""
        p = Path(entry)
        if p.is_absolute():
            return p
        return ((Path(self.conf_dir) if self.conf_dir else Path.cwd()) / p).resolve()

    def source_dirs_resolved(self) -> list[str]:
        """Source-definition directories; relative ones are taken from the conf directory."""
        return [str(self.conf_path(entry)) for entry in self.sources_dirs]

    def rule_files(self) -> dict[str, Path]:
        """Every rule file the run reads, by the key that names it."""
        keys = {
            "silver.rules_file": self.silver.rules_file,
            "identity.rules_file": self.identity.rules_file,
            "identity.matching_file": self.identity.matching_file,
            "identity.decisions_file": self.identity.decisions_file,
            "profile.rules_file": self.profile.rules_file,
        }
        return {key: self.conf_path(value) for key, value in keys.items() if value}

    def file_hashes(self) -> dict[str, str]:
        """A short hash of the contents of every file the run reads besides the layered
        config: rule files (and the files they name, such as nicknames), source and audience
        declarations. ``absent`` for a configured file that does not exist."""
        files: dict[str, Path] = dict(self.rule_files())
        for key, value in list(files.items()):
            for i, named in enumerate(_named_files(value)):
                files[f"{key}[{i}]"] = named
        for key, dirs in (
            ("sources_dirs", self.sources_dirs),
            ("activation.audiences_dirs", self.activation.audiences_dirs),
        ):
            for entry in dirs:
                where = self.conf_path(entry)
                found = sorted(where.glob("*.y*ml")) if where.is_dir() else [where]
                for path in found:
                    files[f"{key}:{path.name}"] = path
        return {key: _digest(path) for key, path in sorted(files.items())}

    def config_hash(self) -> str:
        """A stable hash of the effective settings (origins and the code's commit excluded) and of the contents of
        every rule, source and audience file, so the run log shows when any of them changed."""
        payload = self.model_dump(mode="json", exclude={"origins", "git_commit"})
        payload["_files"] = self.file_hashes()
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _digest(path: Path) -> str:
    if not path.is_file():
        return "absent"
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _named_files(path: Path) -> list[Path]:
    """Files a YAML rule file names through ``*_file`` keys (relative to itself)."""
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        return []
    try:
        data = read_yaml(path, str(path), mapping=False)
    except ConfigError:
        return []  # the stage that reads it reports the error with its key
    found: list[Path] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if str(key).endswith("_file") and isinstance(value, str):
                    found.append(path.parent / value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(data)
    return found


def _is_uri(path: str) -> bool:
    return "://" in path


def _absolute(path: str) -> str:
    if _is_uri(path):
        return path.rstrip("/")
    return str(Path(path).expanduser().resolve())


def _join(base: str, *parts: str) -> str:
    if _is_uri(base):
        return "/".join([base.rstrip("/"), *parts])
    return str(Path(base, *parts))


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _set_path(target: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = target
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value


def _env_layer(environ: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(dotted key, value, variable name) from the environment."""
    found: list[tuple[str, str, str]] = []
    for var, key in ENV_ALIASES.items():
        if environ.get(var):
            found.append((key, environ[var], var))
    for var, value in environ.items():
        if var.startswith(ENV_PREFIX) and len(var) > len(ENV_PREFIX):
            key = var[len(ENV_PREFIX) :].lower().replace("__", ".")
            found.append((key, value, var))
    return found


def load_config(
    *,
    env: str | None = None,
    conf_files: list[str | Path] | None = None,
    overrides: Mapping[str, Any] | None = None,
    conf_dir: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> CdpConfig:
    """Build the effective configuration.

    ``overrides`` are the CLI layer: dotted keys (``"storage.backend"``) to values.
    ``environ`` defaults to ``os.environ``; tests pass their own mapping.
    """
    environ = os.environ if environ is None else environ
    directory = Path(conf_dir) if conf_dir else default_conf_dir()
    merged: dict[str, Any] = {}
    provenance: dict[str, str] = {}
    origins: list[str] = []

    env_name = env or (overrides or {}).get("env") or environ.get("CDP_ENV") or None

    if directory is not None:
        env_name = merge_conf_dirs(directory, env_name, env, environ, merged, provenance, origins)
    for conf_file in conf_files or []:
        path = Path(conf_file)
        if not path.exists():
            raise ConfigError(f"--conf {path}: file not found")
        layer = read_yaml(path, "--conf")
        # A user's file names its own declaration directories, relative to itself; they
        # replace the lists below (a site's sources are not added to the demo's).
        rebase(layer, DECLARATION_KEYS, path.parent)
        merge_layer(merged, layer, str(path), provenance)
        origins.append(str(path))
    for key, value, var in _env_layer(environ):
        _set_path(merged, key, parse_scalar(value))
        provenance[key] = f"environment variable {var}"
    for key, value in (overrides or {}).items():
        _set_path(merged, key, value)
        provenance[key] = "command line"
    if env_name and "env" not in provenance:
        merged["env"] = env_name
        provenance["env"] = "command line" if env else "default"

    merged["origins"] = origins
    merged["conf_dir"] = str(directory.resolve()) if directory is not None else None
    try:
        return CdpConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, provenance)) from None


def _explain(exc: ValidationError, provenance: Mapping[str, str]) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        origin = provenance.get(key)
        if origin is None:
            # The nearest parent that a layer set (for unknown nested keys).
            parts = key.split(".")
            for i in range(len(parts) - 1, 0, -1):
                origin = provenance.get(".".join(parts[:i]))
                if origin:
                    break
        where = f" (set in {origin})" if origin else ""
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown configuration key '{key}'{where}")
        else:
            lines.append(
                f"invalid value for '{key}'{where}: {err['msg']} (got {err.get('input')!r})"
            )
    return "; ".join(lines)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["storage.backend=delta-rs", "spark.shuffle_partitions=4"]`` -> dotted overrides."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE")
        key, value = pair.split("=", 1)
        out[key.strip()] = parse_scalar(value)
    return out
