"""Audiences: declarations validated at load, rules compiled over the profile and scores,
membership entering and exiting across runs, idempotent reruns, and clear errors."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyspark.sql import Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from cdp.audiences.members import consent_granted
from cdp.audiences.spec import AudienceError, load_audience_files
from cdp.audiences.stage import MEMBERSHIP_TABLE, RUNS_TABLE
from cdp.config import CdpConfig, load_config
from cdp.runner import StageFailed, run_stage
from cdp.storage import TableStore, open_store

CONSENT = StructType(
    [
        StructField("purpose", StringType()),
        StructField("channel", StringType()),
        StructField("status", StringType()),
        StructField("consent_time", TimestampType()),
        StructField("source", StringType()),
    ]
)
PROFILE = StructType(
    [
        StructField("customer_id", StringType()),
        StructField("email", StringType()),
        StructField("phone", StringType()),
        StructField("consents", ArrayType(CONSENT)),
        StructField("recency_days", IntegerType()),
        StructField("frequency", LongType()),
        StructField("monetary", DoubleType()),
        StructField("as_of", DateType()),
    ]
)
SCORES = StructType(
    [
        StructField("customer_id", StringType()),
        StructField("model_name", StringType()),
        StructField("model_version", StringType()),
        StructField("score", DoubleType()),
        StructField("decile", IntegerType()),
        StructField("as_of", DateType()),
        StructField("run_id", StringType()),
    ]
)
T0 = datetime(2024, 1, 1)
T1 = datetime(2024, 3, 1)
D1, D2, D3 = date(2024, 6, 1), date(2024, 6, 8), date(2024, 6, 15)


def granted(channel: str = "email", status: str = "granted", at: datetime = T0) -> Row:
    return Row(purpose="marketing", channel=channel, status=status, consent_time=at, source="s")


def write_profile(store: TableStore, rows: list[tuple[Any, ...]], as_of: date) -> None:
    """rows: (customer_id, consents, recency_days, frequency)."""
    data = [
        (cid, f"{cid}@x.com", None, cons, rec, freq, 10.0 * (freq or 0), as_of)
        for cid, cons, rec, freq in rows
    ]
    store.overwrite("gold/customer_profile", store.spark.createDataFrame(data, PROFILE))


def write_scores(store: TableStore, deciles: dict[str, int], as_of: date, version: str) -> None:
    data = [
        (cid, "purchase_90d", version, d / 10, d, as_of, f"run-{as_of}-{version}")
        for cid, d in deciles.items()
    ]
    store.append("gold/propensity_scores", store.spark.createDataFrame(data, SCORES))


def declare(directory: Path, name: str, **spec: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, **spec}))
    return path


@pytest.fixture()
def config(tmp_path: Path) -> CdpConfig:
    auds = tmp_path / "audiences"
    declare(
        auds,
        "lapsed_high_intent",
        purpose="marketing",
        channel="email",
        models=["purchase_90d"],
        rule="purchase_90d_decile >= 9 AND (recency_days IS NULL OR recency_days > 60)",
    )
    declare(auds, "loyal", purpose="marketing", channel="sms", rule="frequency >= 3")
    return load_config(
        env="test",
        overrides={"data_root": str(tmp_path / "data"), "activation.audiences_dirs": [str(auds)]},
    )


def membership(store: TableStore) -> set[tuple[str, str, date, date | None]]:
    rows = store.read(MEMBERSHIP_TABLE).collect()
    return {(r.audience, r.customer_id, r.entered_at, r.exited_at) for r in rows}


# --- declarations --------------------------------------------------------------------------


def test_declarations_are_validated_with_file_and_key(tmp_path: Path) -> None:
    good = declare(tmp_path, "ok", purpose="marketing", channel="email", rule="frequency > 1")
    specs = load_audience_files([good])
    assert specs[0].require_consent and specs[0].consents_used() == [("marketing", "email")]

    cases = {
        "typo": (
            {"purpose": "marketing", "channel": "email", "rule": "x", "modle": ["a"]},
            "unknown key 'modle'",
        ),
        "purpose": ({"purpose": "ads", "channel": "email", "rule": "x"}, "key 'purpose'"),
        "consent": (
            {"purpose": "marketing", "channel": "email", "rule": "consent_marketing_fax"},
            "'consent_marketing_fax' is not a consent column",
        ),
        "norule": ({"purpose": "marketing", "channel": "email"}, "missing key 'rule'"),
    }
    for name, (spec, message) in cases.items():
        path = declare(tmp_path / name, name, **spec)
        with pytest.raises(AudienceError) as err:
            load_audience_files([path])
        assert str(path) in str(err.value) and message in str(err.value), str(err.value)

    both = declare(tmp_path / "dup", "ok", purpose="marketing", channel="sms", rule="true")
    with pytest.raises(AudienceError, match="already declared"):
        load_audience_files([good, both])
    multi = tmp_path / "multi.yaml"
    multi.write_text(
        yaml.safe_dump(
            {
                "audiences": [
                    {"name": "a", "purpose": "marketing", "channel": "push", "rule": "true"},
                    {
                        "name": "b",
                        "purpose": "marketing",
                        "channel": "web",
                        "rule": "true",
                        "enabled": False,
                    },
                ]
            }
        )
    )
    assert [s.name for s in load_audience_files([multi])] == ["a"]


def test_consent_granted_takes_the_latest_statement(spark: SparkSession) -> None:
    rows = [
        ("granted", [granted()]),
        ("withdrawn_later", [granted(), granted(status="withdrawn", at=T1)]),
        ("regranted_on_all", [granted(status="withdrawn"), granted(channel="all", at=T1)]),
        ("tie_is_no", [granted(at=T1), granted(status="withdrawn", at=T1)]),
        ("other_channel", [granted(channel="sms")]),
        ("none", None),
    ]
    df = spark.createDataFrame(
        rows,
        StructType([StructField("id", StringType()), StructField("consents", ArrayType(CONSENT))]),
    )
    got = {
        r.id: r.ok
        for r in df.select(
            "id", consent_granted(F.col("consents"), "marketing", "email").alias("ok")
        ).collect()
    }
    assert got == {
        "granted": True,
        "withdrawn_later": False,
        "regranted_on_all": True,
        "tie_is_no": False,
        "other_channel": False,
        "none": False,
    }


# --- the stage -----------------------------------------------------------------------------


def test_membership_enters_exits_and_reruns_idempotently(
    spark: SparkSession, config: CdpConfig
) -> None:
    store = open_store(spark, config)
    email, sms = [granted()], [granted(channel="sms")]
    # c1: high intent, lapsed, consented; c2: high intent but bought recently; c3: no consent;
    # c4: loyal with sms consent; c5: high intent, never bought (recency null).
    write_profile(
        store,
        [
            ("c1", email, 90, 1),
            ("c2", email, 5, 1),
            ("c3", None, 90, 5),
            ("c4", sms, 3, 4),
            ("c5", email, None, 0),
        ],
        D1,
    )
    write_scores(store, {"c1": 10, "c2": 9, "c3": 10, "c4": 2, "c5": 9}, D1, "1")

    first = run_stage("audiences", spark=spark, config=config)  # date: the profile's as_of
    assert membership(store) == {
        ("lapsed_high_intent", "c1", D1, None),
        ("lapsed_high_intent", "c5", D1, None),
        ("loyal", "c4", D1, None),
    }
    runs = {r.audience: r for r in store.read(RUNS_TABLE).collect()}
    assert runs["lapsed_high_intent"].members == 2 and runs["lapsed_high_intent"].as_of == D1
    assert [(m.model_name, m.model_version) for m in runs["lapsed_high_intent"].models] == [
        ("purchase_90d", "1")
    ]
    assert first.rows_written[MEMBERSHIP_TABLE] == 3

    # A week later: c1 bought (recency 2) and exits; c2 lapsed and enters; c5's score fell.
    write_profile(
        store,
        [
            ("c1", email, 2, 2),
            ("c2", email, 70, 1),
            ("c3", None, 97, 5),
            ("c4", sms, 10, 4),
            ("c5", email, None, 0),
        ],
        D2,
    )
    write_scores(store, {"c1": 10, "c2": 10, "c3": 10, "c4": 2, "c5": 3}, D2, "2")
    run_stage("audiences", spark=spark, config=config, as_of=D2)
    after = {
        ("lapsed_high_intent", "c1", D1, D2),
        ("lapsed_high_intent", "c5", D1, D2),
        ("lapsed_high_intent", "c2", D2, None),
        ("loyal", "c4", D1, None),
    }
    assert membership(store) == after
    assert store.read(MEMBERSHIP_TABLE).where("run_id IS NULL").count() == 0

    # The same date again, same inputs: nothing is committed.
    version = store.version(MEMBERSHIP_TABLE)
    run_stage("audiences", spark=spark, config=config, as_of=D2)
    assert store.version(MEMBERSHIP_TABLE) == version and membership(store) == after

    # The same date with corrected inputs replaces that date's changes: c5 stays (reopened),
    # c2 never entered (deleted), and c1 still exits.
    write_scores(store, {"c1": 10, "c2": 1, "c3": 10, "c4": 2, "c5": 9}, D2, "3")
    run_stage("audiences", spark=spark, config=config, as_of=D2)
    assert membership(store) == {
        ("lapsed_high_intent", "c1", D1, D2),
        ("lapsed_high_intent", "c5", D1, None),
        ("loyal", "c4", D1, None),
    }

    # Going back in time is refused.
    with pytest.raises(StageFailed, match="forward only"):
        run_stage("audiences", spark=spark, config=config, as_of=D1)


def test_removed_audience_members_exit_and_other_audiences_stay(
    spark: SparkSession, config: CdpConfig, tmp_path: Path
) -> None:
    store = open_store(spark, config)
    sms = [granted(channel="sms")]
    write_profile(store, [("c4", sms, 3, 4), ("c6", sms, 1, 7)], D1)
    write_scores(store, {"c4": 2, "c6": 3}, D1, "1")
    run_stage("audiences", spark=spark, config=config)
    assert membership(store) == {("loyal", "c4", D1, None), ("loyal", "c6", D1, None)}

    # 'loyal' is removed from the declarations: a week later its open spells close.
    (tmp_path / "audiences" / "loyal.yaml").unlink()
    write_profile(store, [("c4", sms, 10, 4), ("c6", sms, 8, 7)], D2)
    result = run_stage("audiences", spark=spark, config=config, as_of=D2)
    assert membership(store) == {("loyal", "c4", D1, D2), ("loyal", "c6", D1, D2)}
    assert int(result.metrics["audience.loyal.retired_exited"]) == 2
    assert {r.audience for r in store.read(RUNS_TABLE).where(f"as_of = '{D2}'").collect()} == {
        "lapsed_high_intent"
    }

    # Declared again later: members enter anew, the closed spells stay as history.
    declare(
        tmp_path / "audiences", "loyal", purpose="marketing", channel="sms", rule="frequency >= 5"
    )
    write_profile(store, [("c4", sms, 10, 4), ("c6", sms, 8, 7)], D3)
    run_stage("audiences", spark=spark, config=config, as_of=D3)
    assert membership(store) == {
        ("loyal", "c4", D1, D2),
        ("loyal", "c6", D1, D2),
        ("loyal", "c6", D3, None),
    }


def test_unknown_trait_or_model_names_file_and_key(
    spark: SparkSession, config: CdpConfig, tmp_path: Path
) -> None:
    store = open_store(spark, config)
    write_profile(store, [("c1", [granted()], 90, 1)], D1)
    write_scores(store, {"c1": 10}, D1, "1")
    bad = tmp_path / "bad"
    trait = declare(bad, "t", purpose="marketing", channel="email", rule="lifetime_value > 3")
    cfg = config.model_copy(deep=True)
    cfg.activation.audiences_dirs = [str(bad)]
    with pytest.raises(StageFailed) as err:
        run_stage("audiences", spark=spark, config=cfg)
    text = str(err.value.cause)
    assert str(trait) in text and "key 'rule'" in text and "unknown column 'lifetime_value'" in text

    trait.unlink()
    model = declare(
        bad,
        "m",
        purpose="marketing",
        channel="email",
        models=["churn_90d"],
        rule="churn_90d_decile > 8",
    )
    with pytest.raises(StageFailed) as err:
        run_stage("audiences", spark=spark, config=cfg)
    text = str(err.value.cause)
    assert str(model) in text and "key 'models'" in text and "'churn_90d'" in text
    assert "purchase_90d" in text  # the models that do have scores are listed

    model.unlink()
    unlisted = declare(
        bad, "u", purpose="marketing", channel="email", rule="purchase_90d_decile > 8"
    )
    with pytest.raises(StageFailed) as err:
        run_stage("audiences", spark=spark, config=cfg)
    assert "list it under 'models'" in str(err.value.cause) and str(unlisted) in str(
        err.value.cause
    )
