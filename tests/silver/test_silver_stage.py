"""Scenario tests of the silver stage: mapping, rules, de-duplication, late data, deletions,
incremental processing and the accounting identity."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyspark.sql import SparkSession

from cdp import faults
from cdp.config import CdpConfig, ConfigError, load_config
from cdp.runner import StageFailed, run_stage
from cdp.silver.rules import load_rules
from cdp.silver.stage import CHANGES_TABLE, QUARANTINE_TABLE, ranking_partitions
from cdp.storage import open_store

CRM_1 = (
    "contact_id,email,phone,first_name,last_name,country,updated_at,is_deleted\n"
    "1, Ann.Lee@Example.COM ,020 7946 0958,ann,LEE,UK,2024-01-01 10:00:00,false\n"
    "2,bob@x.com,+1 (415) 555-2671,Bob,Stone,USA,2024-01-01 10:00:00,false\n"
    "2,bob@x.com,+1 (415) 555-2671,Bob,Stone,USA,2024-01-01 10:00:00,false\n"  # exact duplicate
    "3,old@x.com,,Cy,Doe,DE,2024-01-01 10:00:00,false\n"
    "3,cy@x.com,,Cy,Doe,DE,2024-03-01 10:00:00,false\n"  # newer version in the same drop
    ",nokey@x.com,,No,Key,GB,2024-01-01 10:00:00,false\n"  # no source record id: quarantined
    "5,not-an-email,n/a,Eve,Ray,FR,2024-01-01 10:00:00,false\n"  # warnings only
)
CRM_2 = (
    "contact_id,email,phone,first_name,last_name,country,updated_at,is_deleted\n"
    "1,ann.new@example.com,020 7946 0958,Ann,Lee,GB,2024-05-01 10:00:00,false\n"  # update
    "2,bob@x.com,,Bob,Stone,US,2024-06-01 10:00:00,true\n"  # deletion
    "3,late@x.com,,Cy,Doe,DE,2024-02-01 10:00:00,false\n"  # late and older: ignored
)
ORDERS = (
    "order_id;email;amount;currency;ts\n"
    "o1;ann.lee@example.com;12,50;eur;2024-01-05 09:00:00\n"
    "o2;bob@x.com;abc;EUR;2024-01-06 09:00:00\n"  # amount unparsable: blocking rule
    "o3;bob@x.com;9.99;€;2024-01-07 09:00:00\n"
)


def declare(d: Path, name: str, **spec: object) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.yaml").write_text(yaml.safe_dump({"name": name, **spec}))


@pytest.fixture()
def config(tmp_path: Path) -> CdpConfig:
    landing, sources = tmp_path / "landing", tmp_path / "sources"
    (landing / "crm" / "d1").mkdir(parents=True)
    (landing / "crm" / "d1" / "a.csv").write_text(CRM_1)
    (landing / "orders").mkdir()
    (landing / "orders" / "o.csv").write_text(ORDERS)
    declare(
        sources,
        "crm",
        kind="profile",
        format="csv",
        path="crm/*/*.csv",
        options={"header": "true"},
        primary_key=["contact_id"],
        event_time="updated_at",
        delete_flag="is_deleted",
        mapping={
            "source_record_id": "contact_id",
            "crm_id": "contact_id",
            "email": "email",
            "phone": "phone",
            "first_name": "first_name",
            "last_name": "last_name",
            "country": "country",
            "updated_at": "updated_at",
        },
        defaults={"phone_region": "GB"},
    )
    declare(
        sources,
        "orders",
        kind="transaction",
        format="csv",
        path="orders/*.csv",
        options={"header": "true", "sep": ";"},
        primary_key=["order_id"],
        event_time="ts",
        mapping={
            "source_record_id": "order_id",
            "order_id": "order_id",
            "email": "email",
            "amount": "amount",
            "currency": "currency",
            "order_time": "ts",
        },
    )
    return load_config(
        env="test",
        overrides={
            "data_root": str(tmp_path / "data"),
            "landing_root": str(landing),
            "sources_dirs": [str(sources)],
        },
    )


def test_silver_end_to_end_with_late_data_deletions_and_increments(
    spark: SparkSession, config: CdpConfig
) -> None:
    store = open_store(spark, config)
    run_stage("ingest", spark=spark, config=config)
    first = run_stage("silver", spark=spark, config=config)

    people = {r.source_record_id: r for r in store.read("silver/person_records").collect()}
    assert sorted(people) == ["1", "2", "3", "5"]
    ann = people["1"]
    assert (ann.email, ann.email_raw, ann.email_status) == (
        "ann.lee@example.com",
        " Ann.Lee@Example.COM ",
        "ok",
    )
    assert (ann.phone, ann.country, ann.first_name, ann.last_name) == (
        "+442079460958",
        "GB",
        "Ann",
        "Lee",
    )
    assert people["2"].phone == "+14155552671" and people["2"].country == "US"
    assert people["3"].email == "cy@x.com"  # the newer version of the same drop won
    eve = people["5"]
    assert eve.email is None and eve.email_status == "invalid" and eve.email_raw == "not-an-email"
    assert set(eve._dq_warnings) == {"email_valid"} and eve.phone_status == "empty"

    # Accounting: bronze rows = silver rows + duplicates collapsed + superseded + quarantined.
    log = store.read("ops/run_log").where(f"run_id = '{first.run_id}'").collect()[0]
    m = log.metrics
    assert first.rows_read["bronze/crm"] == 7
    assert (
        4
        + int(m["person_records.exact_duplicates_collapsed"])
        + int(m["person_records.older_versions_superseded"])
        + first.rows_quarantined["silver/person_records"]
        == 7
    )
    assert m["rule.person_records.source_record_id_present"] == "1"
    assert m["rule.person_records.email_valid"] == "1"
    q = store.read(QUARANTINE_TABLE).where("table = 'person_records'").collect()
    assert (
        len(q) == 1 and q[0].rules == ["source_record_id_present"] and "nokey@x.com" in q[0].record
    )

    orders = {r.source_record_id: r for r in store.read("silver/transactions").collect()}
    assert sorted(orders) == ["o1", "o3"]
    assert str(orders["o1"].amount) == "12.50" and orders["o1"].currency == "EUR"
    assert orders["o3"].currency == "EUR"
    bad = store.read(QUARANTINE_TABLE).where("table = 'transactions'").collect()
    assert [b.source_record_id for b in bad] == ["o2"] and "amount_parsed" in bad[0].rules
    assert "amount is null" in bad[0].reasons[0]

    # A rerun with nothing new writes nothing.
    versions = {
        t: store.version(t) for t in ("silver/person_records", "silver/transactions", CHANGES_TABLE)
    }
    again = run_stage("silver", spark=spark, config=config)
    assert again.rows_read == {} and again.rows_written == {}
    assert {t: store.version(t) for t in versions} == versions

    # Drop 2: an update, a deletion, and late older data. Only its three rows are read.
    drop2 = Path(config.landing_uri) / "crm" / "d2" / "b.csv"
    drop2.parent.mkdir()
    drop2.write_text(CRM_2)
    run_stage("ingest", spark=spark, config=config)
    second = run_stage("silver", spark=spark, config=config)
    assert second.rows_read == {"bronze/crm": 3}
    people = {r.source_record_id: r for r in store.read("silver/person_records").collect()}
    assert people["1"].email == "ann.new@example.com"
    assert people["2"].is_deleted is True  # tombstone: applied, and kept against late copies
    assert people["3"].email == "cy@x.com"  # older late-arriving data did not overwrite
    changes = store.read(CHANGES_TABLE).where(f"silver_run_id = '{second.run_id}'")
    assert sorted((r.source_record_id, r.change) for r in changes.collect()) == [
        ("1", "update"),
        ("2", "delete"),
    ]
    first_changes = store.read(CHANGES_TABLE).where(f"silver_run_id = '{first.run_id}'").count()
    assert first_changes == 4 + 2  # every key of the first run was an insert


def test_rules_file_errors_are_clear(tmp_path: Path) -> None:
    path = tmp_path / "silver.yaml"
    path.write_text("people:\n  - {name: x, type: not_null, column: a}\n")
    with pytest.raises(ConfigError, match="unknown silver table 'people'"):
        load_rules(path, tables={"person_records"})
    path.write_text("person_records:\n  - {name: x, type: regex, column: a}\n")
    with pytest.raises(ConfigError, match=r"person_records\[0\].*needs pattern"):
        load_rules(path, tables={"person_records"})
    repo_rules = Path(__file__).resolve().parents[2] / "conf" / "rules" / "silver.yaml"
    loaded = load_rules(repo_rules, tables={"person_records", "events", "transactions", "consents"})
    assert {r.type.value for rules in loaded.values() for r in rules} >= {
        "not_null",
        "regex",
        "range",
        "allowed_values",
        "referential",
        "expression",
    }
    assert os.path.exists(repo_rules)


def test_each_rule_type_flags_what_it_should(spark: SparkSession) -> None:
    from cdp.silver.rules import Rule, apply_rules

    rows = spark.createDataFrame(
        [
            ("a", "EUR", 10.0, "granted", "c1"),
            (None, "eur", 10.0, "granted", "c1"),  # not_null + regex
            ("c", "EUR", -5.0, "maybe", "c9"),  # range + allowed_values + referential
            ("d", None, None, None, None),  # nulls pass every rule but not_null
        ],
        "id string, currency string, amount double, status string, crm_id string",
    )
    people = spark.createDataFrame([("c1",)], "crm_id string")
    rules = [
        Rule(name="id_present", type="not_null", column="id", blocking=True),
        Rule(name="currency_code", type="regex", column="currency", pattern="^[A-Z]{3}$"),
        Rule(name="amount_positive", type="range", column="amount", min=0),
        Rule(
            name="status_known",
            type="allowed_values",
            column="status",
            values=["granted", "withdrawn"],
        ),
        Rule(
            name="crm_known",
            type="referential",
            column="crm_id",
            ref_table="silver/person_records",
            ref_column="crm_id",
        ),
        Rule(name="big_spender", type="expression", column="amount IS NULL OR amount < 100"),
    ]
    out = rows.transform(apply_rules(rules, refs={"silver/person_records": people}))
    got = {r.id: (sorted(v.rule for v in r._violations), r._blocked) for r in out.collect()}
    assert got == {
        "a": ([], False),
        None: (["currency_code", "id_present"], True),
        "c": (["amount_positive", "crm_known", "status_known"], False),
        "d": ([], False),
    }
    reasons = {v.rule: v.reason for r in out.collect() if r.id == "c" for v in r._violations}
    # Reasons name the rule and the column, never the failing value (issue 23: personal data
    # stays in the quarantined record, not in texts the report lists).
    assert reasons["crm_known"] == "crm_known: crm_id not found in silver/person_records.crm_id"
    assert reasons["status_known"] == "status_known: status not in ['granted', 'withdrawn']"
    assert not any("c9" in r for r in reasons.values())


def test_ranking_shuffle_grows_with_the_batch() -> None:
    # Small batches keep the session's partitions; 13M rows (the events of 1M generated
    # persons) get partitions of at most 200k rows instead of 4 partitions of 3M.
    assert ranking_partitions(1_000, "4") == 4
    assert ranking_partitions(0, None) == 1
    assert ranking_partitions(13_000_000, "4") == 65
    assert ranking_partitions(13_000_001, "4") == 66
    assert ranking_partitions(1_000_000, "400") == 400


# --------------------------------------------------------------------------------------------
# Exactly-once side tables: crashes, reruns and concurrent runs


def _side_rows(store: Any) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    quarantine = sorted(
        ((r.table, r.source, r.source_record_id, r._bronze_run_id)
         for r in store.read(QUARANTINE_TABLE).collect()),
        key=str,
    )  # fmt: skip
    changes = sorted(
        ((r.table, r.source, r.source_record_id, r.change)
         for r in store.read(CHANGES_TABLE).collect()),
        key=str,
    )  # fmt: skip
    return quarantine, changes


def test_a_crash_before_the_merge_or_the_progress_mark_leaves_each_side_row_once(
    spark: SparkSession, config: CdpConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(spark, config)
    run_stage("ingest", spark=spark, config=config)
    monkeypatch.setenv("CDP_FAULT_MODE", "raise")
    # 1: dies after writing person_records' quarantine and changes, before its merge.
    monkeypatch.setenv("CDP_FAULT_POINT", "silver.before_merge")
    faults.reset()
    with pytest.raises(StageFailed, match="silver.before_merge"):
        run_stage("silver", spark=spark, config=config)
    assert not store.exists("silver/person_records")
    assert store.read(QUARANTINE_TABLE).count() == 1 and store.read(CHANGES_TABLE).count() == 4
    # 2: the rerun merges person_records, then dies before its progress mark.
    monkeypatch.setenv("CDP_FAULT_POINT", "silver.before_progress")
    faults.reset()
    with pytest.raises(StageFailed, match="silver.before_progress"):
        run_stage("silver", spark=spark, config=config)
    assert store.read("silver/person_records").count() == 4
    # 3: completes (person_records' bronze read a third time, transactions for the first).
    monkeypatch.delenv("CDP_FAULT_POINT")
    run_stage("silver", spark=spark, config=config)
    quarantine, changes = _side_rows(store)
    assert [q[:3] for q in quarantine] == [
        ("person_records", "crm", None),
        ("transactions", "orders", "o2"),
    ]
    assert len({c[:3] for c in changes}) == len(changes) == 6  # 4 persons, 2 orders, once each
    assert {c[3] for c in changes} == {"insert"}

    # Drop 2, a crash before its merge, a rerun: its two changes recorded once.
    drop2 = Path(config.landing_uri) / "crm" / "d2" / "b.csv"
    drop2.parent.mkdir()
    drop2.write_text(CRM_2)
    run_stage("ingest", spark=spark, config=config)
    monkeypatch.setenv("CDP_FAULT_POINT", "silver.before_merge")
    faults.reset()
    with pytest.raises(StageFailed):
        run_stage("silver", spark=spark, config=config)
    monkeypatch.delenv("CDP_FAULT_POINT")
    run_stage("silver", spark=spark, config=config)
    quarantine2, changes2 = _side_rows(store)
    assert quarantine2 == quarantine
    assert sorted(set(changes2) - set(changes)) == [
        ("person_records", "crm", "1", "update"),
        ("person_records", "crm", "2", "delete"),
    ]
    assert len(changes2) == len(changes) + 2


def test_two_silver_runs_at_once_leave_each_quarantined_row_once(
    spark: SparkSession, config: CdpConfig
) -> None:
    store = open_store(spark, config)
    run_stage("ingest", spark=spark, config=config)
    config.runner.lock_wait_seconds = 600  # the second waits for the first, then runs
    results: list[Any] = []

    def silver() -> None:
        try:
            results.append(run_stage("silver", spark=spark, config=config))
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            results.append(exc)

    threads = [threading.Thread(target=silver) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(not isinstance(r, BaseException) for r in results), results
    assert sorted(sum(r.rows_read.values()) for r in results) == [0, 7 + 3]  # one did the work
    quarantine, changes = _side_rows(store)
    assert [q[:3] for q in quarantine] == [
        ("person_records", "crm", None),
        ("transactions", "orders", "o2"),
    ]
    assert len({c[:3] for c in changes}) == len(changes) == 6


def test_a_run_is_refused_while_another_holds_the_data_root(
    spark: SparkSession, config: CdpConfig
) -> None:
    from cdp.lock import LockHeld, StageLock, lock_path

    path = lock_path(config.data_root_uri)
    path.parent.mkdir(parents=True)
    other = StageLock(config.data_root_uri, stage="identity", run_id="elsewhere-run")
    path.write_text(other._lease(time.time()).to_json())  # another process's live lease
    with pytest.raises(LockHeld, match=r"locked by stage 'identity' \(owner .*:elsewhere-run\)"):
        run_stage("silver", spark=spark, config=config)
    assert not open_store(spark, config).exists("ops/run_log")  # refused before any write
    path.unlink()
