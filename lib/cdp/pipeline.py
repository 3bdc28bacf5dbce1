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
