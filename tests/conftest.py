"""Shared fixtures: one local SparkSession for the whole test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession


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
