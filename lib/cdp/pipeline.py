"""The stage graph, declared once.

The CLI (``cdp run``), the ``jobs/`` spark-submit entry points and the workflow definitions
are all derived from :data:`STAGES`. A stage is a function ``(StageContext) -> None`` named
by import path, so listing the graph imports nothing heavy.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from cdp.config import CdpConfig
    from cdp.runlog import RunRecorder
    from cdp.storage import TableStore


@dataclass(frozen=True)
class Stage:
    name: str
    entry: str  # "module:function"
    description: str
    depends_on: tuple[str, ...] = ()
    in_pipeline: bool = True  # False: run on demand (maintenance), not part of the daily graph

    def load(self) -> Callable[[StageContext], None]:
        module, func = self.entry.split(":")
        return getattr(importlib.import_module(module), func)  # type: ignore[no-any-return]


@dataclass
class StageContext:
    """Everything a stage needs, handed in; stages create no sessions and read no globals."""

    spark: SparkSession
    config: CdpConfig
    store: TableStore
    run: RunRecorder
    as_of: date | None = None
    progress: Callable[[str], None] = field(default=lambda message: None)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("cdp.stage"))


STAGES: tuple[Stage, ...] = (
    Stage(
        name="ingest",
        entry="cdp.bronze.ingest:run_ingest",
        description="Land new files of every declared source into bronze Delta tables",
    ),
    Stage(
        name="silver",
        entry="cdp.silver.stage:run_silver",
        description="Standardize, validate, de-duplicate and upsert bronze into canonical silver tables",
        depends_on=("ingest",),
    ),
    Stage(
        name="identity",
        entry="cdp.identity.stage:run_identity",
        description="Resolve silver records into stable customer ids (gold/identity_map)",
        depends_on=("silver",),
    ),
    Stage(
        name="profile",
        entry="cdp.profile.stage:run_profile",
        description="Build gold/customer_profile: survivorship, identifiers, consents, RFM, engagement",
        depends_on=("identity",),
    ),
    Stage(
        name="features",
        entry="cdp.models.features_stage:run_features",
        description="Build point-in-time gold/customer_features at as_of from attributed silver facts",
        depends_on=("profile",),
    ),
    Stage(
        name="train",
        entry="cdp.models.train_stage:run_train",
        description="Train the propensity models (pyspark.ml), log to MLflow, move champion/challenger",
        depends_on=("features",),
    ),
    Stage(
        name="score",
        entry="cdp.models.score_stage:run_score",
        description="Score every customer with each model's champion into gold/propensity_scores",
        depends_on=("train",),
    ),
    Stage(
        name="backtest",
        entry="cdp.models.backtest_stage:run_backtest",
        description="Out-of-time backtest: train before as_of, score at as_of, evaluate what happened",
        depends_on=("features",),
        in_pipeline=False,
    ),
    Stage(
        name="audiences",
        entry="cdp.audiences.stage:run_audiences",
        description="Evaluate the declared audiences and update gold/audience_membership",
        depends_on=("profile", "score"),
    ),
    Stage(
        name="export",
        entry="cdp.export.stage:run_export",
        description="Deliver each audience's consented members to the export target (boto3)",
        depends_on=("audiences",),
    ),
    Stage(
        name="maintenance",
        entry="cdp.maintenance:run_maintenance",
        description="Compact small files and vacuum unreferenced files of every table",
        in_pipeline=False,
    ),
)

STAGE_BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}


def get_stage(name: str) -> Stage:
    try:
        return STAGE_BY_NAME[name]
    except KeyError:
        known = ", ".join(STAGE_BY_NAME)
        raise KeyError(f"unknown stage {name!r}; known stages: {known}") from None


def pipeline_stages() -> list[Stage]:
    """The stages of the scheduled pipeline, in a dependency-respecting order."""
    return topological([s for s in STAGES if s.in_pipeline])


def topological(stages: Iterable[Stage]) -> list[Stage]:
    """Order ``stages`` so each comes after what it depends on (stable for ties)."""
    pending = list(stages)
    names = {s.name for s in pending}
    done: list[Stage] = []
    placed: set[str] = set()
    while pending:
        ready = [s for s in pending if all(d in placed or d not in names for d in s.depends_on)]
        if not ready:
            raise ValueError(f"dependency cycle among {[s.name for s in pending]}")
        for stage in ready:
            done.append(stage)
            placed.add(stage.name)
            pending.remove(stage)
    return done


def edges() -> list[tuple[str, str]]:
    """(upstream, downstream) pairs of the scheduled pipeline."""
    return [(d, s.name) for s in pipeline_stages() for d in s.depends_on]


def graph() -> dict[str, dict[str, object]]:
    """Every stage as plain data (for workflow generators and docs): name -> attributes."""
    return {
        s.name: {
            "entry": s.entry,
            "description": s.description,
            "depends_on": list(s.depends_on),
            "in_pipeline": s.in_pipeline,
        }
        for s in STAGES
    }


def script_name(stage: str) -> str:
    """The console script of a stage (``cdp-<stage>``, declared in pyproject [project.scripts])."""
    return f"cdp-{stage}"


class _StageMains:
    """``cdp.pipeline:mains.<stage>``: the no-argument mains behind the ``cdp-<stage>`` scripts.

    Console scripts and Databricks ``python_wheel_task`` entry points call a function with no
    arguments; this gives one per stage without a module of near-identical functions.
    """

    def __getattr__(self, name: str) -> Callable[[], int]:
        if name not in STAGE_BY_NAME:
            raise AttributeError(name)

        def main() -> int:
            import sys

            from cdp.cli import job_main  # lazy: listing the graph imports nothing heavy

            return job_main(name, sys.argv[1:])

        main.__name__ = main.__qualname__ = name
        return main


mains = _StageMains()
