"""The stage graph, declared once, with the tables each stage reads and writes.

The CLI (``cdp run``, ``cdp stages``), the ``jobs/`` spark-submit entry points, the console
scripts and the workflow definitions (Airflow, the Databricks bundle) are all derived from
:data:`STAGES` and all enter a stage through one function, :func:`cdp.entry.job_main`. A stage
is a function ``(StageContext) -> None`` named by import path, and its tables are entries of
the catalog (:mod:`cdp.tables`), so listing the graph imports nothing heavy: this module
imports only the stage protocol (:mod:`cdp.stage`) and the catalog, never a stage or the CLI.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cdp import tables as T
from cdp.stage import StageFunction
from cdp.tables import Table

__all__ = [
    "ENTRY_POINT",
    "STAGES",
    "STAGE_BY_NAME",
    "Stage",
    "edges",
    "get_stage",
    "graph",
    "mains",
    "pipeline_stages",
    "script_name",
    "topological",
]

# The one entry point of a stage run, ``(stage name, argv) -> exit status``: spark-submit
# (``cdp_job.py``), ``jobs/<stage>_job.py``, the ``cdp-<stage>`` console scripts and
# ``cdp run`` all go through it. Named by path, as the stages are, so the graph imports neither
# the entry point nor the CLI.
ENTRY_POINT = "cdp.entry:job_main"


@dataclass(frozen=True)
class Stage:
    name: str
    entry: str  # "module:function"
    description: str
    depends_on: tuple[str, ...] = ()
    in_pipeline: bool = True  # False: run on demand (maintenance), not part of the daily graph
    reads: tuple[Table, ...] = ()  # required: the stage fails without them
    optional_reads: tuple[Table, ...] = ()  # read when present; a missing one is no error
    writes: tuple[Table, ...] = ()  # every table the stage may write (checked by the runner)

    def load(self) -> StageFunction:
        return _load(self.entry)  # type: ignore[return-value]

    def may_write(self, table: str) -> bool:
        """True when ``table`` (a concrete name) is one of the declared writes."""
        return any(t.matches(table) for t in self.writes)


# What features, train, score and backtest read, pinned at the version read. Transactions and
# identity are required; a company without events, consents or person records still trains
# and scores (a missing one reads as empty, its features are left out: cdp.models.inputs).
MODEL_INPUTS = (T.TRANSACTIONS, T.IDENTITY_MAP, T.IDENTITY_IDENTIFIERS)
OPTIONAL_MODEL_INPUTS = (T.EVENTS, T.CONSENTS, T.PERSON_RECORDS)
IDENTITY_TABLES = (
    T.IDENTITY_MAP,
    T.IDENTITY_IDENTIFIERS,
    T.IDENTITY_HISTORY,
    T.IDENTITY_REJECTED_LINKS,
    T.IDENTITY_MATCH_PAIRS,
    T.IDENTITY_REVIEW_QUEUE,
    T.IDENTITY_LINKS,
)

# Every table an erasure may delete from (its bronze, silver and gold layers).
ERASABLE_TABLES = tuple(
    t for t in T.CATALOG if t.layer in (T.Layer.BRONZE, T.Layer.SILVER, T.Layer.GOLD)
)

STAGES: tuple[Stage, ...] = (
    Stage(
        name="ingest",
        entry="cdp.bronze.ingest:run_ingest",
        description="Land new files of every declared source into bronze Delta tables",
        optional_reads=(T.BRONZE_SOURCE, T.INGESTED_FILES),
        writes=(T.BRONZE_SOURCE, T.BRONZE_QUARANTINE, T.INGESTED_FILES),
    ),
    Stage(
        name="privacy",
        entry="cdp.privacy.erase:run_privacy",
        description="Carry out erasure and suppression requests in every layer, with a proof per request",
        depends_on=("ingest",),
        optional_reads=(
            T.PRIVACY_REQUESTS,
            T.SUPPRESSION_LIST,
            T.SILVER_PROGRESS,
            *ERASABLE_TABLES,
        ),
        writes=(
            *ERASABLE_TABLES,
            T.PRIVACY_REQUESTS,
            T.SUPPRESSION_LIST,
            T.ERASURE_PROOF,
            T.AUDIT_LOG,
        ),
    ),
    Stage(
        name="silver",
        entry="cdp.silver.stage:run_silver",
        description="Standardize, validate, de-duplicate and upsert bronze into canonical silver tables",
        depends_on=("ingest", "privacy"),
        optional_reads=(T.BRONZE_SOURCE, T.SILVER_PROGRESS, *T.CANONICAL_TABLES),
        writes=(*T.CANONICAL_TABLES, T.SILVER_QUARANTINE, T.SILVER_CHANGES, T.SILVER_PROGRESS),
    ),
    Stage(
        name="identity",
        entry="cdp.identity.stage:run_identity",
        description="Resolve silver records into stable customer ids (gold/identity_map)",
        depends_on=("silver",),
        optional_reads=(
            *T.CANONICAL_TABLES,
            T.IDENTITY_MAP,
            T.IDENTITY_IDENTIFIERS,
            T.IDENTITY_HISTORY,
        ),
        writes=IDENTITY_TABLES,
    ),
    Stage(
        name="value",
        entry="cdp.value.stage:run_value",
        description="Fit BG/NBD and Gamma-Gamma (PyMC-Marketing) and write gold/customer_value",
        depends_on=("identity",),
        reads=(T.IDENTITY_MAP,),
        optional_reads=(T.TRANSACTIONS,),
        writes=(T.CUSTOMER_VALUE,),
    ),
    Stage(
        name="profile",
        entry="cdp.profile.stage:run_profile",
        description="Build gold/customer_profile: survivorship, identifiers, consents, RFM, engagement",
        depends_on=("identity", "value"),
        reads=(T.IDENTITY_MAP, T.IDENTITY_IDENTIFIERS),
        optional_reads=(*T.CANONICAL_TABLES, T.CUSTOMER_VALUE),
        writes=(T.CUSTOMER_PROFILE,),
    ),
    Stage(
        name="features",
        entry="cdp.models.features_stage:run_features",
        description="Build point-in-time gold/customer_features at as_of from attributed silver facts",
        depends_on=("profile",),
        reads=MODEL_INPUTS,
        optional_reads=OPTIONAL_MODEL_INPUTS,
        writes=(T.CUSTOMER_FEATURES,),
    ),
    Stage(
        name="train",
        entry="cdp.models.train_stage:run_train",
        description="Train the propensity models (pyspark.ml), log to MLflow, move champion/challenger",
        depends_on=("features",),
        reads=MODEL_INPUTS,
        optional_reads=(*OPTIONAL_MODEL_INPUTS, T.CUSTOMER_FEATURES),
        writes=(T.CUSTOMER_FEATURES,),
    ),
    Stage(
        name="score",
        entry="cdp.models.score_stage:run_score",
        description="Score every customer with each model's champion into gold/propensity_scores",
        depends_on=("train",),
        reads=MODEL_INPUTS,
        optional_reads=(*OPTIONAL_MODEL_INPUTS, T.CUSTOMER_FEATURES),
        writes=(T.CUSTOMER_FEATURES, T.PROPENSITY_SCORES),
    ),
    Stage(
        name="backtest",
        entry="cdp.models.backtest_stage:run_backtest",
        description="Out-of-time backtest: train before as_of, score at as_of, evaluate what happened",
        depends_on=("features",),
        in_pipeline=False,
        reads=MODEL_INPUTS,
        optional_reads=(*OPTIONAL_MODEL_INPUTS, T.CUSTOMER_FEATURES),
        writes=(T.CUSTOMER_FEATURES, T.MODEL_BACKTESTS),
    ),
    Stage(
        name="audiences",
        entry="cdp.audiences.stage:run_audiences",
        description="Evaluate the declared audiences and update gold/audience_membership",
        depends_on=("profile", "score"),
        reads=(T.CUSTOMER_PROFILE,),
        optional_reads=(T.PROPENSITY_SCORES, T.AUDIENCE_MEMBERSHIP),
        writes=(T.AUDIENCE_MEMBERSHIP, T.AUDIENCE_RUNS),
    ),
    Stage(
        name="export",
        entry="cdp.export.stage:run_export",
        description="Deliver each audience's consented members to the export target (boto3)",
        depends_on=("audiences",),
        reads=(T.CUSTOMER_PROFILE, T.AUDIENCE_MEMBERSHIP),
        optional_reads=(
            T.AUDIENCE_RUNS,
            T.CONSENTS,
            T.IDENTITY_MAP,
            T.IDENTITY_IDENTIFIERS,
            T.SUPPRESSION_LIST,
        ),
        writes=(T.AUDIT_LOG,),
    ),
    Stage(
        name="maintenance",
        entry="cdp.maintenance:run_maintenance",
        description="Compact small files and vacuum unreferenced files of every table",
        in_pipeline=False,
        optional_reads=(T.ANY_TABLE,),
        writes=(T.ANY_TABLE,),
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
            "reads": [t.name for t in s.reads],
            "optional_reads": [t.name for t in s.optional_reads],
            "writes": [t.name for t in s.writes],
        }
        for s in STAGES
    }


def script_name(stage: str) -> str:
    """The console script of a stage (``cdp-<stage>``, declared in pyproject [project.scripts])."""
    return f"cdp-{stage}"


def _load(path: str) -> Callable[..., int]:
    module, func = path.split(":")
    return getattr(importlib.import_module(module), func)  # type: ignore[no-any-return]


class _StageMains:
    """``cdp.pipeline:mains.<stage>``: the no-argument mains behind the ``cdp-<stage>`` scripts.

    Console scripts and Databricks ``python_wheel_task`` entry points call a function with no
    arguments; this gives one per stage without a module of near-identical functions, each
    calling :data:`ENTRY_POINT` with the process's arguments.
    """

    def __getattr__(self, name: str) -> Callable[[], int]:
        if name not in STAGE_BY_NAME:
            raise AttributeError(name)

        def main() -> int:
            import sys

            return _load(ENTRY_POINT)(name, sys.argv[1:])

        main.__name__ = main.__qualname__ = name
        return main


mains = _StageMains()
