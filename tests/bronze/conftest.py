"""Fixtures of the bronze tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, Path]:
    """Empty ``data``, ``landing`` and ``sources`` folders."""
    paths = {n: tmp_path / n for n in ("data", "landing", "sources")}
    for p in paths.values():
        p.mkdir(parents=True)
    return paths
