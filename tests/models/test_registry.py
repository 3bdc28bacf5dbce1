"""cdp.models.registry: the MLflow registry wrapper's effect on the process environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR

from cdp.models.registry import Registry


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
