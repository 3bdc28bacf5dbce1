"""What every model stage starts from: the silver and identity tables pinned at one version,
the date defaults read from them, and the MLflow registry of the configured data root.

Transactions and the identity tables are required. Events, consents and person records are
optional (:data:`OPTIONAL_INPUTS`): a company that only has transactions can train and score.
A missing one reads as empty with its canonical columns and is named in the run log
(:mod:`cdp.optional_inputs`); the features that come from an input without rows are left out
of the model (:func:`cdp.models.features_stage.left_out_features`), not fed to it as zeros
that look like data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cdp import tables as T
from cdp.models import registry as R
from cdp.models.settings import ModelsConfig, ModelSpec
from cdp.optional_inputs import read_or_empty
from cdp.stage import StageContext
from cdp.storage.base import CommitResult

INPUT_TABLES: dict[str, str] = {
    "transactions": T.TRANSACTIONS.name,
    "events": T.EVENTS.name,
    "consents": T.CONSENTS.name,
    "persons": T.PERSON_RECORDS.name,
    "identity_map": T.IDENTITY_MAP.name,
    "identifiers": T.IDENTITY_IDENTIFIERS.name,
}

# Inputs a model stage runs without (keys of INPUT_TABLES): their features are left out.
OPTIONAL_INPUTS = ("events", "consents", "persons")

AS_OF_METRIC = "as_of"  # the run-log metric of the date a model stage ran at


def scalar(df: DataFrame) -> Any:
    """The single value of a one-row, one-column aggregate."""
    row = df.first()
    return None if row is None else row[0]


def model_metric(model: str, name: str) -> str:
    """The run-log key of one model's metric (``<model>.<name>``): the report reads them."""
    return f"{model}.{name}"


def settings_of(ctx: StageContext) -> ModelsConfig:
    """The ``models`` part of the run's config."""
    return ctx.config.models


@dataclass
class Inputs:
    """The input tables, each pinned at the version read (logged as lineage)."""

    frames: dict[str, DataFrame]
    versions: dict[str, int]
    missing: tuple[str, ...] = ()  # optional inputs (keys) whose table does not exist
    _empty: tuple[str, ...] | None = field(default=None, repr=False)

    def without_rows(self) -> tuple[str, ...]:
        """The optional inputs that hold no rows: missing, or existing but empty (one
        ``limit(1)`` per table, once). Their features carry no information."""
        if self._empty is None:
            self._empty = tuple(
                key
                for key in OPTIONAL_INPUTS
                if key in self.missing or self.frames[key].limit(1).count() == 0
            )
        return self._empty

    def data_end(self) -> date:
        """The date of the newest transaction or event."""
        latest = [
            scalar(self.frames["transactions"].agg(F.max("order_time"))),
            scalar(self.frames["events"].agg(F.max("event_time"))),
        ]
        found = [t for t in latest if t is not None]
        if not found:
            raise ValueError(f"{T.TRANSACTIONS.name} and {T.EVENTS.name} hold no dated rows")
        return max(found).date()  # type: ignore[no-any-return]


def read_inputs(ctx: StageContext) -> Inputs:
    """Every input table at its current version; a missing required one names the stage to
    run, a missing optional one reads as empty (and the run log says so)."""
    frames, versions = {}, {}
    missing: list[str] = []
    for key, table in INPUT_TABLES.items():
        if key in OPTIONAL_INPUTS and not ctx.store.exists(table):
            frames[key] = read_or_empty(ctx, table, "its features are left out of the models")
            missing.append(key)
            continue
        if not ctx.store.exists(table):
            raise ValueError(
                f"input table {table} does not exist yet (run the stage that writes it)"
            )
        version = ctx.store.version(table)
        assert version is not None
        frames[key] = ctx.store.read(table, version=version)
        versions[table] = version
    return Inputs(frames, versions, tuple(missing))


def replace_rows(ctx: StageContext, table: str, df: DataFrame, predicate: str) -> CommitResult:
    """Replace the rows matching ``predicate`` (one as_of, one model) with ``df`` in one
    commit: a rerun replaces, never duplicates, and a reader never sees the slice missing.

    The tables are not partitioned: ``overwrite(replace_partitions=True)`` on DATE partitions
    does not work with the delta-rs backend (it compares typed partition values of existing
    files with text ones of new files), while each run appending its own files keeps the
    replace cheap (only the previous files of that slice are rewritten).
    """
    return ctx.store.replace_where(table, df, predicate)


def registry_for(ctx: StageContext) -> R.Registry:
    """The MLflow registry of the run's config (artifacts under the data root)."""
    cfg = ctx.config
    return R.Registry(
        cfg.mlflow_tracking_uri,
        cfg.env,
        registry_uri=cfg.mlflow.registry_uri,
        artifact_root=str(_join(cfg.data_root_uri, "mlflow", "artifacts")),
    )


def _join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def default_train_as_of(inputs: Inputs, settings: ModelsConfig) -> date:
    """The latest date whose label horizon the data covers."""
    return inputs.data_end() + timedelta(days=1 - settings.labels.horizon_days)


def check_horizon(inputs: Inputs, as_of: date, settings: ModelsConfig) -> None:
    """Refuse labels whose horizon the data does not cover (they would read 'no purchase')."""
    if not settings.labels.require_complete_horizon:
        return
    end = inputs.data_end()
    need = as_of + timedelta(days=settings.labels.horizon_days - 1)
    if end < need:
        latest = end + timedelta(days=1 - settings.labels.horizon_days)
        raise ValueError(
            f"as_of {as_of}: the {settings.labels.horizon_days}-day label horizon ends {need}, "
            f"but the data ends {end}; use --as-of {latest} or earlier "
            "(or set models.labels.require_complete_horizon=false)"
        )


def for_each_model(
    ctx: StageContext,
    default_as_of: Callable[[StageContext, Inputs], date],
    step: Callable[[StageContext, ModelSpec, date, Inputs, R.Registry], object],
) -> None:
    """A model stage's run: the inputs, ``as_of`` (given, else ``default_as_of``) in the run
    log, then ``step`` for every selected model with one registry."""
    settings = settings_of(ctx)
    inputs = read_inputs(ctx)
    as_of = ctx.as_of or default_as_of(ctx, inputs)
    ctx.run.metric(AS_OF_METRIC, as_of.isoformat())
    registry = registry_for(ctx)
    for spec in settings.selected():
        step(ctx, spec, as_of, inputs, registry)
