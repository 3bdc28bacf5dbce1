"""A company that only has a transaction log (customer id, date, quantity, amount: no events,
no consents, no person records), onboarded as one transaction source, goes through every
stage of ``cdp run all`` and the on-demand backtest (issue 26).

Silver then never writes ``silver/events``, ``silver/consents`` or ``silver/person_records``.
Each later stage reads them as empty, names them in its run metrics
(``input_missing:<table>``), the models leave out the features those inputs would give
(rather than learn from zeros that look like data), every customer gets scores, and the
export runs: with no consent statement nobody holds a consent (fail closed), so each audience
is delivered as a sealed export of 0 rows.

The data are small and deterministic: 150 customers, each with a personal purchase rate over
15 months, so both labels (purchase, churn) have both classes in every split part.
"""

from __future__ import annotations

import json
import random
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from cdp import tables as T
from cdp.config import CdpConfig, load_config
from cdp.models.features import feature_inputs, feature_parts
from cdp.optional_inputs import empty_silver, missing_inputs
from cdp.pipeline import pipeline_stages
from cdp.runner import StageResult, run_stage
from cdp.storage import open_store

pytestmark = pytest.mark.slow

SOURCE = "retail_transactions"
CUSTOMERS = 150
START, END = date(2024, 1, 1), date(2025, 3, 31)
OPTIONAL = ["silver/consents", "silver/events", "silver/person_records"]

SOURCE_YAML = f"""\
name: {SOURCE}
description: A public retail transaction log (customer id, invoice date, quantity, amount)
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
  currency: "'GBP'"
  order_time: invoice_date
"""


def _transactions(seed: int = 26) -> list[str]:
    """CSV lines: frequent buyers keep buying, some stop part-way (churn)."""
    rnd = random.Random(seed)
    span = (END - START).days + 1
    lines = ["invoice,customer_id,invoice_date,quantity,amount"]
    invoice = 500_000
    for i in range(CUSTOMERS):
        customer = str(12_346 + i)
        rate = rnd.choice([0.004, 0.01, 0.02, 0.04])  # purchases per day
        stop = span if rnd.random() < 0.7 else rnd.randrange(span // 3, span)
        days = [d for d in range(stop) if rnd.random() < rate] or [rnd.randrange(stop)]
        for day in days:
            invoice += 1
            at = datetime.combine(START + timedelta(days=day), datetime.min.time()) + timedelta(
                minutes=rnd.randrange(8 * 60, 20 * 60)
            )
            quantity = rnd.randrange(1, 12)
            amount = round(quantity * rnd.uniform(0.5, 15.0), 2)
            lines.append(f"{invoice},{customer},{at:%Y-%m-%d %H:%M:%S},{quantity},{amount}")
    return lines


def _config(tmp: Path, **extra: Any) -> CdpConfig:
    overrides: dict[str, Any] = {
        "data_root": str(tmp / "data"),
        "landing_root": str(tmp / "landing"),
        "sources_dirs": [str(tmp / "sources")],
        "models.search.time_budget_seconds": 1,
        "models.search.lr_max_iter": 20,
        "models.search.gbt_max_iter": [5],
        "models.search.gbt_max_depth": [3],
        "models.search.lr_reg_param": [0.01],
    }
    overrides.update(extra)
    return load_config(env="test", overrides=overrides)


@pytest.mark.timeout(2400)  # ten stages, two trainings and a backtest on a busy 2-core machine
def test_transactions_only_company_runs_every_stage(spark: SparkSession, tmp_path: Path) -> None:
    (tmp_path / "sources").mkdir()
    (tmp_path / "sources" / f"{SOURCE}.yaml").write_text(SOURCE_YAML, encoding="utf-8")
    landing = tmp_path / "landing" / SOURCE
    landing.mkdir(parents=True)
    (landing / "transactions_2025-04-01.csv").write_text(
        "\n".join(_transactions()) + "\n", encoding="utf-8"
    )
    config = _config(tmp_path)
    said: list[str] = []
    results: dict[str, StageResult] = {}
    for stage in pipeline_stages():
        results[stage.name] = run_stage(
            stage.name, spark=spark, config=config, progress=said.append
        )
        assert results[stage.name].status == "success", (stage.name, results[stage.name].error)

    store = open_store(spark, config)
    for table in OPTIONAL:
        assert not store.exists(table), table
    # Every stage that reads them names the missing inputs in its run metrics.
    for name in ("profile", "features", "train", "score"):
        assert missing_inputs(results[name].metrics) == OPTIONAL, name
    assert missing_inputs(results["export"].metrics) == ["silver/consents"]
    assert any("silver/events does not exist: read as empty" in s for s in said), said

    # The models' feature lists hold no feature of a missing input.
    identity = {
        k: store.read(t.name) for k, t in (("m", T.IDENTITY_MAP), ("i", T.IDENTITY_IDENTIFIERS))
    }
    by_input = feature_inputs(
        feature_parts(
            transactions=store.read(T.TRANSACTIONS.name),
            events=empty_silver(spark, T.EVENTS.name),
            consents=empty_silver(spark, T.CONSENTS.name),
            persons=empty_silver(spark, T.PERSON_RECORDS.name),
            identity_map=identity["m"],
            identifiers=identity["i"],
            as_of=END,
            settings=config.models,
        )
    )
    absent = set(by_input["events"]) | set(by_input["consents"]) | set(by_input["persons"])
    assert {"web_events_30d", "support_contacts_total", "age_years"} <= absent
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=config.mlflow_tracking_uri)
    train = results["train"].metrics
    for model in ("purchase_90d", "churn_90d"):
        assert int(train[f"{model}.features_left_out"]) > 0
        run = client.get_run(train[f"{model}.mlflow_run_id"])
        used = set(json.loads(run.data.params["numeric_features"]))
        used |= set(json.loads(run.data.params["categorical_features"]))
        assert used, model
        assert not used & absent, (model, sorted(used & absent))
        assert "orders_365d" in used
        assert set(json.loads(run.data.params["features_left_out"])) >= {"web_events_30d"}
        assert "silver/events" in run.data.tags["cdp.inputs_missing"]

    # Scores exist for customers, from both models.
    scores = store.read(T.PROPENSITY_SCORES.name)
    per_model = {
        r["model_name"]: r["count"] for r in scores.groupBy("model_name").count().collect()
    }
    assert set(per_model) == {"purchase_90d", "churn_90d"}
    assert per_model["purchase_90d"] == CUSTOMERS

    # The export ran: every audience sealed with a manifest of 0 rows (nobody consented).
    assert any("no consent records exist" in s for s in said), said
    manifests = sorted(Path(config.data_root_uri, "exports").glob("*/dt=*/run=*/manifest.json"))
    audiences = {m.parts[-4] for m in manifests}
    assert audiences == {"churn_risk_loyal", "engaged_non_buyers", "lapsed_high_intent"}
    for manifest in manifests:
        body = json.loads(manifest.read_text(encoding="utf-8"))
        assert body["row_count"] == 0
        assert (manifest.parent / "_SUCCESS").exists()

    # The on-demand backtest, which first failed on the missing tables, runs too.
    backtest = run_stage(
        "backtest",
        spark=spark,
        config=_config(tmp_path, **{"models.only": "purchase_90d"}),
        progress=said.append,
    )
    assert backtest.status == "success"
    assert missing_inputs(backtest.metrics) == OPTIONAL
    assert store.read(T.MODEL_BACKTESTS.name).count() == 1
