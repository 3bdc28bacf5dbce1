"""Models: point-in-time features, labels, training with MLflow (real SQLite store), scoring."""

from __future__ import annotations

import json
import random
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import (
    BooleanType,
    DateType,
    DoubleType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from cdp.config import CdpConfig, load_config
from cdp.models.features import build_features
from cdp.models.labels import build_labels
from cdp.models.settings import LabelConfig, ModelsConfig
from cdp.models.train import promotes

S = StringType()
TS = TimestampType()
TX_SCHEMA = StructType(
    [
        StructField("source", S),
        StructField("source_record_id", S),
        StructField("order_id", S),
        StructField("order_time", TS),
        StructField("amount", DoubleType()),
        StructField("channel", S),
        StructField("items", S),
        StructField("is_deleted", BooleanType()),
    ]
)
EV_SCHEMA = StructType(
    [
        StructField("source", S),
        StructField("source_record_id", S),
        StructField("event_type", S),
        StructField("event_time", TS),
        StructField("channel", S),
        StructField("customer_id", S),
        StructField("email", S),
        StructField("anonymous_id", S),
        StructField("device_id", S),
        StructField("is_deleted", BooleanType()),
    ]
)
CONS_SCHEMA = StructType(
    [
        StructField("source", S),
        StructField("source_record_id", S),
        StructField("purpose", S),
        StructField("channel", S),
        StructField("status", S),
        StructField("consent_time", TS),
        StructField("is_deleted", BooleanType()),
    ]
)
PERSON_SCHEMA = StructType(
    [
        StructField("source", S),
        StructField("source_record_id", S),
        StructField("birth_date", DateType()),
        StructField("gender", S),
        StructField("country", S),
        StructField("updated_at", TS),
        StructField("is_deleted", BooleanType()),
    ]
)
MAP_SCHEMA = StructType(
    [
        StructField("customer_id", S),
        StructField("source", S),
        StructField("source_record_id", S),
        StructField("record_table", S),
        StructField("assigned_run_id", S),
        StructField("assigned_at", TS),
    ]
)
IDS_SCHEMA = StructType(
    [StructField("customer_id", S), StructField("id_type", S), StructField("id_value", S)]
)
T0 = datetime(2024, 1, 1)
AS_OF = date(2025, 1, 1)


def _ts(d: date, hours: int = 12) -> datetime:
    return datetime(d.year, d.month, d.day) + timedelta(hours=hours)


class Facts:
    """Tiny silver + identity inputs, built row by row."""

    def __init__(self) -> None:
        self.tx: list[tuple[Any, ...]] = []
        self.ev: list[tuple[Any, ...]] = []
        self.cons: list[tuple[Any, ...]] = []
        self.persons: list[tuple[Any, ...]] = []
        self.map: list[tuple[Any, ...]] = []
        self.ids: list[tuple[Any, ...]] = []

    def customer(
        self, cid: str, *, birth: date | None = None, country: str = "GB", since: datetime = T0
    ) -> None:
        rid = f"crm-{cid}"
        self.persons.append(("crm", rid, birth, "F", country, since, False))
        self.map.append((cid, "crm", rid, "person_records", "r", T0))
        self.ids.append((cid, "email", f"{cid}@x.test"))

    def order(
        self,
        cid: str,
        when: datetime,
        amount: float,
        cat: str = "home",
        *,
        invoice: str | None = None,
    ) -> None:
        """One transaction row: a whole order, or a line of ``invoice`` (an order id that
        several rows share, as line-level retail exports are written)."""
        rid = f"o{len(self.tx)}"
        items = json.dumps([{"sku": "s", "category": cat, "qty": 1}])
        self.tx.append(("shop", rid, invoice, when, amount, "web", items, False))
        self.map.append((cid, "shop", rid, "transactions", "r", T0))

    def event(self, cid: str, when: datetime, etype: str, channel: str = "web") -> None:
        rid = f"e{len(self.ev)}"
        email = f"{cid}@x.test"
        self.ev.append(("web", rid, etype, when, channel, None, email, None, None, False))

    def consent(self, cid: str, when: datetime, status: str, channel: str = "email") -> None:
        rid = f"c{len(self.cons)}"
        self.cons.append(("prefs", rid, "marketing", channel, status, when, False))
        self.map.append((cid, "prefs", rid, "consents", "r", T0))

    def frames(self, spark: SparkSession) -> dict[str, DataFrame]:
        return {
            "transactions": spark.createDataFrame(self.tx, TX_SCHEMA),
            "events": spark.createDataFrame(self.ev, EV_SCHEMA),
            "consents": spark.createDataFrame(self.cons, CONS_SCHEMA),
            "persons": spark.createDataFrame(self.persons, PERSON_SCHEMA),
            "identity_map": spark.createDataFrame(self.map, MAP_SCHEMA),
            "identifiers": spark.createDataFrame(self.ids, IDS_SCHEMA),
        }


def _features(spark: SparkSession, facts: Facts, as_of: date) -> dict[str, dict[str, Any]]:
    f = facts.frames(spark)
    out = build_features(
        transactions=f["transactions"],
        events=f["events"],
        consents=f["consents"],
        persons=f["persons"],
        identity_map=f["identity_map"],
        identifiers=f["identifiers"],
        as_of=as_of,
    )
    return {r["customer_id"]: r.asDict() for r in out.collect()}


def _base_facts() -> Facts:
    facts = Facts()
    facts.customer("A", birth=date(1990, 6, 1))
    facts.customer("B")
    facts.order("A", _ts(date(2024, 10, 1)), 10.0, "home")
    facts.order("A", _ts(date(2024, 12, 22)), 30.0, "toys")
    facts.event("A", _ts(date(2024, 12, 30)), "page_view")
    facts.event("A", _ts(date(2024, 12, 20)), "open", channel="email")
    facts.consent("A", _ts(date(2024, 5, 1)), "granted")
    facts.event("B", _ts(date(2024, 12, 1)), "page_view")
    return facts


def _labels(spark: SparkSession, facts: Facts) -> dict[str, tuple[int, int, int]]:
    """customer -> (purchased, active, churned) at AS_OF, 90-day horizon, 365-day lookback."""
    f = facts.frames(spark)
    labels = build_labels(
        transactions=f["transactions"],
        identity_map=f["identity_map"],
        as_of=AS_OF,
        labels=LabelConfig(horizon_days=90, lookback_days=365),
    )
    return {r["customer_id"]: (r["purchased"], r["active"], r["churned"]) for r in labels.collect()}


def test_features_values_and_no_leakage(spark: SparkSession) -> None:
    facts = _base_facts()
    before = _features(spark, facts, AS_OF)
    a, b = before["A"], before["B"]
    assert a["as_of"] == AS_OF
    assert a["orders_total"] == 2 and a["spend_total"] == pytest.approx(40.0)
    assert a["recency_days"] == pytest.approx(9.5)  # 2024-12-22 12:00 -> 2025-01-01 00:00
    assert a["orders_30d"] == 1 and a["spend_90d"] == pytest.approx(30.0)
    assert a["category_count"] == 2
    assert a["web_events_7d"] == 1 and a["email_opens_30d"] == 1
    assert a["consent_marketing_email"] == 1 and a["consent_marketing_sms"] is None
    assert a["age_years"] == 34.0 and a["gender"] == "F"
    assert b["orders_total"] == 0 and b["recency_days"] is None and b["has_purchased"] == 0
    # Facts at or after as_of (midnight UTC included) change nothing before it.
    facts.order("A", datetime(2025, 1, 1, 0, 0, 0), 999.0, "garden")
    facts.order("B", _ts(date(2025, 1, 5)), 50.0)
    facts.event("A", datetime(2025, 1, 1, 0, 0, 0), "page_view")
    facts.event("B", _ts(date(2025, 2, 1)), "open", channel="email")
    facts.consent("A", _ts(date(2025, 1, 2)), "withdrawn")
    facts.customer("C", since=_ts(date(2025, 3, 1)))  # only later facts
    facts.order("C", _ts(date(2025, 3, 1)), 5.0)
    after = _features(spark, facts, AS_OF)
    assert set(after) == {"A", "B"}
    assert after == before
    # ... and they do count at a later as_of.
    later = _features(spark, facts, date(2025, 1, 2))
    assert later["A"]["orders_total"] == 3 and later["A"]["web_events_7d"] == 2


def test_labels_purchase_and_churn(spark: SparkSession) -> None:
    facts = Facts()
    for cid in "ABCD":
        facts.customer(cid)
    facts.order("A", _ts(date(2024, 11, 1)), 10.0)  # active, buys again -> purchased
    facts.order("A", _ts(date(2025, 2, 1)), 10.0)
    facts.order("B", _ts(date(2024, 11, 1)), 10.0)  # active, silent -> churned
    facts.order("B", _ts(date(2025, 4, 1)), 10.0)  # day 90 after as_of: outside the horizon
    facts.order("C", _ts(date(2025, 3, 1)), 10.0)  # new buyer: purchased, not active
    facts.order("D", _ts(date(2023, 6, 1)), 10.0)  # long gone: neither
    assert _labels(spark, facts) == {"A": (1, 1, 0), "B": (0, 1, 1), "C": (1, 0, 0)}


def test_invoice_lines_count_as_one_order_and_refunds_are_no_purchase(
    spark: SparkSession,
) -> None:
    """A line-level retail export (an invoice over several rows, cancellations as invoices of
    negative amount): features count invoices, recency and intervals follow purchases, spend
    is net; a customer whose only order in the horizon is a refund did not buy again."""
    facts = Facts()
    for cid in "LR":
        facts.customer(cid)
    first, second = _ts(date(2024, 9, 1)), _ts(date(2024, 11, 30))
    for amount, cat in ((10.0, "home"), (5.0, "toys"), (15.0, "home")):
        facts.order("L", first, amount, cat, invoice="536365")
    facts.order("L", second, 40.0, "garden", invoice="536900")
    facts.order("L", second + timedelta(hours=1), 20.0, invoice="536901")
    facts.order("L", _ts(date(2024, 12, 21)), -20.0, invoice="C536950")  # cancels 536901
    facts.order("R", _ts(date(2024, 6, 1)), 25.0, invoice="537000")
    facts.order("R", _ts(date(2025, 1, 10)), -25.0, invoice="C537100")  # in the horizon

    got = _features(spark, facts, AS_OF)["L"]
    assert got["orders_total"] == 3 and got["orders_365d"] == 3
    assert got["spend_total"] == pytest.approx(70.0)  # 30 + 40 + 20 - 20
    assert got["avg_order_value"] == pytest.approx(70.0 / 3)
    # The last purchase, not the later cancellation: 2024-11-30 13:00 -> 2025-01-01.
    assert got["recency_days"] == pytest.approx(31.5 - 1 / 24)
    assert got["days_since_first_purchase"] == pytest.approx(121.5)
    assert got["mean_days_between_orders"] == pytest.approx((121.5 - (31.5 - 1 / 24)) / 2)
    assert got["category_count"] == 3 and got["has_purchased"] == 1

    assert _labels(spark, facts) == {"L": (0, 1, 1), "R": (0, 1, 1)}


def test_promotion_rule() -> None:
    assert promotes(0.7, None, 0.0)
    assert promotes(0.71, 0.70, 0.0)
    assert not promotes(0.70, 0.70, 0.0)  # a tie keeps the champion
    assert not promotes(0.705, 0.70, 0.01)


def test_settings_reject_unknown_model() -> None:
    with pytest.raises(ValueError, match="unknown model"):
        ModelsConfig(only="nope")


# ---------------------------------------------------------------------------------------------
# Scenario: train twice (champion, then challenger), score twice (no duplicates)
# ---------------------------------------------------------------------------------------------


def _synthetic(n: int, seed: int = 7) -> Facts:
    """Customers with a personal purchase rate: frequent buyers keep buying, so the label
    is predictable from the history (and the heuristic is a fair baseline)."""
    rnd = random.Random(seed)
    facts = Facts()
    start, end = date(2024, 1, 1), date(2025, 6, 30)
    span = (end - start).days
    for i in range(n):
        cid = f"C{i:04d}"
        facts.customer(cid, birth=date(1960 + i % 40, 1, 1), country=rnd.choice(["GB", "DE"]))
        rate = rnd.choice([0.0, 0.004, 0.01, 0.03])  # purchases per day
        stop = span if rnd.random() < 0.7 else rnd.randrange(span)  # some churn
        for day in range(0, stop, 3):
            if rnd.random() < rate * 3:
                facts.order(cid, _ts(start + timedelta(days=day)), round(5 + 50 * rnd.random(), 2))
        for _ in range(rnd.randrange(0, 4)):
            facts.event(cid, _ts(start + timedelta(days=rnd.randrange(span))), "page_view")
    return facts


@pytest.fixture(scope="module")
def trained_root(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cdp.storage import open_store

    root = tmp_path_factory.mktemp("models") / "data"
    config = _config(root)
    store = open_store(spark, config)
    frames = _synthetic(300).frames(spark)
    from cdp.models.inputs import INPUT_TABLES

    for key, table in INPUT_TABLES.items():
        store.overwrite(table, frames[key])
    return root


def _config(root: Path, **extra: Any) -> CdpConfig:
    overrides: dict[str, Any] = {
        "data_root": str(root),
        "models.only": "purchase_90d",
        "models.search.gbt_max_iter": [5],
        "models.search.gbt_max_depth": [3],
        "models.search.lr_reg_param": [0.01],
        "models.search.lr_max_iter": 15,
        "models.search.time_budget_seconds": 1,
        "models.holdout_fraction": 0.3,
        "models.validation_fraction": 0.3,
    }
    overrides.update(extra)
    return load_config(env="test", overrides=overrides)


@pytest.mark.slow
@pytest.mark.timeout(2400)  # two trainings and two scorings; minutes on a busy 2-core machine
def test_train_logs_to_mlflow_and_moves_aliases_then_scores_idempotently(
    spark: SparkSession, trained_root: Path
) -> None:
    from mlflow import MlflowClient

    from cdp.models.registry import Registry, registered_name
    from cdp.runner import run_stage
    from cdp.storage import open_store

    # On these 300 customers the tiny search's winner loses to the heuristic out of time, and
    # the gate would (rightly) register the heuristic as champion: that is the test below.
    # Here the gate is off, so the champion/challenger mechanics of the holdout stay in view;
    # the check still runs and logs its measures.
    config = _config(trained_root, **{"models.out_of_time.gate_metrics": []})
    as_of = date(2025, 3, 1)
    # A date whose horizon the data does not cover is refused.
    with pytest.raises(Exception, match="label horizon"):
        run_stage("train", spark=spark, config=config, as_of=date(2025, 6, 1))

    first = run_stage("train", spark=spark, config=config, as_of=as_of)
    uri = config.mlflow_tracking_uri
    assert uri.startswith("sqlite:///") and Path(uri[len("sqlite:///") :]).exists()
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("/cdp/test/purchase_90d")
    assert exp is not None and str(trained_root) in exp.artifact_location
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    m, p, t = run.data.metrics, run.data.params, run.data.tags
    for key in ("roc_auc", "pr_auc", "log_loss", "lift_top_decile"):
        assert 0 <= m[f"holdout_{key}"] < 100
    assert "heuristic_holdout_roc_auc" in m and "baseline_lr_holdout_roc_auc" in m
    assert m["holdout_roc_auc"] > 0.6  # the synthetic history is informative
    assert p["as_of"] == "2025-03-01" and p["label"] == "purchase"
    assert "orders_365d" in json.loads(p["numeric_features"])
    assert t["cdp.run_id"] == first.run_id and t["cdp.kind"] == "train"
    assert t["cdp.table_version.silver/transactions"] == "0"
    # Version 1: the out-of-time check stored the features at as_of - horizon (version 0
    # holds those at as_of) before the run was logged; the run read both.
    assert t["cdp.table_version.gold/customer_features"] == "1"
    assert "cdp.git_commit" in t
    # The out-of-time check: the same configuration fitted one horizon earlier, scored on the
    # holdout customers at as_of beside the heuristic, in MLflow and in the run log.
    assert t["cdp.oot_train_as_of"] == "2024-12-01" and "cdp.oot_skipped" not in t
    for key in ("roc_auc", "pr_auc", "lift_top_decile"):
        assert 0 <= m[f"oot_{key}"] < 100 and 0 <= m[f"heuristic_oot_{key}"] < 100
    assert m["heuristic_oot_roc_auc"] == pytest.approx(m["heuristic_holdout_roc_auc"])
    assert "champion_oot_roc_auc" not in m  # no champion yet
    assert first.metrics["purchase_90d.oot_roc_auc"] == str(round(m["oot_roc_auc"], 5))
    assert first.metrics["purchase_90d.oot_train_as_of"] == "2024-12-01"
    assert t["cdp.promoted"] == "true"
    assert first.metrics["purchase_90d.promotion"] == t["cdp.promotion"]
    assert t["cdp.promotion"].startswith("promoted (no champion yet)")
    assert t["cdp.promotion"].endswith("no heuristic gate")
    registry = Registry(uri, "test")
    charts = set(registry.artifacts(run.info.run_id, "charts"))
    assert {
        f"charts/{n}.png" for n in ("feature_importance", "roc", "lift", "calibration")
    } <= charts
    calib = json.loads(
        Path(client.download_artifacts(run.info.run_id, "evaluation/calibration.json")).read_text()
    )
    assert len(calib) == 10 and {"mean_predicted", "observed_rate"} <= set(calib[0])
    name = registered_name("test", "purchase_90d")
    v1 = client.get_model_version_by_alias(name, "champion")
    assert str(v1.version) == "1"
    import mlflow.models

    info = mlflow.models.get_model_info(f"models:/{name}/1")
    assert info.signature is not None
    assert "orders_365d" in info.signature.inputs.input_names()
    assert info.saved_input_example_info is not None

    # Same data, same holdout: not better than the champion -> challenger.
    run_stage("train", spark=spark, config=config, as_of=as_of)
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    assert str(client.get_model_version_by_alias(name, "challenger").version) == "2"
    second = client.search_runs([exp.experiment_id], order_by=["start_time DESC"])[0]
    assert second.data.metrics["champion_holdout_roc_auc"] == pytest.approx(
        second.data.metrics["holdout_roc_auc"]
    )
    assert second.data.metrics["champion_oot_roc_auc"] == pytest.approx(
        second.data.metrics["champion_holdout_roc_auc"]
    )
    assert second.data.tags["cdp.promotion"].startswith("does not beat the champion")

    # Scoring: every customer with features at as_of, once, with the champion's version.
    store = open_store(spark, config)
    score_day = date(2025, 6, 1)
    run_stage("score", spark=spark, config=config, as_of=score_day)
    run_stage("score", spark=spark, config=config, as_of=score_day)
    scores = store.read("gold/propensity_scores")
    feats = store.read("gold/customer_features").where(f"as_of = DATE'{score_day}'")
    n_feats = feats.count()
    assert n_feats > 250
    assert scores.count() == n_feats
    assert scores.select("customer_id").distinct().count() == n_feats
    row = scores.agg({"decile": "min"}).first()
    assert row is not None and row[0] == 1
    versions = {r["model_version"] for r in scores.select("model_version").distinct().collect()}
    assert versions == {"1"}
    deciles = {r["decile"]: r["count"] for r in scores.groupBy("decile").count().collect()}
    assert set(deciles) == set(range(1, 11))
    assert max(deciles.values()) - min(deciles.values()) <= 3
    # Rebuilding the features of that date replaces them (the score stage built them first).
    run_stage("features", spark=spark, config=config, as_of=score_day)
    assert store.read("gold/customer_features").where(f"as_of = DATE'{score_day}'").count() == (
        n_feats
    )


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_backtest_trains_earlier_scores_later_and_registers_nothing(
    spark: SparkSession, trained_root: Path
) -> None:
    """`cdp run backtest --as-of D`: train at D - offset, evaluate out of time at D."""
    from mlflow import MlflowClient

    from cdp.models.backtest_stage import BACKTESTS_TABLE
    from cdp.models.registry import registered_name
    from cdp.runner import run_stage
    from cdp.storage import open_store

    config = _config(trained_root, **{"models.backtest.train_offset_days": 60})
    client = MlflowClient(tracking_uri=config.mlflow_tracking_uri)
    name = registered_name("test", "purchase_90d")

    def registered() -> list[str]:
        return sorted(str(v.version) for v in client.search_model_versions(f"name='{name}'"))

    before = registered()
    aliases_before = dict(client.get_registered_model(name).aliases or {}) if before else {}
    score_day = date(2025, 3, 1)
    result = run_stage("backtest", spark=spark, config=config, as_of=score_day)
    assert result.rows_written.get(BACKTESTS_TABLE) == 1

    row = open_store(spark, config).read(BACKTESTS_TABLE).orderBy("created_at").collect()[-1]
    assert row["model_name"] == "purchase_90d"
    assert row["train_as_of"] == date(2024, 12, 31) and row["score_as_of"] == score_day
    assert row["customers"] > 250  # every customer with features at the scoring date
    assert 0.6 < row["roc_auc"] <= 1.0  # out of time, the history still predicts
    assert 0.0 <= row["heuristic_roc_auc"] <= 1.0
    assert row["run_id"] == result.run_id

    run = client.get_run(row["mlflow_run_id"])
    assert run.data.tags["cdp.kind"] == "backtest"
    assert run.data.tags["cdp.score_as_of"] == score_day.isoformat()
    assert run.data.tags["cdp.as_of"] == "2024-12-31"
    assert {"oot_roc_auc", "oot_pr_auc", "heuristic_oot_roc_auc"} <= set(run.data.metrics)
    assert run.data.metrics["oot_roc_auc"] == pytest.approx(row["roc_auc"])
    # A backtest is an experiment: no model version, no alias moved.
    assert registered() == before
    if before:
        assert dict(client.get_registered_model(name).aliases or {}) == aliases_before


def test_registry_leaves_the_mlflow_environment_variables_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI; cdp's config reads that variable,
    so a leak would send a second data root's runs to the first one's store."""
    import os

    from cdp.models.registry import Registry

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "sqlite:////elsewhere/registry.db")
    Registry(f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}", "test")
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert os.environ["MLFLOW_REGISTRY_URI"] == "sqlite:////elsewhere/registry.db"
    second = tmp_path / "b"
    config = load_config(env="test", overrides={"data_root": str(second)})
    assert config.mlflow_tracking_uri == f"sqlite:///{second / 'mlflow' / 'mlflow.db'}"


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_a_candidate_that_loses_to_the_heuristic_out_of_time_is_not_promoted(
    spark: SparkSession, trained_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The out-of-time fit is made to learn nothing (L1 strong enough to zero every
    coefficient: one score for everyone), the rest is the real stage: the decision, the
    aliases, the heuristic registered as champion (there was none), scoring with it, and the
    report's out-of-time line. A model of its own, so the registry starts empty; the features
    of both dates are the ones the tests above stored."""
    from types import SimpleNamespace

    from mlflow import MlflowClient

    from cdp.models import out_of_time
    from cdp.models.registry import registered_name
    from cdp.models.report_section import models_section
    from cdp.models.train import Candidate
    from cdp.runner import run_stage
    from cdp.storage import open_store

    flat = Candidate("lr", {"regParam": 10.0, "elasticNetParam": 1.0, "maxIter": 5})
    monkeypatch.setattr(out_of_time, "refit_candidate", lambda found: flat)
    model = "purchase_oot"
    config = _config(
        trained_root,
        **{"models.only": model, "models.models": [{"name": model, "label": "purchase"}]},
    )
    as_of = date(2025, 3, 1)
    result = run_stage("train", spark=spark, config=config, as_of=as_of)
    m = result.metrics
    assert float(m[f"{model}.oot_roc_auc"]) == pytest.approx(0.5)  # one score for everyone
    assert float(m[f"{model}.heuristic_oot_roc_auc"]) > 0.6
    assert m[f"{model}.alias"] == "challenger" and m[f"{model}.version"] == "1"
    assert m[f"{model}.promotion"].startswith("loses to the heuristic out of time: roc_auc 0.5000")

    client = MlflowClient(tracking_uri=config.mlflow_tracking_uri)
    name = registered_name("test", model)
    candidate = client.get_model_version_by_alias(name, "challenger")
    assert str(candidate.version) == "1"
    assert candidate.tags["promotion"] == m[f"{model}.promotion"]
    run = client.get_run(candidate.run_id)
    assert run.data.tags["cdp.promoted"] == "false"
    assert run.data.metrics["oot_roc_auc"] == pytest.approx(0.5)
    # No champion before: the better free scorer on the holdout (the heuristic, or BG/NBD
    # alone where the features carry a fit and it ranks better) takes the alias, as a model.
    fallback = m[f"{model}.heuristic_fallback_version"]
    champion = client.get_model_version_by_alias(name, "champion")
    assert str(champion.version) == fallback == "2"
    heuristic = float(m[f"{model}.heuristic_holdout_roc_auc"])
    btyd = float(m.get(f"{model}.btyd_holdout_roc_auc", "0"))
    scorer, prefix = ("bg/nbd", "btyd") if btyd > heuristic else ("heuristic", "heuristic")
    assert champion.tags["scorer"] == scorer
    assert m[f"{model}.fallback_scorer"] in ("the heuristic", "BG/NBD alone")
    fallback_run = client.get_run(champion.run_id)
    assert fallback_run.data.tags["cdp.kind"] == "heuristic_fallback"
    # Its order is the scorer's (a one-input logistic calibration of it).
    assert fallback_run.data.metrics["holdout_roc_auc"] == pytest.approx(
        float(m[f"{model}.{prefix}_holdout_roc_auc"]), abs=2e-3
    )

    # Score and the audiences read it like any champion: probabilities and deciles.
    run_stage("score", spark=spark, config=config, as_of=as_of)
    scores = (
        open_store(spark, config).read("gold/propensity_scores").where(f"model_name = '{model}'")
    )
    row = scores.agg({"score": "min", "decile": "max"}).first()
    assert row is not None and row["min(score)"] >= 0.0 and row["max(decile)"] == 10
    assert {r[0] for r in scores.select("model_version").distinct().collect()} == {"2"}

    # The report: the out-of-time line next to the holdout line, and the decision.
    train_row = SimpleNamespace(status="success", run_id=result.run_id, as_of=as_of, metrics=m)
    page = "".join(models_section(config, {"train": (train_row, 0)}).parts)  # type: ignore[dict-item]
    assert "out of time: model" in page and "<td class='num'>0.5000</td>" in page
    assert "version 1 is challenger: loses to the heuristic out of time" in page
    assert "version 2 (the heuristic) is the champion" in page
