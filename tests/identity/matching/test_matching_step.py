"""Probabilistic matching inside the identity stage: real Splink scoring on Spark, a model
kept in a real MLflow store, real Delta tables, the steward's decisions and the guards.

The model's m/u probabilities are set by hand (a "pre-trained model", as Splink allows)
because EM on six records estimates nothing; training itself runs in the generated-data
scenario (tests/scenarios/test_identity_generated.py) and the benchmark.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdp.config import CdpConfig, ConfigError, load_config
from cdp.identity.matching.comparisons import splink_settings
from cdp.identity.matching.config import MatchingRules, load_matching, resolve_fields
from cdp.identity.matching.model import TrainedModel
from cdp.identity.matching.step import ModelStore
from cdp.identity.stage import LINKS_TABLE, MAP_TABLE, MATCH_PAIRS_TABLE, REVIEW_TABLE
from cdp.models.registry import Registry
from cdp.runner import StageFailed, run_stage
from cdp.storage import open_store

SCHEMA = (
    "source string, source_record_id string, crm_id string, email string, email_status string, "
    "first_name string, last_name string, birth_date date, gender string, "
    "address_line1 string, postcode string, city string, is_deleted boolean"
)
EXACT_RULES: dict[str, Any] = {
    "identifiers": [{"name": "crm_id", "id_type": "crm_id", "fields": ["crm_id"], "priority": 100}],
    "attribute_limits": {"gender": 1},
}
NICKNAMES = Path(__file__).resolve().parents[3] / "conf" / "rules" / "nicknames.yaml"
MATCHING: dict[str, Any] = {
    "nicknames_file": str(NICKNAMES),
    "tables": ["person_records"],
    "min_fields": 3,
    "thresholds": {"match": 0.99, "review": 0.2},
    "comparisons": [
        {"name": "first_name", "kind": "forename", "field": "first_name"},
        {"name": "last_name", "kind": "surname", "field": "last_name"},
        {"name": "birth_date", "kind": "birth_date", "field": "birth_date"},
        {"name": "location", "kind": "location", "fields": ["address_line1", "postcode", "city"]},
    ],
    "blocking": [["last_name"], ["birth_date"]],
}


def _row(rid: str, first: str, last: str, born: date, gender: str, street: str, pc: str):
    return ("crm", rid, None, None, "empty", first, last, born, gender, street, pc, "Leeds", False)


# a/b: one person, a typo in each name, no common key.  c/d: two different Jane Smiths born
# the same year, at other addresses.  e/f: like a/b, but their genders differ (the guard).
RECORDS = [
    _row("a", "Katherine", "Wood", date(1980, 3, 4), "f", "12 Oak Road", "LS1 1AA"),
    _row("b", "Katherin", "Woodd", date(1980, 3, 4), "f", "12 Oak Road", "LS1 1AA"),
    _row("c", "Jane", "Smith", date(1975, 1, 10), "f", "1 Elm Street", "LS2 2BB"),
    _row("d", "Jane", "Smith", date(1975, 7, 22), "f", "9 Ash Lane", "LS9 9ZZ"),
    _row("e", "Robert", "Brown", date(1966, 5, 6), "m", "3 Pine Close", "LS3 3CC"),
    _row("f", "Bob", "Brown", date(1966, 5, 6), "f", "3 Pine Close", "LS3 3CC"),
]


def resolved(config: CdpConfig, path: Path) -> MatchingRules:
    """The rules as the stage reads them: reduced to the fields the sources map (which the
    fingerprint a stored model is found by includes)."""
    from cdp.sources import load_sources, mapped_fields

    return resolve_fields(load_matching(path), mapped_fields(load_sources(config)))[0]


def hand_model(
    config: CdpConfig, path: Path, else_m: dict[str, float] | None = None
) -> TrainedModel:
    """Exact levels strongly for, partial levels for, ELSE against; a rare prior.
    ``else_m``: comparison -> the ELSE level's m-probability, where not 0.05."""
    rules = resolved(config, path)
    settings = splink_settings(rules)
    settings["probability_two_random_records_match"] = 1e-3
    for comp in settings["comparisons"]:
        levels = [lv for lv in comp["comparison_levels"] if not lv.get("is_null_level")]
        for i, level in enumerate(levels):
            if level["sql_condition"] == "ELSE":
                m_else = (else_m or {}).get(comp["output_column_name"], 0.05)
                level["m_probability"], level["u_probability"] = m_else, 0.9
            elif i == 0:
                level["m_probability"], level["u_probability"] = 0.85, 0.01
            else:
                level["m_probability"], level["u_probability"] = 0.1 / len(levels), 0.002
    return TrainedModel(settings, rules.fingerprint(), len(RECORDS))


def _stage_config(
    tmp_path: Path,
    exact: dict[str, Any] | None = None,
    matching_rules: dict[str, Any] | None = None,
    **overrides: str,
) -> CdpConfig:
    """The identity stage on EXACT_RULES and MATCHING (or ``exact`` / ``matching_rules``),
    written under ``tmp_path``."""
    rules = tmp_path / "identity.yaml"
    rules.write_text(yaml.safe_dump(exact or EXACT_RULES))
    matching = tmp_path / "matching.yaml"
    matching.write_text(yaml.safe_dump(matching_rules or MATCHING))
    return load_config(
        env="test",
        overrides={
            "data_root": str(tmp_path / "data"),
            "identity.rules_file": str(rules),
            "identity.matching_file": str(matching),
            "identity.engine": "dataframe",
            **overrides,
        },
    )


@pytest.fixture()
def setup(tmp_path: Path, spark: SparkSession) -> tuple[CdpConfig, Path]:
    matching = tmp_path / "matching.yaml"
    decisions = tmp_path / "decisions.csv"
    config = _stage_config(tmp_path, **{"identity.decisions_file": str(decisions)})
    store = open_store(spark, config)
    store.overwrite("silver/person_records", spark.createDataFrame(RECORDS, SCHEMA))
    registry = Registry(
        config.mlflow_tracking_uri,
        config.env,
        artifact_root=str(Path(config.data_root_uri) / "mlflow" / "artifacts"),
    )
    ModelStore(registry).save(
        hand_model(config, matching),
        resolved(config, matching),
        run_name="hand-set",
        data_versions="test",
    )
    return config, decisions


def _customers(spark: SparkSession, config: CdpConfig) -> dict[str, str]:
    rows = open_store(spark, config).read(MAP_TABLE).collect()
    return {r["source_record_id"]: r["customer_id"] for r in rows}


def test_typos_link_namesakes_do_not_and_guards_and_decisions_still_hold(
    spark: SparkSession, setup: tuple[CdpConfig, Path]
) -> None:
    config, decisions = setup
    result = run_stage("identity", spark=spark, config=config)
    assert str(result.metrics["matching.trained"]) == "0"  # the hand-set model, from MLflow
    ids = _customers(spark, config)
    assert ids["a"] == ids["b"]  # no common key, small typos: one customer
    assert ids["c"] != ids["d"]  # same common name and birth year: two people
    assert ids["e"] != ids["f"]  # scored as a match, dropped by attribute_limits.gender

    store = open_store(spark, config)
    pairs = {
        (r["source_record_id_l"], r["source_record_id_r"]): r
        for r in store.read(MATCH_PAIRS_TABLE)
        .select(
            F.least("source_record_id_l", "source_record_id_r").alias("source_record_id_l"),
            F.greatest("source_record_id_l", "source_record_id_r").alias("source_record_id_r"),
            "status",
            "levels",
            "match_probability",
        )
        .collect()
    }
    assert pairs[("a", "b")]["status"] == "linked"
    assert pairs[("a", "b")]["levels"]["first_name"] == "one edit"
    assert pairs[("a", "b")]["levels"]["location"] == "same street and postcode"
    assert pairs[("e", "f")]["status"] == "conflict:gender"
    assert pairs[("e", "f")]["levels"]["first_name"] == "nickname"  # Bob / Robert
    assert ("c", "d") not in pairs
    review = store.read(REVIEW_TABLE).collect()
    assert all(r["match_probability"] < 0.99 for r in review)
    rules = {r["rule"] for r in store.read(LINKS_TABLE).collect()}
    assert "probabilistic" in rules

    # A steward says a and b are two people: the next run splits them.
    decisions.write_text(
        "decision,left_source,left_record_id,right_source,right_record_id,note\n"
        "cannot_link,crm,a,crm,b,twins\n"
    )
    run_stage("identity", spark=spark, config=config)
    ids = _customers(spark, config)
    assert ids["a"] != ids["b"]

    # ... and that c and d are one: a must-link joins them.
    decisions.write_text(
        "decision,left_source,left_record_id,right_source,right_record_id\n"
        "cannot_link,crm,a,crm,b\nmust_link,crm,c,crm,d\n"
    )
    run_stage("identity", spark=spark, config=config)
    ids = _customers(spark, config)
    assert ids["c"] == ids["d"] and ids["a"] != ids["b"]


def test_a_blocking_rule_that_blows_up_fails_before_any_write(
    spark: SparkSession, setup: tuple[CdpConfig, Path], tmp_path: Path
) -> None:
    config, _ = setup
    matching = tmp_path / "matching.yaml"
    matching.write_text(yaml.safe_dump(dict(MATCHING, blocking=[["city"]], max_pairs=10)))
    config = config.model_copy(deep=True)
    with pytest.raises(StageFailed, match=r"blocking\[0\] \['city'\] would generate 15 record"):
        run_stage("identity", spark=spark, config=config)
    assert not open_store(spark, config).exists(MAP_TABLE)


def test_a_bad_decision_row_fails_naming_the_line(
    spark: SparkSession, setup: tuple[CdpConfig, Path]
) -> None:
    config, decisions = setup
    decisions.write_text(
        "decision,left_source,left_record_id,right_source,right_record_id\nmaybe_link,crm,a,crm,b\n"
    )
    with pytest.raises(StageFailed, match=r"decisions.csv:2: decision 'maybe_link'"):
        run_stage("identity", spark=spark, config=config)


def test_a_comparison_on_a_field_no_source_maps_fails_at_load(tmp_path: Path) -> None:
    from cdp.identity.matching.config import resolve_fields

    bad = dict(MATCHING)
    bad["comparisons"] = [*MATCHING["comparisons"], {"name": "nino", "kind": "identifier",
                                                      "field": "national_insurance"}]  # fmt: skip
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match=r"m.yaml: comparisons\[4\] \(nino\)"):
        mapped = {"first_name", "last_name", "birth_date", "address_line1", "postcode", "city"}
        resolve_fields(load_matching(path), {"person_records": mapped})


def test_a_company_without_the_compared_tables_is_matched_on_nothing_and_told(
    spark: SparkSession,
) -> None:
    from datetime import datetime, timezone

    from cdp.identity.matching.config import parse_matching
    from cdp.identity.matching.step import run_matching

    result = run_matching(
        spark,
        {"transactions": spark.range(1).toDF("x")},
        spark.range(0).toDF("node"),
        parse_matching(MATCHING),
        nicknames={},
        decisions=[],
        models=None,
        retrain=False,
        run_id="r",
        data_versions="",
        now=datetime.now(timezone.utc),
        cut=lambda df: df,
    )
    assert result.links is None and result.pairs is None
    assert result.notes == ["probabilistic matching: no table of ['person_records'] present"]


def test_decisions_hold_without_probabilistic_matching(
    spark: SparkSession, setup: tuple[CdpConfig, Path]
) -> None:
    config, decisions = setup
    config = config.model_copy(deep=True)
    config.identity.matching_file = None
    decisions.write_text(
        "decision,left_source,left_record_id,right_source,right_record_id\nmust_link,crm,c,crm,d\n"
    )
    run_stage("identity", spark=spark, config=config)
    ids = _customers(spark, config)
    assert ids["c"] == ids["d"]  # the steward's word
    assert ids["a"] != ids["b"]  # no model: typos alone join nothing


def test_blocked_pairs_are_counted_for_plain_and_crosswise_rules(spark: SparkSession) -> None:
    from cdp.identity.matching.config import parse_matching
    from cdp.identity.matching.model import count_blocked_pairs

    rules = parse_matching(
        dict(
            MATCHING,
            nicknames_file=None,
            blocking=[
                ["last_name"],
                ["first_name=last_name", "last_name=first_name"],
                ["first_name=last_name", "birth_date"],
            ],
        )
    )
    records = spark.createDataFrame(
        [
            (1, "ann", "ann", "lee", "2000-01-02"),
            (2, "lee", "lee", "ann", "2000-01-02"),  # 1 swapped
            (3, "ann", "ann", "lee", "1999-01-02"),
            (4, "bo", "bo", "lee", None),
        ],
        "unique_id int, first_name string, first_name_canon string, last_name string, "
        "birth_date string",
    )
    # lee: records 1, 3, 4 (3 pairs); swapped: 1-2, 3-2 (2); crosswise + birth: 1-2 (1)
    assert count_blocked_pairs(records, rules) == [3, 2, 1]


def test_broad_rules_block_only_where_the_records_afford_their_pairs(
    spark: SparkSession,
) -> None:
    from cdp.identity.matching.config import parse_matching
    from cdp.identity.matching.model import plan_blocking

    rules = parse_matching(
        dict(
            MATCHING,
            nicknames_file=None,
            blocking=[["birth_date"]],
            broad_blocking=[["last_name"], ["first_name"]],
            broad_max_pairs=2,
        )
    )
    records = spark.createDataFrame(
        [
            (1, "ann", "ann", "lee", "2000-01-02"),
            (2, "ann", "ann", "lee", "2000-01-02"),
            (3, "bo", "bo", "lee", None),
            (4, "cy", "cy", "lee", None),
        ],
        "unique_id int, first_name string, first_name_canon string, last_name string, "
        "birth_date string",
    )
    planned, counts, notes = plan_blocking(records, rules)
    # lee: 6 pairs, above the budget of 2; ann: 1 pair, within it.
    assert planned.blocking == [["birth_date"], ["first_name"]]
    assert planned.broad_blocking == []
    assert counts == [1, 1]
    assert notes == [
        "broad blocking rule ['last_name'] left out: 6 pairs, more than broad_max_pairs=2"
    ]


def test_person_checks_hold_a_pair_whose_person_level_values_disagree(
    spark: SparkSession,
) -> None:
    from chispa import assert_df_equality

    from cdp.identity.matching.config import PersonCheck
    from cdp.identity.matching.step import person_checks_failed

    checks = [
        PersonCheck(disagree="first_name", unless_agree=["birth_date", "national_id"]),
        PersonCheck(disagree="birth_date", unless_agree=["national_id"]),
    ]
    pairs = spark.createDataFrame(
        [
            # A register entry whose first name was replaced: the birth date vouches for it.
            ("replaced_name", {"first_name": "else", "birth_date": "exact"}),
            # A household: two first names, one birth date missing, nothing personal agrees.
            ("household", {"first_name": "else", "birth_date": "null"}),
            # Father and son of one name at one address: two birth dates.
            ("namesakes", {"first_name": "exact", "birth_date": "else"}),
            # A mistyped birth date beside an agreeing id number.
            ("typed_date", {"first_name": "exact", "birth_date": "else", "national_id": "exact"}),
            # Nothing disagrees outright.
            ("typos", {"first_name": "one edit", "birth_date": "day and month transposed"}),
            # A comparison the pair does not have (a field no source maps) is no disagreement.
            ("no_levels", {}),
        ],
        "pair string, levels map<string,string>",
    )
    got = pairs.select("pair", person_checks_failed(checks).alias("held"))
    expected = spark.createDataFrame(
        [("replaced_name", False), ("household", True), ("namesakes", True),
         ("typed_date", False), ("typos", False), ("no_levels", False)],
        "pair string, held boolean",
    )  # fmt: skip
    # Row order is the input's (a projection); nullability: the expression never yields null.
    assert_df_equality(got, expected, ignore_nullable=True)


def test_records_no_two_of_which_agree_on_a_prior_rule_link_by_exact_rules_only(
    spark: SparkSession, tmp_path: Path
) -> None:
    # A young company: three people, one of them twice under a changed surname (the CRM id
    # says so). No pair agrees on first name, surname and birth date, so Splink's prior is 0
    # (it only warns, and EM then fails on log(0)): matching is not trained this run.
    config = _stage_config(tmp_path)
    records = [
        _row("a", "Katherine", "Wood", date(1980, 3, 4), "f", "12 Oak Road", "LS1 1AA"),
        _row("b", "Katherine", "Wood-Hale", date(1980, 3, 4), "f", "12 Oak Road", "LS1 1AA"),
        _row("c", "Jane", "Smith", date(1975, 1, 10), "f", "1 Elm Street", "LS2 2BB"),
    ]
    records = [r[:2] + ("K1" if r[1] in "ab" else None,) + r[3:] for r in records]
    open_store(spark, config).overwrite(
        "silver/person_records", spark.createDataFrame(records, SCHEMA)
    )
    outcome = run_stage("identity", spark=spark, config=config)
    assert outcome.metrics["matching.notes"] == (
        "probabilistic matching not trained: the prior rules [['first_name', 'last_name', "
        "'birth_date']] find no pair among 3 records; exact rules only this run"
    )
    ids = _customers(spark, config)
    assert ids["a"] == ids["b"] != ids["c"]


def test_a_person_check_stands_down_where_the_model_finds_its_field_noisy() -> None:
    from cdp.identity.matching.config import PersonCheck
    from cdp.identity.matching.model import TrainedModel
    from cdp.identity.matching.step import active_person_checks

    def comparison(name: str, m_else: float) -> dict[str, object]:
        return {
            "output_column_name": name,
            "comparison_levels": [
                {"label_for_charts": "null", "is_null_level": True},
                {"label_for_charts": "exact", "m_probability": 1 - m_else},
                {"label_for_charts": "else", "m_probability": m_else},
            ],
        }

    # Birth dates off by weeks in 45% of one person's record pairs (Splink's fake_1000);
    # first names replaced in 5% (a register's typos).
    model = TrainedModel(
        {"comparisons": [comparison("first_name", 0.05), comparison("birth_date", 0.45)]},
        fingerprint="f",
        records=10,
    )
    checks = [
        PersonCheck(disagree="first_name", unless_agree=["birth_date"]),
        PersonCheck(disagree="birth_date", unless_agree=[], max_m_probability=0.5),
        PersonCheck(disagree="birth_date", unless_agree=[]),
        PersonCheck(disagree="national_id", unless_agree=[]),  # not in the model: kept
    ]
    kept, notes = active_person_checks(checks, model)
    assert kept == [checks[0], checks[1], checks[3]]
    assert notes == [
        "person check on birth_date stood down: the model finds it disagreeing in 45% of "
        "matching pairs (above 20%), too noisy a field to overrule the model"
    ]


def test_a_birth_date_the_model_finds_noisy_no_longer_splits_one_e_mail(
    spark: SparkSession, tmp_path: Path
) -> None:
    """Two records of one person share an e-mail and disagree on the birth date by more than
    a typo. Where birth dates are reliable that is two people behind a family address (the
    e-mail is marked shared); where the matching model finds birth dates disagreeing in 45% of
    one person's pairs (Splink's fake_1000), its person check stands down, and so do merge
    protection's conflicts on the field: the e-mail links them."""
    exact = {
        "identifiers": [
            {"name": "email", "id_type": "email", "fields": ["email"], "priority": 80},
        ],
        "shared_values": {"max_distinct": {"birth_date": 1}},
        "date_conflicts": {"birth_date": {"max_edits": 1}},
    }
    matching = {
        **MATCHING,
        "person_checks": [{"disagree": "birth_date", "unless_agree": []}],
    }
    config = _stage_config(tmp_path, exact=exact, matching_rules=matching)
    rows = [
        ("crm", "g", None, "kim.lee@example.com", "ok", "Kim", "Lee", date(1980, 3, 4),
         "f", "1 Elm Street", "LS2 2BB", "Leeds", False),
        ("crm", "h", None, "kim.lee@example.com", "ok", "Kim", "Lee", date(1980, 11, 23),
         "f", "9 Ash Lane", "LS9 9ZZ", "York", False),
    ]  # fmt: skip
    open_store(spark, config).overwrite(
        "silver/person_records", spark.createDataFrame(rows, SCHEMA)
    )
    registry = Registry(
        config.mlflow_tracking_uri,
        config.env,
        artifact_root=str(Path(config.data_root_uri) / "mlflow" / "artifacts"),
    )
    path = tmp_path / "matching.yaml"

    def run_with(birth_date_else: float) -> tuple[dict[str, str], dict[str, Any]]:
        model = hand_model(config, path, else_m={"birth_date": birth_date_else})
        ModelStore(registry).save(
            model, resolved(config, path), run_name="hand-set", data_versions="test"
        )
        result = run_stage("identity", spark=spark, config=config)
        return _customers(spark, config), result.metrics

    ids, metrics = run_with(0.05)  # reliable birth dates: two people behind one e-mail
    assert ids["g"] != ids["h"]
    assert "merge_protection.relaxed_fields" not in metrics
    ids, metrics = run_with(0.45)
    assert ids["g"] == ids["h"]
    assert metrics["merge_protection.relaxed_fields"] == "birth_date"
