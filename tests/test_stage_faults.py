"""Every stage killed for real after one of its table writes, then rerun: the rerun must leave
what one uninterrupted run leaves, table by table.

How (CI-affordable, 2 cores): one small generated landing zone; the chain ingest -> export
runs once in this process (the test session's Spark), with a copy of the data root taken
before each stage and a count of that stage's table writes. A crash case copies the "before"
state, runs ``cdp run <stage>`` in a subprocess armed with ``CDP_FAULT_POINT=storage.after_write``
and ``CDP_FAULT_AFTER=k`` (the process ``os._exit``-s once the k+1-th write's files are
staged, before that write commits: writes 1..k are committed), reruns the stage here, and
compares each table the stage writes with the uninterrupted run's.

Crash positions per stage: ``last`` (every write but the last committed: the most partial
state; CI runs silver's, ``pytest -m heavy`` every stage's), ``first`` (nothing committed) and ``logged`` (every stage write committed,
the process dies before its run-log row), both marked slow. ``CDP_FAULT_EVERY_WRITE=1`` adds
a case for every write of every stage (a local sweep; about two stage runs per case).

What "equal" means: the same rows, compared as canonical JSON (byte for byte), without the
columns that say when or by which run a row was written (:data:`VOLATILE`), which differ
between any two runs. Train fits models: those go to MLflow, not to tables, and Spark ML's
fits on these inputs are deterministic only given equal partitioning; the test checks what
must hold for them (each model's ``champion`` alias names exactly one complete, loadable
version) rather than equal coefficients.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from cdp import faults
from cdp.config import CdpConfig, load_config
from cdp.pipeline import get_stage
from cdp.runlog import RUN_LOG_TABLE
from cdp.runner import run_stage

REPO = Path(__file__).resolve().parents[1]
STAGES = ("silver", "identity", "profile", "features", "train", "score", "audiences", "export")
PERSONS, SEED = 60, 5
# The model search kept to one small candidate per family, as the demo tests do.
OVERRIDES = {"models.search.time_budget_seconds": 1, "models.search.lr_max_iter": 20}

# Columns that record the run or the wall-clock time of a write: two runs never agree on
# them, crashed or not. Everything else must be equal.
VOLATILE = {
    "run_id",  # gold tables, scores, audiences, the audit log
    "_silver_run_id",
    "_silver_updated_at",
    "silver_run_id",  # ops/silver_progress
    "processed_at",
    "changed_at",  # silver/_changes
    "quarantined_at",
    "assigned_run_id",  # gold/identity_map: the run that assigned an id, and when
    "assigned_at",
    "evaluated_at",  # gold/audience_runs
    "at",  # ops/audit_log
    "profile_run_id",  # gold/customer_profile: the profile run that wrote the row
}


@dataclass
class Chain:
    """The uninterrupted chain, built lazily one stage at a time (so no single test's setup
    pays for the whole chain): data root copies before and after each stage run, and the
    number of table writes each made."""

    spark: SparkSession
    base: Path
    landing: Path
    work: Path
    before: dict[str, Path] = field(default_factory=dict)
    after: dict[str, Path] = field(default_factory=dict)
    writes: dict[str, int] = field(default_factory=dict)  # storage.after_write passes per run

    def upto(self, stage: str) -> None:
        """Run every stage up to ``stage`` that has not run yet, in pipeline order."""
        config = stage_config(self.work, self.landing)
        real = faults.checkpoint
        for name in STAGES[: STAGES.index(stage) + 1]:
            if name in self.after:
                continue
            self.before[name] = self.base / f"before-{name}"
            shutil.copytree(self.work, self.before[name])
            count = Counter[str]()

            def counting(point: str, count: Counter[str] = count) -> None:
                count[point] += 1
                real(point)

            faults.checkpoint = counting  # type: ignore[assignment]
            try:
                run_stage(name, spark=self.spark, config=config)
            finally:
                faults.checkpoint = real  # type: ignore[assignment]
            self.writes[name] = count["storage.after_write"]
            self.after[name] = self.base / f"after-{name}"
            shutil.copytree(self.work, self.after[name])
            print(f"{name}: {self.writes[name]} table writes per run (run log included)")


def stage_config(data_root: Path, landing: Path) -> CdpConfig:
    return load_config(
        env="test",
        overrides={"data_root": str(data_root), "landing_root": str(landing), **OVERRIDES},
    )


def cli_args(stage: str, data_root: Path, landing: Path) -> list[str]:
    sets = [a for k, v in OVERRIDES.items() for a in ("--set", f"{k}={v}")]
    return [
        sys.executable,
        "-m",
        "cdp.cli",
        "run",
        stage,
        "--env",
        "test",
        "--data-root",
        str(data_root),
        "--set",
        f"landing_root={landing}",
        *sets,
    ]


@pytest.fixture(scope="module", autouse=True)
def one_privacy_key() -> Iterator[None]:
    """One pseudonymisation key for every run here, killed or not: a data root copied before
    its first keyed write has no generated key yet, and a key generated in each copy would
    make every keyed hash (rejected-link values) differ for that reason alone."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CDP_PRIVACY_KEY", "stage-faults-test-key-" + "k" * 32)
        yield


@pytest.fixture(scope="module")
def chain(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Chain:
    from cdp.generate import generate_landing

    base = tmp_path_factory.mktemp("stage-faults")
    landing = base / "landing"
    generate_landing(spark, out_dir=str(landing), persons=PERSONS, seed=SEED)
    # The working root keeps its path: MLflow records artifact locations as absolute paths,
    # so the copies' registries point at this root's artifacts (which stay where they are).
    work = base / "work" / "data"
    run_stage("ingest", spark=spark, config=stage_config(work, landing))
    return Chain(spark, base, landing, work)


# --------------------------------------------------------------------------------------------
# Comparing two data roots
# --------------------------------------------------------------------------------------------
def tables_under(root: Path) -> list[str]:
    return sorted(
        str(p.parent.relative_to(root))
        for layer in ("bronze", "silver", "gold", "ops")
        for p in root.glob(f"{layer}/*/_delta_log")
    )


def written_by(stage: str, root: Path) -> list[str]:
    spec = get_stage(stage)
    return [t for t in tables_under(root) if spec.may_write(t) and t != RUN_LOG_TABLE]


def _rounded(value: Any) -> Any:
    """Floats to 12 significant digits: a matching model reused from its MLflow JSON after
    the crash scores with weights that differ from the freshly trained one's in the last
    bits (3.6e-15 measured), the same model all the same."""
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


# A delivery's address names the run that made it (``.../run=<run id>/...``): after a crash the
# rerun keeps the killed run's sealed delivery, so only the run id in it may differ; and the
# folder of the data root it lies in (the test's copy vs the chain's working root).
RUN_IN_PATH = re.compile(r"run=[^/]+")
EXPORTS_ROOT = re.compile(r"[^\s\"']*/exports/")


def _without_run(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    return EXPORTS_ROOT.sub("<exports>/", RUN_IN_PATH.sub("run=*", value))


def canonical_rows(root: Path, table: str) -> list[str]:
    rows = DeltaTable(str(root / table)).to_pyarrow_table().to_pylist()
    return sorted(
        json.dumps(
            {k: _rounded(_without_run(v)) for k, v in r.items() if k not in VOLATILE},
            sort_keys=True,
            default=str,
        )
        for r in rows
    )


def differing_columns(a: list[str], b: list[str]) -> list[str]:
    """The columns whose values (as multisets) differ: what a failure message names."""
    ra, rb = [json.loads(x) for x in a], [json.loads(x) for x in b]
    cols = sorted({k for r in ra + rb for k in r})
    return [
        c
        for c in cols
        if Counter(json.dumps(r.get(c), default=str) for r in ra)
        != Counter(json.dumps(r.get(c), default=str) for r in rb)
    ]


def assert_same_tables(stage: str, got: Path, want: Path) -> None:
    tables = written_by(stage, want)
    assert tables, f"{stage} wrote no table in the uninterrupted run"
    assert written_by(stage, got) == tables
    problems = []
    for table in tables:
        a, b = canonical_rows(got, table), canonical_rows(want, table)
        if a != b:
            problems.append(
                f"{table}: {len(a)} rows after crash+rerun vs {len(b)} uninterrupted; "
                f"columns differing: {differing_columns(a, b)}"
            )
    assert not problems, f"{stage}: " + "; ".join(problems)


def exported_files(root: Path) -> dict[str, bytes]:
    """Every delivered object by its key, the run id in it masked."""
    base = root / "exports"
    return {
        _without_run(str(p.relative_to(base))): p.read_bytes()
        for p in sorted(base.rglob("*"))
        if p.is_file()
    }


def same_file_content(key: str, a: bytes, b: bytes) -> bool:
    """Byte for byte, except Parquet: parquet-mr lists a column chunk's encodings in the
    order of a hash set, which differs between two JVMs writing the same rows (seen: [6, 8, 0]
    vs [8, 0, 6] in one footer), so Parquet files compare by their rows, in order."""
    if not key.endswith(".parquet"):
        return a == b
    import io

    import pyarrow.parquet as pq

    return bool(pq.read_table(io.BytesIO(a)).equals(pq.read_table(io.BytesIO(b))))


def check_champions(root: Path) -> None:
    """Each registered model: ``champion`` names one version, whose run finished and whose
    model files are there (a crash between registering and aliasing must not break it)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    models = client.search_registered_models()
    assert models, "train registered no model"
    for model in models:
        champions = [
            v
            for v in client.search_model_versions(f"name = '{model.name}'")
            if "champion" in (client.get_model_version(model.name, v.version).aliases or [])
        ]
        assert len(champions) == 1, (model.name, [v.version for v in champions])
        version = client.get_model_version_by_alias(model.name, "champion")
        assert client.get_run(version.run_id).info.status == "FINISHED"
        source = version.source
        if source.startswith("file://"):
            assert Path(source.removeprefix("file://")).exists(), source


# --------------------------------------------------------------------------------------------
# The crash cases
# --------------------------------------------------------------------------------------------
def crash_positions(writes: int) -> dict[str, int]:
    """CDP_FAULT_AFTER per named position; ``writes`` counts the run-log row too."""
    return {"first": 0, "last": writes - 2, "logged": writes - 1}


# The stage whose crash case CI runs (.ci/run): it needs only ingest and silver before it. The
# others need the chain up to their stage plus two runs of it (about 20 minutes of a 2-core
# CI machine for all eight) and are `heavy`: `pytest -m heavy` runs them.
CI_STAGES = ("silver",)


def cases() -> Iterator[Any]:
    for stage in STAGES:
        heavy = [] if stage in CI_STAGES else [pytest.mark.heavy]
        yield pytest.param(stage, "last", id=f"{stage}-last", marks=heavy)
        for position in ("first", "logged"):
            marks = [pytest.mark.slow, pytest.mark.sweep]
            yield pytest.param(stage, position, id=f"{stage}-{position}", marks=marks)
        if os.environ.get("CDP_FAULT_EVERY_WRITE") == "1":
            for k in range(40):  # cases past a stage's last write are skipped
                marks = [pytest.mark.slow, pytest.mark.sweep]
                yield pytest.param(stage, k, id=f"{stage}-{k}", marks=marks)


def crash_then_rerun(
    spark: SparkSession, chain: Chain, stage: str, after: int, root: Path
) -> subprocess.CompletedProcess[str]:
    shutil.copytree(chain.before[stage], root)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "lib"), os.environ.get("PYTHONPATH", "")]),
        "CDP_FAULT_POINT": "storage.after_write",
        "CDP_FAULT_AFTER": str(after),
    }
    env.pop("CDP_FAULT_MODE", None)
    proc = subprocess.run(
        cli_args(stage, root, chain.landing),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 137, (after, proc.stdout[-2000:] + proc.stderr[-3000:])
    # The killed run's lease would block the rerun until it expires (runner.lock_ttl_seconds):
    # an operator who knows the process is dead removes it, as here.
    (root / "_locks" / "pipeline.lock").unlink(missing_ok=True)
    run_stage(stage, spark=spark, config=stage_config(root, chain.landing))
    return proc


# A case runs the stage up to three times (the chain's run when first needed, the killed run,
# the rerun): identity and train take minutes each on a busy 2-core machine.
@pytest.mark.timeout(1800)
@pytest.mark.parametrize(("stage", "position"), list(cases()))
def test_crash_after_a_write_then_rerun_equals_one_run(
    spark: SparkSession, chain: Chain, stage: str, position: str | int, tmp_path: Path
) -> None:
    chain.upto(stage)
    writes = chain.writes[stage]
    after = position if isinstance(position, int) else crash_positions(writes)[position]
    if not 0 <= after < writes:
        pytest.skip(f"{stage} makes {writes} writes (run log included)")
    root = tmp_path / "data"
    crash_then_rerun(spark, chain, stage, after, root)
    assert_same_tables(stage, root, chain.after[stage])
    if stage == "train":
        check_champions(root)
    if stage == "export":
        # Exactly once: the same objects as one uninterrupted run (a delivery the killed run
        # sealed stands; the rerun does not deliver it again).
        got, want = exported_files(root), exported_files(chain.after[stage])
        assert got.keys() == want.keys()
        data = [k for k in want if k.rsplit("/", 1)[-1].startswith("part-")]
        assert data and all(same_file_content(k, got[k], want[k]) for k in data), data
