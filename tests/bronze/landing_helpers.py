"""Hand-made landing zones for the bronze tests: declare a source, write a file, run ingest."""

from __future__ import annotations

from pathlib import Path

import yaml
from pyspark.sql import SparkSession

from cdp.config import CdpConfig, load_config
from cdp.runner import StageResult, run_stage


def declare(sources_dir: Path, name: str, **spec: object) -> None:
    """A source YAML (kind ``profile`` unless given) in ``sources_dir``."""
    sources_dir.mkdir(parents=True, exist_ok=True)
    body = {"name": name, "kind": "profile", **spec}
    (sources_dir / f"{name}.yaml").write_text(yaml.safe_dump(body))


def make_config(env: dict[str, Path], **ingest: object) -> CdpConfig:
    """The test environment on ``env``'s folders; ``ingest`` sets ``ingest.<key>`` values."""
    overrides: dict[str, object] = {
        "data_root": str(env["data"]),
        "landing_root": str(env["landing"]),
        "sources_dirs": [str(env["sources"])],
    }
    overrides.update({f"ingest.{k}": v for k, v in ingest.items()})
    return load_config(env="test", overrides=overrides)


def write(path: Path, data: str | bytes, encoding: str = "utf-8") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding=encoding)


def ingest(spark: SparkSession, config: CdpConfig) -> StageResult:
    return run_stage("ingest", spark=spark, config=config)
