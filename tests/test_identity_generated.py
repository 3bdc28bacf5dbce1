"""Identity resolution end to end on generated data: generate -> ingest -> silver -> identity,
scored against the generator's ground truth with the shipped rules (conf/rules/identity.yaml).

Records that carry no identifier at all (anonymous till receipts) can belong to nobody we know,
so recall is asserted over *linkable* records. The generated data is deterministic for a seed,
so the issue's targets (precision 0.995, linkable recall 0.95) are asserted as they stand;
measured on 2026-12-02: precision 0.9997, linkable recall 0.9645, overall recall 0.654.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdp.config import load_config
from cdp.generate import generate_landing
from cdp.identity.evaluate import evaluate_identity, load_truth
from cdp.identity.stage import IDENTIFIERS_TABLE, MAP_TABLE
from cdp.runner import run_stage
from cdp.storage import open_store

pytestmark = pytest.mark.slow


def test_generated_data_precision_and_recall(spark: SparkSession, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    generate_landing(spark, out_dir=str(landing), persons=120, seed=7)
    config = load_config(
        env="test",
        overrides={"data_root": str(tmp_path / "data"), "landing_root": str(landing)},
    )
    for stage in ("ingest", "silver"):
        run_stage(stage, spark=spark, config=config)
    result = run_stage("identity", spark=spark, config=config)
    store = open_store(spark, config)
    identity_map = store.read(MAP_TABLE)

    metrics = evaluate_identity(
        spark,
        identity_map=identity_map,
        truth=load_truth(spark, landing / "_ground_truth" / "identity"),
    )
    print(metrics.format())
    linkable = metrics.linkable
    assert linkable is not None
    assert metrics.all_records.precision >= 0.995
    assert linkable.recall >= 0.95
    assert metrics.all_records.recall >= 0.6  # bounded by anonymous receipts (about 0.72)
    # Every map record is a live silver record, once.
    assert (
        identity_map.count() == identity_map.select("source", "source_record_id").distinct().count()
    )
    assert result.rows_written[MAP_TABLE] == identity_map.count()
    # Event-only identifiers (cookies, devices) reach customers through logins.
    types = {
        r["id_type"] for r in store.read(IDENTIFIERS_TABLE).select("id_type").distinct().collect()
    }
    assert {"email", "crm_id", "anonymous_id"} <= types
    assert identity_map.where(F.col("customer_id").rlike("^c_[0-9a-f]{16}$")).count() == (
        identity_map.count()
    )
