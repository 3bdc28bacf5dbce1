"""Training and scoring (lib/cdp/identity/matching/model.py) on a small hand-made input: the
DuckDB engine's sample, its determinism, and its model scoring on Spark."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp.identity.matching.config import (
    MatchingRules,
    load_matching,
    parse_matching,
    resolve_fields,
)
from cdp.identity.matching.model import (
    CODEGEN_FALLBACK_LOGGERS,
    PROBABILITY_FLOOR,
    SPLINK_TRAINING_LOGGERS,
    NoTrainingPairs,
    quiet_codegen_fallback,
    score,
    smoothed,
    spark_settings_of,
    splink_training_notes,
    train,
    training_sample,
    u_without_matches,
)

NICKNAMES = Path(__file__).resolve().parents[3] / "conf" / "rules" / "nicknames.yaml"
FIRST = ["anna", "ben", "carla", "david", "emma", "farid", "grace", "hugo", "ines", "jonas"]
LAST = ["adams", "baker", "clarke", "dalton", "evans", "fischer", "garcia", "hughes"]
STREETS = ["oak road", "elm street", "ash lane", "pine close", "mill way"]


def _rules(more: tuple[dict[str, str], ...] = (), **training: Any) -> MatchingRules:
    """Names, birth date and location compared (and ``more`` comparisons)."""
    return parse_matching(
        {
            "nicknames_file": str(NICKNAMES),
            "comparisons": [
                {"name": "first_name", "kind": "forename", "field": "first_name"},
                {"name": "last_name", "kind": "surname", "field": "last_name"},
                {"name": "birth_date", "kind": "birth_date", "field": "birth_date"},
                {
                    "name": "location",
                    "kind": "location",
                    "fields": ["address_line1", "postcode", "city"],
                },
                *more,
            ],
            "blocking": [["last_name"], ["birth_date"]],
            "training": {
                "em_blocking": [["birth_date"], ["first_name", "last_name"]],
                "prior_rules": [["first_name", "last_name", "birth_date"]],
                **training,
            },
        },
        origin="m.yaml",
    )


def _typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(word))
    return word[:i] + word[i + 1 :]


def records(spark: SparkSession, people: int = 60) -> DataFrame:
    """Two records per person (the second with a typo in one name half the time), as
    ``prepare.matching_input`` shapes them: ``unique_id``, ``member_key`` and the fields."""
    rng = random.Random(7)
    rows = []
    for p in range(people):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        born = f"19{rng.randrange(40, 99)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
        street = f"{rng.randrange(1, 200)} {rng.choice(STREETS)}"
        postcode = f"LS{rng.randrange(1, 30)} {rng.randrange(1, 9)}AB"
        for k in range(2):
            f, la = first, last
            if k == 1 and rng.random() < 0.5:
                f, la = (_typo(f, rng), la) if rng.random() < 0.5 else (f, _typo(la, rng))
            uid = p * 2 + k
            rows.append(
                (uid, f"person_records|crm|{uid}", f, f, la, born, street, postcode, "leeds")
            )
    return spark.createDataFrame(
        rows,
        "unique_id long, member_key string, first_name string, first_name_canon string, "
        "last_name string, birth_date string, address_line1 string, postcode string, city string",
    )


def test_duckdb_training_is_deterministic_and_scores_on_spark(spark: SparkSession) -> None:
    rules = _rules()
    recs = records(spark)
    first, again = train(spark, recs, rules), train(spark, recs, rules)
    assert first.settings == again.settings  # the same records give the same model
    assert first.records == 120 and len(first.em_sessions) == 2
    text = str(first.settings["comparisons"])
    # Fitted in DuckDB, written in Spark's SQL for scoring.
    assert "jaro_winkler(" in text and "jaro_winkler_similarity" not in text
    assert first.settings["sql_dialect"] == "spark"
    weights = {(r["comparison"], r["level"]): r["match_weight"] for r in first.match_weights()}
    assert weights[("first_name", "exact")] > 0 and weights[("last_name", "exact")] > 0
    # Every level has both probabilities, at least the floor: a level no training pair fell
    # into (the records of one person here share their birth date, so "one character off" has
    # no true pair) scores with the floor, not with Splink's even default spread (+4 bits).
    levels = {
        (c["output_column_name"], lv["label_for_charts"]): lv
        for c in first.settings["comparisons"]
        for lv in c["comparison_levels"]
        if not lv.get("is_null_level")
    }
    for lv in levels.values():
        for key in ("m_probability", "u_probability"):
            assert isinstance(lv[key], float) and lv[key] >= PROBABILITY_FLOOR
    assert levels[("birth_date", "one character off")]["m_probability"] == PROBABILITY_FLOOR
    assert weights[("birth_date", "one character off")] < 0
    pairs = score(spark, recs, first, 0.5).collect()
    same_person = {
        (r["unique_id_l"], r["unique_id_r"])
        for r in pairs
        if r["unique_id_l"] // 2 == r["unique_id_r"] // 2
    }
    assert len(same_person) >= 55  # of 60 true pairs, each with at most one typo


def test_floors_fill_untrained_levels_and_keep_null_levels_and_estimates() -> None:
    saved = {  # a model as Splink saves it: an unobserved level's probability left out
        "comparisons": [
            {
                "output_column_name": "birth_date",
                "comparison_levels": [
                    {"label_for_charts": "null", "is_null_level": True},
                    {"label_for_charts": "exact", "m_probability": 0.9, "u_probability": 0.01},
                    {"label_for_charts": "one character off", "u_probability": 0.0007},
                    {"label_for_charts": "else", "m_probability": 1e-9, "u_probability": 0.99},
                ],
            }
        ]
    }
    levels = smoothed(saved)["comparisons"][0]["comparison_levels"]
    assert levels[0] == {"label_for_charts": "null", "is_null_level": True}
    assert (levels[1]["m_probability"], levels[1]["u_probability"]) == (0.9, 0.01)
    assert (levels[2]["m_probability"], levels[2]["u_probability"]) == (PROBABILITY_FLOOR, 0.0007)
    assert (levels[3]["m_probability"], levels[3]["u_probability"]) == (PROBABILITY_FLOOR, 0.99)
    assert smoothed(saved) == saved  # idempotent: a stored model is floored again on reading


def test_u_is_taken_among_non_matches_where_random_pairs_hold_many_matches() -> None:
    def saved(prior: float) -> dict[str, Any]:
        return {
            "probability_two_random_records_match": prior,
            "comparisons": [
                {
                    "output_column_name": "email",
                    "comparison_levels": [
                        {"label_for_charts": "null", "is_null_level": True},
                        # sampled u: 0.005 x 0.6 from matches + 0.995 x 0.0004 from the others
                        {
                            "label_for_charts": "exact",
                            "m_probability": 0.6,
                            "u_probability": 0.003398,
                        },
                        {"label_for_charts": "similar", "u_probability": 0.0005},  # m unobserved
                        {
                            "label_for_charts": "else",
                            "m_probability": 0.4,
                            "u_probability": 0.996102,
                        },
                    ],
                }
            ],
        }

    levels = u_without_matches(saved(0.005))["comparisons"][0]["comparison_levels"]
    assert levels[0] == {"label_for_charts": "null", "is_null_level": True}
    u = [lv["u_probability"] for lv in levels[1:]]
    assert u[0] == pytest.approx(0.0004, rel=1e-3)  # the non-matches' own agreement
    assert u[1] == pytest.approx(0.0005 / 0.995, rel=1e-3)  # nothing to subtract
    assert sum(u) == pytest.approx(1.0)
    assert [lv["m_probability"] for lv in (levels[1], levels[3])] == [0.6, 0.4]  # m untouched
    # More matches than the sampled u can hold (an overestimated prior): the floor, not < 0.
    floored = u_without_matches(saved(0.01))["comparisons"][0]["comparison_levels"]
    assert floored[1]["u_probability"] == pytest.approx(PROBABILITY_FLOOR, rel=1e-2)
    # A register's prior (1e-6) changes nothing measurable.
    large = u_without_matches(saved(1e-6))["comparisons"][0]["comparison_levels"]
    assert large[1]["u_probability"] == pytest.approx(0.003398, rel=1e-3)


def test_the_training_sample_is_bounded_seeded_and_in_id_order(spark: SparkSession) -> None:
    recs = records(spark, people=200)  # 400 records
    small = _rules(max_records=100)
    ids = [r["unique_id"] for r in training_sample(recs, small, 400).collect()]
    assert 60 <= len(ids) <= 140 and ids == sorted(ids)
    assert ids == [r["unique_id"] for r in training_sample(recs, small, 400).collect()]
    other_seed = _rules(max_records=100, seed=43)
    assert ids != [r["unique_id"] for r in training_sample(recs, other_seed, 400).collect()]
    assert training_sample(recs, _rules(), 400).count() == 400  # under the limit: every record


def test_a_fitted_model_out_of_order_is_refused() -> None:
    rules = _rules()
    from cdp.identity.matching.comparisons import splink_settings

    fitted = splink_settings(rules, "duckdb")
    fitted["comparisons"] = list(reversed(fitted["comparisons"]))
    with pytest.raises(ValueError, match="out of order"):
        spark_settings_of(fitted, rules)


def test_the_codegen_fallback_is_quiet_while_scoring_and_the_levels_come_back(
    spark: SparkSession,
) -> None:
    log4j = spark.sparkContext._jvm.org.apache.logging.log4j  # type: ignore[union-attr]

    def levels() -> list[str]:
        return [str(log4j.LogManager.getLogger(n).getLevel()) for n in CODEGEN_FALLBACK_LOGGERS]

    before = levels()
    assert "OFF" not in before
    with quiet_codegen_fallback(spark):
        assert levels() == ["OFF"] * len(CODEGEN_FALLBACK_LOGGERS)
        assert spark.range(3).selectExpr("sum(id)").collect()[0][0] == 3
    assert levels() == before
    # Restored when the block fails, too.
    with pytest.raises(ZeroDivisionError), quiet_codegen_fallback(spark):
        _ = 1 / 0
    assert levels() == before


def test_splinks_per_level_training_warnings_become_one_list(
    caplog: pytest.LogCaptureFixture,
) -> None:
    em, training, sampling = (logging.getLogger(n) for n in SPLINK_TRAINING_LOGGERS)
    untrained = (
        "WARNING:\nLevel one digit off on comparison phone not observed in dataset, "
        "unable to train m value\n"
    )
    default_pairs = "You are using the default value for `max_pairs`, which may be too small"
    with caplog.at_level(logging.WARNING), splink_training_notes() as notes:
        em.warning(untrained)
        em.warning(untrained.replace(" m value", " u value"))
        em.warning(untrained)  # the same level twice is listed once
        training.warning(default_pairs)
        sampling.warning("[EM sampling] %s", "Probe returned zero blocked pairs; skipping sampling")
        em.warning("EM converged after 4 iterations")  # anything else passes
    assert notes.untrained == ["phone: one digit off (m)", "phone: one digit off (u)"]
    assert [r.getMessage() for r in caplog.records] == ["EM converged after 4 iterations"]
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # outside the block Splink speaks for itself again
        em.warning(untrained)
    assert [r.getMessage() for r in caplog.records] == [untrained]


def test_the_prior_rules_recall_is_read_off_the_fitted_model() -> None:
    from cdp.identity.matching.model import implied_prior_recall

    rules = _rules()  # the prior rule: first name, last name and birth date all equal

    def comparison(name: str, **m: float) -> dict[str, Any]:
        levels = [{"label_for_charts": "null", "is_null_level": True}]
        levels += [{"label_for_charts": k, "m_probability": v} for k, v in m.items()]
        return {"output_column_name": name, "comparison_levels": levels}

    fitted = {
        "comparisons": [
            # A forename is blocked on through its nickname root: both levels find the pair.
            comparison("first_name", exact=0.5, nickname=0.1, **{"one edit": 0.2, "else": 0.2}),
            comparison("last_name", exact=0.8, **{"else": 0.2}),
            comparison("birth_date", exact=0.4, **{"else": 0.6}),
        ]
    }
    present = {"first_name": 1.0, "last_name": 0.9, "birth_date": 0.5}
    # (1.0^2 x 0.6) x (0.9^2 x 0.8) x (0.5^2 x 0.4)
    assert implied_prior_recall(fitted, rules, present) == pytest.approx(0.6 * 0.648 * 0.1)
    # A rule over a location's part has no exact level to read: the configured guess stands.
    on_postcode = rules.model_copy(
        update={"training": rules.training.model_copy(update={"prior_rules": [["postcode"]]})}
    )
    assert implied_prior_recall(fitted, on_postcode, present) is None
    # Bounded below: a rule that the model says never fires still finds some pairs.
    assert implied_prior_recall(fitted, rules, {"first_name": 0.01}) == 0.01


def test_the_spark_engine_estimates_the_prior_from_its_fitted_model(
    spark: SparkSession, caplog: pytest.LogCaptureFixture
) -> None:
    from cdp.identity.matching.model import train

    caplog.set_level(logging.INFO, logger="cdp.identity.matching.model")
    model = train(spark, records(spark, people=40), _rules(engine="spark"))
    prior = model.settings["probability_two_random_records_match"]
    # 40 matching pairs among 80 records' 3,160: the estimate (0.0115 when written) is within
    # a fifth of the truth, where the rule finds only the pairs without a name typo.
    assert prior == pytest.approx(40 / 3160, rel=0.2)
    said = [r.getMessage() for r in caplog.records if "prior rules find" in r.getMessage()]
    assert len(said) == 1 and "(first guess 70%)" in said[0]


# A town of namesakes: four first names (gender follows them) and three surnames for every
# person, e-mails made from the name, two records each (one in five moved between them).
NAMESAKE_FIRST = [("anna", "f"), ("ben", "m"), ("carla", "f"), ("david", "m")]
SHIPPED_MATCHING = Path(__file__).resolve().parents[3] / "conf" / "rules" / "matching.yaml"


def namesakes(spark: SparkSession, people: int) -> DataFrame:
    rng = random.Random(7)
    rows = []

    def address() -> tuple[str, str]:
        street = f"{rng.randrange(1, 200)} {rng.choice(STREETS)}"
        return street, f"LS{rng.randrange(1, 30)} {rng.randrange(1, 9)}AB"

    for p in range(people):
        (first, gender), last = rng.choice(NAMESAKE_FIRST), rng.choice(LAST[:3])
        born = f"19{rng.randrange(40, 99)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
        email = f"{first}.{last}{rng.randrange(1, 99)}@{rng.choice(['mail.com', 'post.net'])}"
        home = address()
        for k in range(2):
            uid = p * 2 + k
            street, postcode = home if k == 0 or rng.random() < 0.8 else address()
            rows.append(
                (
                    uid,
                    f"person_records|crm|{uid}",
                    first,
                    first,
                    last,
                    born if rng.random() < 0.7 else None,
                    street,
                    postcode,
                    "leeds",
                    email if rng.random() < 0.8 else None,
                    gender,
                )
            )
    return spark.createDataFrame(
        rows,
        "unique_id long, member_key string, first_name string, first_name_canon string, "
        "last_name string, birth_date string, address_line1 string, postcode string, "
        "city string, email string, gender string",
    )


def _namesake_rules(em_blocking: list[list[str]]) -> MatchingRules:
    return _rules(
        (
            {"name": "email", "kind": "email", "field": "email"},
            {"name": "gender", "kind": "exact", "field": "gender"},
        ),
        em_blocking=em_blocking,
    )


def _m(model: Any, comparison: str) -> dict[str, float]:
    (found,) = [c for c in model.settings["comparisons"] if c["output_column_name"] == comparison]
    return {
        lv["label_for_charts"]: lv["m_probability"]
        for lv in found["comparison_levels"]
        if not lv.get("is_null_level")
    }


def test_namesakes_do_not_untrain_the_birth_date(spark: SparkSession) -> None:
    """The shipped EM passes train the birth date where namesakes far outnumber a person's
    own records: blocked on the name alone, a pass holds 1,000 true pairs among about 170,000
    namesake pairs that agree on gender and on e-mails made from the name, and EM takes them
    for matches (the generator's 100k persons: whole-stage precision 0.86)."""
    recs = namesakes(spark, people=1000)
    shipped = load_matching(SHIPPED_MATCHING).training.em_blocking
    model = train(spark, recs, _namesake_rules(shipped))
    birth = _m(model, "birth_date")
    # A person's two records carry the same birth date: agreeing is the rule among matches.
    assert birth["exact"] > 0.5 and birth["else"] < 0.45
    truth = 1000 / (2000 * 1999 / 2)
    assert model.settings["probability_two_random_records_match"] < 3 * truth
    # The name alone, as shipped before: the birth date says nothing, the prior is 30x too high.
    by_name = train(spark, recs, _namesake_rules([["birth_date"], ["first_name", "last_name"]]))
    assert _m(by_name, "birth_date")["exact"] < 0.1
    assert by_name.settings["probability_two_random_records_match"] > 10 * truth


def test_an_em_pass_whose_levels_underflow_ends_before_the_underflow(
    spark: SparkSession, caplog: pytest.LogCaptureFixture
) -> None:
    """Gender never disagrees within a person here, and EM drives that level's m-probability
    geometrically to 0.0, which Splink refuses mid-pass (a ValueError that stopped the whole
    identity stage): the pass runs again with half the iterations until it ends."""
    caplog.set_level(logging.INFO, logger="cdp.identity.matching.model")
    shipped = load_matching(SHIPPED_MATCHING).training.em_blocking
    model = train(spark, namesakes(spark, people=400), _namesake_rules(shipped))
    said = [r.getMessage() for r in caplog.records]
    assert any("probability underflowed; again with" in m for m in said)
    assert [s["blocking"] for s in model.em_sessions] == shipped
    assert all(s["iterations"] >= 1 and "left_out" not in s for s in model.em_sessions)
    weights = {(r["comparison"], r["level"]): r["match_weight"] for r in model.match_weights()}
    assert weights[("first_name", "exact")] > 0 and weights[("birth_date", "exact")] > 0
    assert weights[("gender", "else")] < 0


def test_a_pass_without_pairs_is_left_out_and_no_pass_at_all_trains_nothing(
    spark: SparkSession,
) -> None:
    recs = records(spark, people=40).withColumn("email", F.lit(None).cast("string"))
    rules = _namesake_rules([["email"], ["birth_date"]])
    rules = rules.model_copy(
        update={"comparisons": [c for c in rules.comparisons if c.name != "gender"]}
    )
    model = train(spark, recs, rules)
    assert model.em_sessions[0] == {
        "blocking": ["email"],
        "iterations": 0,
        "left_out": "it blocks no pair of records",
    }
    assert model.em_sessions[1]["iterations"] >= 1
    nothing = rules.model_copy(
        update={"training": rules.training.model_copy(update={"em_blocking": [["email"]]})}
    )
    with pytest.raises(NoTrainingPairs, match="every EM pass"):
        train(spark, recs, nothing)


def test_a_company_without_birth_dates_trains_its_location_among_shared_e_mails(
    spark: SparkSession,
) -> None:
    """No birth date: the shipped fallbacks train the names and the location on records that
    share an e-mail, not among namesakes, where a shared street and postcode came out at
    m = 0.005 (this data: four in five of a person's record pairs share them)."""
    recs = namesakes(spark, people=1000).drop("birth_date")
    fields = {"first_name", "last_name", "address_line1", "postcode", "city", "email", "gender"}
    shipped, _ = resolve_fields(load_matching(SHIPPED_MATCHING), {"person_records": fields})
    assert shipped.training.em_blocking == [["first_name", "last_name", "postcode"], ["email"]]
    rules = _namesake_rules(shipped.training.em_blocking)
    rules = rules.model_copy(
        update={
            "comparisons": [c for c in rules.comparisons if c.name != "birth_date"],
            "training": rules.training.model_copy(
                update={"prior_rules": shipped.training.prior_rules}
            ),
        }
    )
    location = _m(train(spark, recs, rules), "location")
    assert location["same street and postcode"] > 0.3
    by_name = rules.model_copy(
        update={
            "training": rules.training.model_copy(
                update={"em_blocking": [["first_name", "last_name"], ["postcode"]]}
            )
        }
    )
    assert _m(train(spark, recs, by_name), "location")["same street and postcode"] < 0.05
