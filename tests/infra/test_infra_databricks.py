"""The Databricks Asset Bundle against the stage graph and pyproject's entry points."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from cdp.pipeline import STAGES, edges, pipeline_stages

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "infra" / "databricks" / "databricks.yml"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "cdp_infra_generate", ROOT / "infra" / "generate.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bundle() -> dict[str, Any]:
    return yaml.safe_load(BUNDLE.read_text())


@pytest.fixture(scope="module")
def scripts() -> dict[str, str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def test_committed_bundle_is_the_generated_one() -> None:
    gen = _generator()
    assert BUNDLE.read_text() == gen.render(), "stale: run `python infra/generate.py`"
    assert gen.check() == []


def test_pipeline_job_has_one_wheel_task_per_stage_wired_like_the_graph(
    bundle: dict[str, Any],
) -> None:
    job = bundle["resources"]["jobs"]["cdp_pipeline"]
    tasks = {t["task_key"]: t for t in job["tasks"]}
    assert sorted(tasks) == sorted(s.name for s in pipeline_stages())
    got_edges = {(d["task_key"], key) for key, t in tasks.items() for d in t.get("depends_on", [])}
    names = set(tasks)
    # A dependency on a stage that does not exist (yet) cannot be a task dependency.
    assert got_edges == {(u, d) for u, d in edges() if u in names}
    clusters = {c["job_cluster_key"] for c in job["job_clusters"]}
    for task in tasks.values():
        assert task["job_cluster_key"] in clusters
        assert task["max_retries"] >= 1
        params = task["python_wheel_task"]["parameters"]
        # as_of comes from the job parameter (the run's date unless overridden).
        assert params[params.index("--as-of") + 1] == "{{job.parameters.as_of}}"
    assert {p["name"] for p in job["parameters"]} == {"as_of"}


def test_every_dependency_names_a_stage() -> None:
    known = {s.name for s in STAGES}
    dangling = sorted((d, s.name) for s in STAGES for d in s.depends_on if d not in known)
    assert not dangling, f"(missing upstream, stage): {dangling}"


def test_each_on_demand_stage_is_an_unscheduled_job(bundle: dict[str, Any]) -> None:
    jobs = bundle["resources"]["jobs"]
    on_demand = sorted(s.name for s in STAGES if not s.in_pipeline)
    assert sorted(jobs) == sorted(["cdp_pipeline"] + [f"cdp_{name}" for name in on_demand])
    for name in on_demand:
        job = jobs[f"cdp_{name}"]
        assert "schedule" not in job
        assert [t["task_key"] for t in job["tasks"]] == [name]
        assert "depends_on" not in job["tasks"][0]


def test_entry_points_are_declared_and_run_their_stage(
    bundle: dict[str, Any],
    scripts: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
    for job in bundle["resources"]["jobs"].values():
        for task in job["tasks"]:
            wheel_task = task["python_wheel_task"]
            assert wheel_task["package_name"] == project.replace("-", "_")
            target = scripts[wheel_task["entry_point"]]
            # Resolve "module:attr.attr" the way console scripts and Databricks do, and call it:
            # --help proves it is the job main of this very stage without starting Spark.
            module, attrs = target.split(":")
            obj: Any = importlib.import_module(module)
            for attr in attrs.split("."):
                obj = getattr(obj, attr)
            monkeypatch.setattr(sys, "argv", [wheel_task["entry_point"], "--help"])
            with pytest.raises(SystemExit) as exc:
                obj()
            assert exc.value.code == 0
            assert f"run the {task['task_key']} stage" in capsys.readouterr().out
    # Every stage has its script, and no script names a stage that does not exist.
    stage_scripts = {k for k, v in scripts.items() if v.startswith("cdp.pipeline:mains.")}
    assert stage_scripts == {f"cdp-{s.name}" for s in STAGES}


def test_cluster_carries_graphframes_and_targets_exist(bundle: dict[str, Any]) -> None:
    from cdp.session import GRAPHFRAMES_PACKAGE

    assert set(bundle["targets"]) == {"dev", "prod"}
    assert bundle["targets"]["dev"]["mode"] == "development"
    assert bundle["targets"]["prod"]["mode"] == "production"
    for job in bundle["resources"]["jobs"].values():
        for task in job["tasks"]:
            libs = task["libraries"]
            assert {"maven": {"coordinates": GRAPHFRAMES_PACKAGE}} in libs
            assert any(lib.get("whl", "").endswith(".whl") for lib in libs)
    # Every ${var.x} used is declared.
    text = BUNDLE.read_text()
    for name in bundle["variables"]:
        assert f"${{var.{name}}}" in text
    used = {part.split("}")[0] for part in text.split("${var.")[1:]}
    assert used <= set(bundle["variables"])
