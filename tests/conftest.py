"""Shared fixtures: one local SparkSession for the whole test session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

TESTS = Path(__file__).resolve().parent
# The suite's per-test limit (pyproject: 900 s) for tests that read the shared demo run.
DEMO_TIMEOUT_SECONDS = 2400
# Tests mirror lib/cdp/ (tests/silver/test_std_phone.py tests lib/cdp/silver/std_phone.py);
# these folders hold the scenario and end-to-end tests and mark them (`pytest -m "not e2e"`).
FOLDER_MARKERS = {"scenarios": "scenario", "e2e": "e2e"}
# Worker-seconds of the longest groups (one module, or every reader of the demo), measured in
# a full run of CI's command on 2 cores from a fresh clone (2026-12-05, night: 1,172 s for
# 2,278 worker-seconds). Two workers finish together only when the longest groups start
# first: collected in this order, and CI passes --no-loadscope-reorder so that pytest-xdist
# keeps it (by default it orders groups by their number of tests, and the erasure scenario
# ran alone for the last 8 minutes). Unlisted groups follow, in collection order. The
# `heavy` groups are not in CI's run; their figures order a `pytest -m heavy` run.
GROUP_SECONDS = {
    # The demo run, the cluster chain compared with it, the erasure scenario and the e2e
    # checks on copies of it (the cluster chain as three applications: 289 s measured alone,
    # 2026-12-07; 451 s as eleven).
    "demo": 1070,
    "identity/test_identity_stage.py": 370,
    "models/test_models_stages.py": 165,
    "test_stage_faults.py": 120,  # CI runs silver's case alone; `-m heavy` the rest (~700 s)
    "scenarios/test_transactions_only.py": 105,
    "scenarios/test_onboarding_own_files.py": 95,
    "storage/test_table_store_faults.py": 80,
    "infra/test_infra_submit.py": 75,
    "test_cli.py": 70,
    "silver/test_silver_stage.py": 70,
    "identity/matching/test_matching_step.py": 55,
    "generate/test_generate.py": 50,
    "storage/test_table_store.py": 45,
    "identity/test_components.py": 40,
}


# Readers of the demo run that compare its tables with another run of the same landing.
DEMO_FIRST = {"infra/test_cluster.py"}


# A wrapper: the marks go on before every other implementation of this hook (pytest-xdist
# reads the xdist_group marks in its own), and the node ids are checked after them all.
@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> Iterator[None]:
    uses_demo: dict[Path, bool] = {}
    for item in items:
        path = Path(str(item.fspath)).resolve()
        folder = path.relative_to(TESTS).parts[0]
        if folder in FOLDER_MARKERS:
            item.add_marker(FOLDER_MARKERS[folder])
        # Parallel runs (CI: `-n 2 --dist loadgroup`) keep a module on one worker, so that
        # its module fixtures are built once, and every module that reads the shared demo
        # run on the same worker, so that the demo runs once.
        if path not in uses_demo:
            uses_demo[path] = "demo_run" in path.read_text(encoding="utf-8")
        group = "demo" if uses_demo[path] else str(path.relative_to(TESTS))
        item.add_marker(pytest.mark.xdist_group(group))
        if uses_demo[path] and item.get_closest_marker("timeout") is None:
            # The first reader's setup runs the whole demo (`cdp demo`, every stage): on a
            # 2-core machine under other load it has passed the suite's 900 s default.
            item.add_marker(pytest.mark.timeout(DEMO_TIMEOUT_SECONDS))
    groups = {id(item): _group_of(item) for item in items}
    # Stable: collection order within a group, but the demo's readers that compare with what
    # the demo wrote go before those that write into its data root (notebook look-ups append
    # to its audit log).
    items.sort(
        key=lambda item: (
            -GROUP_SECONDS.get(groups[id(item)] or "", 0),
            Path(str(item.fspath)).resolve().relative_to(TESTS).as_posix() not in DEMO_FIRST,
        )
    )
    yield
    if getattr(config.option, "loadgroup", False):
        _put_group_in_node_ids(items)


def _group_of(item: pytest.Item) -> str | None:
    return next((str(m.args[0]) for m in item.iter_markers("xdist_group") if m.args), None)


def _put_group_in_node_ids(items: list[pytest.Item]) -> None:
    """pytest-xdist 3.8 puts the group into the node id by assigning `item._nodeid`, which
    pytest 9.2 no longer reads (the id lives in `item._id`): the controller never saw a group
    and the demo ran once per worker. Put the suffix where this pytest reads it."""
    from _pytest.nodeid import coerce_node_id

    for item in items:
        group = _group_of(item)
        if group is not None and not item.nodeid.endswith(f"@{group}"):
            item._id = coerce_node_id(f"{item.nodeid}@{group}")  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    from cdp.config import load_config
    from cdp.session import build_session

    root = tmp_path_factory.mktemp("spark-session")
    config = load_config(
        env="test",
        overrides={"data_root": str(root)},
    )
    session = build_session(config)
    yield session
    session.stop()


@pytest.fixture()
def data_root(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, Path]:
    """Empty ``data``, ``landing`` and ``sources`` folders (a hand-made landing zone).

    Here rather than in ``tests/bronze/conftest.py``: test modules import ``DemoRun`` from
    ``conftest``, and a second conftest module would shadow this one.
    """
    paths = {n: tmp_path / n for n in ("data", "landing", "sources")}
    for p in paths.values():
        p.mkdir(parents=True)
    return paths


@dataclass(frozen=True)
class DemoRun:
    """One `cdp demo` run shared by the end-to-end, notebook and report tests."""

    data_root: Path
    returncode: int
    output: str

    def check(self) -> None:
        assert self.returncode == 0, self.output[-4000:]

    @property
    def landing(self) -> Path:
        return self.data_root / "landing"

    def copy_data_root(self, dest: Path) -> Path:
        """A copy of the demo's data root at ``dest``, for a test that writes; the landing zone
        is left out and stays at :attr:`landing`: ``ops/ingested_files`` names files by their
        path, so the copy's next ingest sees exactly the files the demo took in."""
        self.check()
        shutil.copytree(
            self.data_root,
            dest,
            ignore=lambda folder, names: ["landing"] if Path(folder) == self.data_root else [],
        )
        return dest


# Demo flags kept small so the whole chain fits a 2-core CI box: one model candidate per family,
# five boosting rounds (as the model and scenario tests use) instead of thirty.
DEMO_ARGS = ["--persons", "300", "--seed", "5", "--env", "test"] + [
    "--set",
    "models.search.time_budget_seconds=1",
    "--set",
    "models.search.lr_max_iter=20",
    "--set",
    "models.search.gbt_max_iter=[5]",
]


@contextmanager
def moto_s3(bucket: str) -> Iterator[str]:
    """A real S3-compatible endpoint over HTTP (moto's threaded server) holding ``bucket``;
    credentials reach boto3 through the standard chain (environment variables), never
    through cdp's configuration."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("AWS_ACCESS_KEY_ID", "testing")
            mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
            mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
            mp.delenv("AWS_PROFILE", raising=False)
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
            yield endpoint
    finally:
        server.stop()


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """`cdp demo` as a user types it, in its own process (its own SparkSession), run once."""
    data_root = tmp_path_factory.mktemp("demo") / "data"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "cdp.cli", "demo", *DEMO_ARGS, "--data-root", str(data_root)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    return DemoRun(data_root, proc.returncode, proc.stdout + proc.stderr)
