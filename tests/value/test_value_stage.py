"""The ``value`` stage on a small generated landing zone (one transaction source): ingest,
silver, identity, value, profile. gold/customer_value holds every buyer, reruns replace
rather than duplicate, the fit is in MLflow without customer data, and the profile shows the
latest CLV and P(alive). A company without transactions gets an empty table, and says so."""

from __future__ import annotations

import json
import random
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdp import tables as T
from cdp.config import CdpConfig, load_config
from cdp.optional_inputs import missing_inputs
from cdp.runner import run_stage
from cdp.storage import open_store
from cdp.value.score import VALUE_COLUMNS
from cdp.value.stage import SKIPPED_METRIC, VALUE_SCHEMA

pytest.importorskip("pymc_marketing")

SOURCE = "shop_orders"
CUSTOMERS = 80
START, END = date(2024, 1, 1), date(2024, 12, 31)
SOURCE_YAML = f"""\
name: {SOURCE}
kind: transaction
format: csv
path: {SOURCE}/*.csv
options:
  header: "true"
primary_key: [invoice]
event_time: invoice_date
event_time_format: "yyyy-MM-dd HH:mm:ss"
mapping:
  source_record_id: invoice
  order_id: invoice
  customer_id: customer_id
  amount: amount
  currency: "'EUR'"
  order_time: invoice_date
"""


def _landing(tmp: Path, seed: int = 11) -> None:
    """Customers with personal purchase rates, some stopping part-way; a few refunds."""
    rnd = random.Random(seed)
    span = (END - START).days + 1
    lines = ["invoice,customer_id,invoice_date,amount"]
    invoice = 1000
    for i in range(CUSTOMERS):
        rate = rnd.choice([0.005, 0.015, 0.03])
        stop = span if rnd.random() < 0.7 else rnd.randrange(span // 3, span)
        days = [d for d in range(stop) if rnd.random() < rate] or [rnd.randrange(stop)]
        for day in days:
            invoice += 1
            at = datetime.combine(START + timedelta(days=day), datetime.min.time())
            amount = round(rnd.uniform(5, 80), 2) * (-1 if rnd.random() < 0.03 else 1)
            lines.append(
                f"{invoice},C{i:03d},{at + timedelta(hours=12):%Y-%m-%d %H:%M:%S},{amount}"
            )
    (tmp / "sources").mkdir()
    (tmp / "sources" / f"{SOURCE}.yaml").write_text(SOURCE_YAML, encoding="utf-8")
    (tmp / "landing" / SOURCE).mkdir(parents=True)
    (tmp / "landing" / SOURCE / "orders.csv").write_text("\n".join(lines) + "\n", "utf-8")


def _config(tmp: Path, **extra: Any) -> CdpConfig:
    overrides: dict[str, Any] = {
        "data_root": str(tmp / "data"),
        "landing_root": str(tmp / "landing"),
        "sources_dirs": [str(tmp / "sources")],
    }
    overrides.update(extra)
    return load_config(env="test", overrides=overrides)


@pytest.mark.timeout(1200)
def test_value_stage_writes_customer_value_and_the_profile_shows_it(
    spark: SparkSession, tmp_path: Path
) -> None:
    _landing(tmp_path)
    config = _config(tmp_path)
    said: list[str] = []
    results = {}
    for stage in ("ingest", "silver", "identity", "value", "value", "profile"):
        results[stage] = run_stage(stage, spark=spark, config=config, progress=said.append)
        assert results[stage].status == "success", (stage, results[stage].error)

    store = open_store(spark, config)
    value = store.read(T.CUSTOMER_VALUE.name)
    assert (
        value.schema.simpleString() == spark.createDataFrame([], VALUE_SCHEMA).schema.simpleString()
    )
    rows = value.collect()
    # Every buyer once, at one as_of (the rerun replaced its slice), one model version.
    assert len(rows) == len({r["customer_id"] for r in rows}) == CUSTOMERS
    assert {r["as_of"] for r in rows} == {END + timedelta(days=1)}
    metrics = results["value"].metrics
    assert {r["model_version"] for r in rows} == {metrics["value.model_version"]}
    for r in rows:
        assert 0.0 <= r["p_alive"] <= 1.0
        assert all(r[c] is not None and r[c] >= 0 for c in VALUE_COLUMNS)
    assert int(metrics["value.sample_customers"]) == CUSTOMERS
    assert SKIPPED_METRIC not in metrics

    # MLflow: the fit's parameters as a JSON artifact, sizes and lineage; no customer data.
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=config.mlflow_tracking_uri)
    run = client.get_run(metrics["value.mlflow_run_id"])
    assert run.data.tags["cdp.model_version"] == metrics["value.model_version"]
    assert "cdp.table_version.silver/transactions" in run.data.tags
    assert run.data.metrics["sample_customers"] == CUSTOMERS
    import mlflow.artifacts

    text = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/evaluation/btyd_params.json")
    params = json.loads(text)
    assert set(params["purchases"]) >= {"a", "b", "alpha", "r"} and params["spend"]
    assert "C00" not in text  # numbers only

    # The profile shows the latest CLV and P(alive) of every buyer.
    profile = store.read(T.CUSTOMER_PROFILE.name)
    shown = profile.where(F.col("clv_12m").isNotNull() & F.col("p_alive").isNotNull()).count()
    assert shown == CUSTOMERS
    assert T.CUSTOMER_VALUE.name not in missing_inputs(results["profile"].metrics)


def test_value_without_transactions_writes_an_empty_table(
    spark: SparkSession, tmp_path: Path
) -> None:
    config = _config(tmp_path)
    store = open_store(spark, config)
    store.overwrite(
        T.IDENTITY_MAP.name,
        spark.createDataFrame(
            [("K1", "crm", "1", "person_records")],
            "customer_id string, source string, source_record_id string, record_table string",
        ),
    )
    said: list[str] = []
    result = run_stage(
        "value", spark=spark, config=config, as_of=date(2025, 1, 1), progress=said.append
    )
    assert result.status == "success", result.error
    assert missing_inputs(result.metrics) == [T.TRANSACTIONS.name]
    assert "does not exist" in result.metrics[SKIPPED_METRIC]
    table = store.read(T.CUSTOMER_VALUE.name)
    assert table.count() == 0
    assert set(table.columns) == {"customer_id", "as_of", "model_version", *VALUE_COLUMNS}
    assert any("written empty" in s for s in said), said
