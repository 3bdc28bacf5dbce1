"""End to end on generated data with known ground truth: the shared demo run (`cdp demo`).

Checks the accounting identities against the generator's own manifest (rows written per
source, bad records injected) and that silver records trace back to true persons.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyspark.sql import Row, SparkSession
from pyspark.sql import functions as F

from cdp.bronze.tables import QUARANTINE_TABLE
from cdp.config import load_config
from cdp.runner import run_stage
from cdp.storage import TableStore, open_store
from conftest import DemoRun

pytestmark = pytest.mark.slow


def _run_of(store: TableStore, stage: str) -> Row:
    """The demo's (only) run of ``stage`` in ``ops/run_log``."""
    runs = store.read("ops/run_log").where(F.col("job") == stage).collect()
    assert len(runs) == 1, [r["run_id"] for r in runs]
    return runs[0]


def test_generated_company_flows_through_bronze_and_silver(
    spark: SparkSession, demo_run: DemoRun, tmp_path: Path
) -> None:
    """The demo's ingest and silver runs, read back from a copy of its data root (the landing
    zone stays where the demo wrote it: ``ops/ingested_files`` names files by their path)."""
    landing = demo_run.landing
    demo_run.copy_data_root(tmp_path / "data")
    manifest = json.loads((landing / "_ground_truth" / "manifest.json").read_text())
    config = load_config(
        env="test", overrides={"data_root": str(tmp_path / "data"), "landing_root": str(landing)}
    )
    store = open_store(spark, config)

    ingest = _run_of(store, "ingest")
    quarantine = store.read(QUARANTINE_TABLE)
    for source, rows_in_files in manifest["rows"].items():
        landed = store.read(f"bronze/{source}").count()
        held = quarantine.where(F.col("_source") == source).count()
        # Nothing dropped: rows in files = rows in bronze + rows in quarantine.
        assert landed + held == rows_in_files, source
        bad = manifest["bad_records"].get(source, {})
        structural = bad.get("malformed_json", 0) + bad.get("wrong_column_count", 0)
        assert held == structural, (source, held, bad)
    assert sum(ingest["rows_written"].values()) + sum(ingest["rows_quarantined"].values()) == sum(
        manifest["rows"].values()
    )
    # Schema drift of drop 2 did not break anything and nothing was silently dropped.
    assert "preferred_language" in store.schema("bronze/crm_contacts").fieldNames()
    orders = store.read("bronze/ecommerce_orders")
    assert orders.where("total_amount IS NULL AND _rescued_data IS NULL").count() == 0

    again = run_stage("ingest", spark=spark, config=config)
    assert again.rows_written == {} and again.rows_quarantined == {}

    silver = _run_of(store, "silver")
    m = {k: int(v) for k, v in silver["metrics"].items() if v.lstrip("-").isdigit()}
    # The run log names, by content hash, every rule and source file the run read.
    files = {k: v for k, v in silver["metrics"].items() if k.startswith("config_file:")}
    assert files["config_file:silver.rules_file"].startswith("sha256:")
    assert files["config_file:sources_dirs:crm_contacts.yaml"] != "sha256:absent"
    tables = {
        "person_records": ["crm_contacts", "loyalty_members", "person_register"],
        "transactions": ["ecommerce_orders", "pos_transactions"],
        "consents": ["consents"],
        "events": ["web_events", "email_engagement", "support_tickets"],
    }
    for table, sources in tables.items():
        read = sum(silver["rows_read"].get(f"bronze/{s}", 0) for s in sources)
        bronze_rows = sum(store.read(f"bronze/{s}").count() for s in sources)
        assert read == bronze_rows, table
        silver_rows = store.read(f"silver/{table}").count()
        accounted = (
            silver_rows
            + m[f"{table}.exact_duplicates_collapsed"]
            + m[f"{table}.older_versions_superseded"]
            + silver["rows_quarantined"].get(f"silver/{table}", 0)
        )
        assert accounted == read, (table, accounted, read)

    # Silver records trace back to the generator's true persons.
    truth = spark.read.parquet(str(landing / "_ground_truth" / "identity"))
    people = store.read("silver/person_records").where("source = 'crm_contacts'")
    matched = people.join(truth, ["source", "source_record_id"], "inner").count()
    assert matched / people.count() > 0.95
    standardized = people.where("email_status = 'ok'").count() / people.count()
    assert standardized > 0.8


@pytest.mark.timeout(2400)  # every stage in its own process; many minutes on a busy 2-core box
def test_cdp_demo_runs_the_whole_chain(demo_run: DemoRun) -> None:
    """`cdp demo` as a user types it: generate -> ingest -> ... -> export, then its summary."""
    import re

    demo_run.check()
    out = demo_run.output
    data_root = demo_run.data_root
    for stage in ("ingest", "silver", "identity", "profile", "features", "train", "score"):
        assert re.search(rf"\] {stage} done in", out), stage
    assert "== demo summary" in out
    precision = re.search(r"all evaluated records.*?\n\s+pairwise precision ([0-9.]+)", out)
    assert precision is not None, out[-3000:]
    assert float(precision.group(1)) >= 0.95
    # One summary line per configured model, and only those (run-log keys of the
    # configuration files' digests hold dots too and once read as models).
    assert re.findall(r"^model (\S+): holdout", out, flags=re.M) == ["churn_90d", "purchase_90d"]
    aucs = re.findall(r"holdout ROC-AUC ([0-9.]+) \(heuristic ([0-9.]+)\)", out)
    assert aucs, out[-3000:]
    assert all(0.5 < float(model) <= 1.0 for model, _heuristic in aucs)
    assert "MLflow tracking: sqlite:///" in out
    exports = re.findall(r"^export (\S+): (\S+)$", out, flags=re.M)
    assert exports, out[-3000:]
    manifests = list((data_root / "exports").rglob("manifest.json"))
    assert len(manifests) == len(exports)
    for manifest in manifests:
        assert (manifest.parent / "_SUCCESS").exists()
        listed = json.loads(manifest.read_text())
        assert listed["files"], manifest
