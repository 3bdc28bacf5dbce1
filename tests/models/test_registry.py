"""cdp.models.registry: the MLflow registry wrapper's effect on the process environment, and
new SQLite stores seeded from the cached empty schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR

from cdp.models.registry import Registry, seed_sqlite_store


def test_opening_a_registry_turns_mlflows_download_bars_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    assert MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.get() is True  # MLflow's default: bars on
    Registry(f"sqlite:///{tmp_path / 'mlflow.db'}", "test")
    assert MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.get() is False


def test_a_users_own_progress_bar_setting_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "true")
    Registry(f"sqlite:///{tmp_path / 'mlflow.db'}", "test")
    assert MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.get() is True


def test_a_new_sqlite_store_is_a_copy_of_the_cached_schema_and_works_as_one_mlflow_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    import mlflow

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    template = tmp_path / "cache" / "cdp-mlflow-schema" / f"mlflow-{mlflow.__version__}.db"
    first, second = tmp_path / "a" / "mlflow.db", tmp_path / "b" / "mlflow.db"
    for db in (first, second):
        db.parent.mkdir()
        assert seed_sqlite_store(db)
        assert template.is_file() and db.read_bytes() == template.read_bytes()
    # The schema is MLflow's own at its newest revision, with no experiment in it yet.
    with sqlite3.connect(template) as con:
        assert con.execute("SELECT count(*) FROM experiments").fetchone() == (0,)
        assert con.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    assert not seed_sqlite_store(first)  # an existing store is never replaced

    registry = Registry(f"sqlite:///{second}", "test", artifact_root=str(tmp_path / "art"))
    names = {e.name for e in registry.client.search_experiments()}
    assert names == {"Default"}  # MLflow added its default experiment when it opened it
    experiment = registry.experiment_id("purchase")
    run = registry.client.create_run(experiment)
    registry.client.log_metric(run.info.run_id, "roc_auc", 0.75)
    again = Registry(f"sqlite:///{second}", "test")
    assert again.client.get_run(run.info.run_id).data.metrics == {"roc_auc": 0.75}
    artifact_uri = again.client.get_experiment(experiment).artifact_location
    assert artifact_uri.startswith((tmp_path / "art").as_uri())


def test_a_store_is_left_to_mlflow_when_the_schema_cannot_be_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder would be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    db = tmp_path / "mlflow.db"
    assert not seed_sqlite_store(db) and not db.exists()
    registry = Registry(f"sqlite:///{db}", "test")
    assert {e.name for e in registry.client.search_experiments()} == {"Default"}
