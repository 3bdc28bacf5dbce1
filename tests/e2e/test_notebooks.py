"""The data-scientist notebooks (``notebooks/*.ipynb``) run top to bottom on a demo run.

Each notebook is executed in its own Jupyter kernel (nbclient, kernel ``python3``, cwd the
repository root) against the data root of the shared ``cdp demo`` run; any cell error fails
the test with the cell's traceback. Then what the notebook printed is checked against the
tables, MLflow and the files it wrote.

For development, ``CDP_NOTEBOOK_DATA_ROOT=/path/to/data`` runs them against an existing,
complete data root instead of the demo fixture (``CDP_NOTEBOOK_ENV``, default ``test``, is then
the environment its models were registered under, e.g. ``local`` for a plain ``cdp demo``).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from conftest import DemoRun

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = ["customer_360", "propensity_modelling", "audience_builder"]
# Per cell: the training cell is the slowest (two models on a busy 2-core box).
CELL_TIMEOUT_S = 1200


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_has_no_outputs(name: str) -> None:
    book = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    nbformat.validate(book)
    code = [c for c in book.cells if c.cell_type == "code"]
    assert code, name
    for cell in code:
        assert cell.get("outputs") == [], (name, cell.source[:80])
        assert cell.get("execution_count") is None, (name, cell.source[:80])
    # The first code cell holds the parameters and opens the workspace through the library.
    assert "open_workspace(" in code[0].source
    assert "parameters" in code[0].metadata.get("tags", [])


@pytest.fixture(scope="module")
def notebook_data(request: pytest.FixtureRequest) -> tuple[Path, str]:
    """(data root, env) the notebooks run against."""
    override = os.environ.get("CDP_NOTEBOOK_DATA_ROOT")
    if override:
        return Path(override), os.environ.get("CDP_NOTEBOOK_ENV", "test")
    demo: DemoRun = request.getfixturevalue("demo_run")
    demo.check()
    return demo.data_root, "test"


def _execute(name: str, data_root: Path, env: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the notebook; return everything its cells printed (stdout and text results)."""
    book = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    # The kernel inherits this process's environment.
    monkeypatch.setenv("CDP_DATA_ROOT", str(data_root))
    monkeypatch.setenv("CDP_ENV", env)
    client = nbclient.NotebookClient(
        book,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(ROOT)}},
    )
    client.execute()  # CellExecutionError (with the traceback) on the first failing cell
    parts = []
    for cell in book.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stdout":
                parts.append(out["text"])
            elif "text/plain" in out.get("data", {}):
                parts.append(out["data"]["text/plain"])
    return "\n".join(parts)


def _delta(data_root: Path, table: str):  # type: ignore[no-untyped-def]
    from deltalake import DeltaTable

    return DeltaTable(str(data_root / table))


def _check_customer_360(text: str, data_root: Path, env: str) -> None:
    import pyarrow.compute as pc

    found = re.search(r"^customer_id: (\S+)$", text, re.M)
    assert found, text[-3000:]
    customer = found.group(1)
    cluster = re.search(rf"cluster of {re.escape(customer)}: (\d+) source records", text)
    assert cluster, text[-3000:]
    shown = int(cluster.group(1))
    # No parameters given: the largest cluster, which the printed size must match.
    ids = _delta(data_root, "gold/identity_map").to_pyarrow_table(columns=["customer_id"])
    counts = pc.value_counts(ids["customer_id"]).to_pylist()
    sizes = {c["values"]: c["counts"] for c in counts}
    assert shown == sizes[customer] == max(sizes.values()) >= 1
    assert customer == min(c for c, n in sizes.items() if n == shown)
    assert "every value comes from a record of this cluster: True" in text
    assert re.search(r"\d+ customers; mean cluster size [0-9.]+; largest \d+", text)


def _check_propensity(text: str, data_root: Path, env: str) -> None:
    from mlflow import MlflowClient

    candidate = re.search(r"candidate holdout (\w+): ([0-9.]+)", text)
    champion = re.search(r"champion v(\d+) holdout (\w+): ([0-9.]+)", text)
    assert candidate and champion, text[-3000:]
    assert candidate.group(1) == champion.group(2)
    assert 0.0 <= float(candidate.group(2)) <= 1.0
    assert 0.0 <= float(champion.group(3)) <= 1.0
    run_id = re.search(r"MLflow run (\w+) \(not registered", text)
    assert run_id, text[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{data_root / 'mlflow' / 'mlflow.db'}")
    run = client.get_run(run_id.group(1))
    assert run.data.tags["cdp.kind"] == "candidate"
    assert "holdout_roc_auc" in run.data.metrics
    assert "champion_holdout_roc_auc" in run.data.metrics
    # Logged, not registered: no model version comes from this run, and the champion is the
    # version the notebook compared against.
    assert client.search_model_versions(f"run_id = '{run.info.run_id}'") == []
    name = f"cdp_{env}_purchase_90d"
    assert str(client.get_model_version_by_alias(name, "champion").version) == champion.group(1)


def _check_audience_builder(text: str, data_root: Path, env: str) -> None:
    found = re.search(r"^manifest: (\S+)$", text, re.M)
    assert found, text[-3000:]
    manifest_path = Path(found.group(1))
    assert manifest_path.is_relative_to(data_root / "notebook_exports")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["audience"] == "nb_likely_buyers"
    assert manifest["row_count"] > 0
    assert manifest["row_count"] == sum(f["rows"] for f in manifest["files"])
    for entry in manifest["files"]:
        assert (manifest_path.parent / entry["path"]).is_file()
    assert (manifest_path.parent / "_SUCCESS").exists()
    members = re.search(r"(\d+) of them hold the marketing/email consent", text)
    assert members and int(members.group(1)) == manifest["counts"]["members"]


CHECKS = {
    "customer_360": _check_customer_360,
    "propensity_modelling": _check_propensity,
    "audience_builder": _check_audience_builder,
}


@pytest.mark.slow
@pytest.mark.timeout(2400)
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(
    name: str, notebook_data: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data_root, env = notebook_data
    pipeline_exports = sorted((data_root / "exports").rglob("manifest.json"))
    text = _execute(name, data_root, env, monkeypatch)
    CHECKS[name](text, data_root, env)
    # The notebooks never write where the export stage delivers.
    assert sorted((data_root / "exports").rglob("manifest.json")) == pipeline_exports
