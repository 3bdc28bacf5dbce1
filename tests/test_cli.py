"""The `cdp` command and the jobs/ entry points, run as real processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def cdp(
    *args: str, env: dict[str, str] | None = None, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "cdp"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def test_version_and_stages() -> None:
    from cdp import __version__
    from cdp.pipeline import STAGES

    out = cdp("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"cdp {__version__}"
    stages = cdp("stages")
    assert stages.returncode == 0
    assert [line.split()[0] for line in stages.stdout.splitlines()] == [s.name for s in STAGES]


def test_every_stage_has_a_job_entry_point() -> None:
    from cdp.pipeline import STAGES

    jobs = {p.stem.removesuffix("_job") for p in (ROOT / "jobs").glob("*_job.py")}
    assert jobs == {s.name for s in STAGES}
    for stage in STAGES:
        assert f'job_main("{stage.name}"' in (ROOT / "jobs" / f"{stage.name}_job.py").read_text()


def test_the_job_entry_point_takes_several_stages_and_refuses_an_unknown_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from cdp.entry import submit_main

    for argv in ([], ["ingest,nosuchstage"], ["ingest,"], ["nosuchstage"]):
        assert submit_main(argv) == 2, argv
        assert "usage: cdp_job.py STAGE[,STAGE...]" in capsys.readouterr().err
    # Known stages get as far as their flags: argparse rejects an unknown one with status 2.
    with pytest.raises(SystemExit) as exit_:
        submit_main(["ingest,silver", "--no-such-flag"])
    assert exit_.value.code == 2
    assert "cdp-ingest+silver" in capsys.readouterr().err


def test_usage_errors_are_one_clear_line() -> None:
    out = cdp("run", "nosuchstage")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("cdp: error: unknown stage 'nosuchstage'")
    bad = cdp("run", "ingest", "--set", "storage.backend=postgres")
    assert bad.returncode == 2
    assert "storage.backend" in bad.stderr and "command line" in bad.stderr
    when = cdp("run", "ingest", "--as-of", "yesterday")
    assert when.returncode == 2 and "--as-of" in when.stderr


def test_missing_spark_names_the_local_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The plain wheel (what a cluster installs) has no pyspark: locally, say what to install."""
    from cdp import cli

    def no_spark(*args: object, **kwargs: object) -> int:
        raise ModuleNotFoundError("No module named 'pyspark'", name="pyspark")

    monkeypatch.setattr(cli, "run_stages", no_spark)
    assert cli.main(["run", "ingest"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("cdp: error: pyspark is not installed") and "cdp-spark[local]" in err

    def other(*args: object, **kwargs: object) -> int:
        raise ModuleNotFoundError("No module named 'somelib'", name="somelib")

    monkeypatch.setattr(cli, "run_stages", other)
    assert cli.main(["run", "ingest"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "cdp: error: ModuleNotFoundError: No module named 'somelib'"
    )


def test_a_run_without_a_privacy_key_refuses_to_start(tmp_path: Path) -> None:
    """Outside `local` and `test`, no key is a configuration error before any Spark work."""
    env = {k: v for k, v in os.environ.items() if k != "CDP_PRIVACY_KEY"}
    out = subprocess.run(
        [str(BIN / "cdp"), "run", "identity", "--env", "cluster"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**env, "CDP_DATA_ROOT": str(tmp_path / "data")},
    )
    assert out.returncode == 2, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("cdp: configuration error: privacy: no pseudonymisation key")
    assert "spark" not in out.stderr.lower()  # refused before a session was started


def test_failed_stage_prints_error_and_log_then_tables_show_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    empty_sources = tmp_path / "no-sources"
    empty_sources.mkdir()
    out = cdp(
        "run",
        "ingest",
        "--env",
        "test",
        "--data-root",
        str(data),
        "--set",
        f"sources_dirs=[{empty_sources}]",
    )
    assert out.returncode == 1, out.stderr[-3000:]
    lines = out.stderr.strip().splitlines()
    assert lines[-2].startswith(
        "cdp: error: stage 'ingest' failed: ConfigError: no sources declared"
    )
    # ... and says what to do: a site's declarations, or the demo profile.
    assert "cdp init" in lines[-2] and "--conf conf/demo.yaml" in lines[-2]
    log_path = Path(lines[-1].removeprefix("cdp: log: "))
    assert log_path.exists() and "Traceback" in log_path.read_text()

    tables = cdp("tables", "--env", "test", "--data-root", str(data))
    assert tables.returncode == 0, tables.stderr[-3000:]
    assert "ops/run_log" in tables.stdout


@pytest.mark.slow
def test_console_shows_each_event_once_results_on_stdout(tmp_path: Path) -> None:
    """Progress on stderr once (not again through the log handler), results on stdout."""
    landing, sources = tmp_path / "landing", tmp_path / "sources"
    (landing / "crm").mkdir(parents=True)
    (landing / "crm" / "a.csv").write_text("id,email\n1,a@x.com\n2,b@x.com\n")
    sources.mkdir()
    (sources / "crm.yaml").write_text(
        "name: crm\nkind: profile\nformat: csv\npath: crm/*.csv\n"
        "options: {header: 'true'}\nprimary_key: [id]\n"
        "mapping: {source_record_id: id, email: email}\n"
    )
    args = (
        "run",
        "ingest",
        "--env",
        "test",
        "--data-root",
        str(tmp_path / "data"),
        "--set",
        f"landing_root={landing}",
        "--set",
        f"sources_dirs=[{sources}]",
        "--set",
        "log.level=INFO",  # the console log handler is on: it must not repeat progress lines
    )
    out = cdp(*args)
    assert out.returncode == 0, out.stderr[-3000:]
    progress = [line for line in out.stderr.splitlines() if "[ingest] " in line]
    assert progress, out.stderr[-3000:]
    for line in progress:
        message = line.split("[ingest] ", 1)[1]
        assert (out.stdout + out.stderr).count(message) == 1, message
    assert re.search(r"^\[1/1\] ingest done in .* \(run .*\)$", out.stdout, flags=re.M)
    assert re.search(r"^all done in ", out.stdout, flags=re.M)
    assert "done in" not in out.stderr
    assert "\r" not in out.stderr  # not a terminal: no live status line

    # --json: one object per stage and one for the run on stdout, nothing else there.
    again = cdp(*args, "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    docs = [json.loads(line) for line in again.stdout.splitlines()]
    assert [d["type"] for d in docs] == ["stage", "run"]
    assert docs[0]["stage"] == "ingest" and docs[0]["status"] == "success"
    assert docs[0]["run_id"] and docs[0]["log"].endswith(".log")
    assert docs[1]["status"] == "success" and docs[1]["stages"] == ["ingest"]
    assert "a@x.com" not in again.stdout


def test_spark_submit_runs_a_job_from_the_zip(tmp_path: Path) -> None:
    """pyspark's own spark-submit, --master local[2], with the library shipped as a zip."""
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, str(ROOT / "infra" / "package.py"), "--out", str(dist)], check=True
    )
    from cdp import __version__

    archive = dist / f"cdp-{__version__}.zip"  # beside it: cdp-conf-<version>.zip
    assert "cdp/bronze/ingest.py" in zipfile.ZipFile(archive).namelist()

    landing = tmp_path / "landing"
    (landing / "crm").mkdir(parents=True)
    (landing / "crm" / "a.csv").write_text("id,email\n1,a@x.com\n2,b@x.com\n")
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "crm.yaml").write_text(
        "name: crm\nkind: profile\nformat: csv\npath: crm/*.csv\noptions: {header: 'true'}\n"
    )
    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "CDP_DATA_ROOT": str(tmp_path / "data"),
        "CDP_LANDING_ROOT": str(landing),
    }
    proc = subprocess.run(
        [
            str(BIN / "spark-submit"),
            "--master",
            "local[2]",
            "--conf",
            "spark.ui.enabled=false",
            "--py-files",
            str(archive),
            str(ROOT / "jobs" / "ingest_job.py"),
            "--env",
            "test",
            "--set",
            f"sources_dirs=[{sources}]",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    # Imported from the shipped zip (spark-submit's copy of it), not from the checkout.
    # spark-submit's PythonRunner hands the driver's stderr to its stdout.
    output = proc.stdout + proc.stderr
    assert re.search(rf"cdp library: \S*{re.escape(archive.name)}/cdp\n", output), output[-3000:]
    assert "master=local[2]" in output
    from deltalake import DeltaTable

    bronze = DeltaTable(str(tmp_path / "data" / "bronze" / "crm"))
    assert bronze.to_pyarrow_table().num_rows == 2
