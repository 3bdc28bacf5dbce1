"""Matching rules: YAML -> typed rules -> Splink settings (no Spark needed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from cdp.config import ConfigError
from cdp.identity.matching.comparisons import build_comparisons, splink_settings
from cdp.identity.matching.config import load_matching, parse_matching, resolve_fields

CONF = Path(__file__).resolve().parents[3] / "conf" / "rules" / "matching.yaml"


def _rules(**over):
    base = {
        "comparisons": [
            {"name": "first_name", "kind": "forename", "field": "first_name"},
            {"name": "last_name", "kind": "surname", "field": "last_name"},
            {"name": "birth_date", "kind": "birth_date", "field": "birth_date"},
        ],
        "blocking": [["last_name", "birth_date"]],
    }
    base.update(over)
    return parse_matching(base, origin="m.yaml")


def test_shipped_config_loads_and_every_comparison_is_optional() -> None:
    rules = load_matching(CONF)
    assert rules.comparisons and all(c.optional for c in rules.comparisons)
    assert 0 < rules.thresholds.review <= rules.thresholds.match < 1


def test_shipped_config_compares_a_birth_place_only_where_a_source_maps_one() -> None:
    shipped = load_matching(CONF)
    names = {"first_name", "last_name", "birth_date", "postcode"}
    without, _ = resolve_fields(shipped, {"person_records": names})
    assert "birth_place" not in [c.name for c in without.comparisons]
    assert not any("birth_place" in rule for rule in without.blocking + without.broad_blocking)
    mapped, _ = resolve_fields(shipped, {"person_records": names | {"birth_place"}})
    (place,) = [c for c in mapped.comparisons if c.name == "birth_place"]
    # Compared like a city (folded words, a similar level) with rare places weighing more,
    # counted toward min_fields, and never part of the where-they-live location.
    assert place.kind == "city" and place.term_frequency and place.identifying
    built = {c.name: c for c in build_comparisons(mapped)}
    assert [lv.label for lv in built["birth_place"].levels] == ["exact", "similar"]
    assert built["birth_place"].levels[0].tf
    assert all("birth_place" not in c.columns() for c in mapped.comparisons if c.kind == "location")
    assert ["first_name", "last_name", "birth_place"] in mapped.blocking
    assert ["last_name", "birth_place"] in mapped.broad_blocking
    assert mapped.fingerprint() != without.fingerprint()


def test_forename_levels_know_nicknames_and_swaps() -> None:
    forename, surname, birth = build_comparisons(_rules())
    labels = [lv.label for lv in forename.levels]
    assert labels[:3] == ["exact", "nickname", "swapped"]
    assert (
        "first_name_canon_l = first_name_canon_r"
        in forename.to_splink()["comparison_levels"][2]["sql_condition"]
    )
    assert "last_name_r" in forename.to_splink()["comparison_levels"][3]["sql_condition"]
    assert "swapped" in [lv.label for lv in surname.levels]
    assert [lv.label for lv in birth.levels] == [
        "exact",
        "day and month transposed",
        "year off",
        "one character off",
    ]


def test_settings_translate_per_dialect() -> None:
    spark = splink_settings(_rules(), "spark")
    duck = splink_settings(_rules(), "duckdb")
    sql_spark = str(spark["comparisons"])
    sql_duck = str(duck["comparisons"])
    assert "jaro_winkler(" in sql_spark and "jaro_winkler_similarity(" in sql_duck
    assert spark["link_type"] == "dedupe_only"
    # first names block through their nickname root
    assert spark["blocking_rules_to_generate_predictions"][0]["blocking_rule"] == (
        "l.last_name = r.last_name AND l.birth_date = r.birth_date"
    )
    rules = _rules(blocking=[["first_name", "birth_date"]])
    br = splink_settings(rules)["blocking_rules_to_generate_predictions"][0]["blocking_rule"]
    assert br == "l.first_name_canon = r.first_name_canon AND l.birth_date = r.birth_date"
    levels = spark["comparisons"][0]["comparison_levels"]
    assert levels[0]["is_null_level"] and levels[-1]["sql_condition"] == "ELSE"


def test_level_labels_follow_splink_gamma_order() -> None:
    birth = build_comparisons(_rules())[2]
    labels = birth.level_labels()
    assert labels[-1] == "null" and labels[0] == "else"
    assert labels[4] == "exact" and labels[1] == "one character off"


@pytest.mark.parametrize(
    "left, right, expected",
    [
        ("1959-03-31", "1959-03-31", "exact"),
        ("1945-02-08", "1945-08-02", "day and month transposed"),
        ("1959-03-31", "1960-03-31", "year off"),  # one year apart, two digits differ
        ("1970-03-31", "1969-03-31", "year off"),
        ("1959-03-31", "1958-03-31", "year off"),
        ("1959-03-31", "1969-03-31", "year off"),  # one digit mistyped
        ("1959-03-31", "1959-03-21", "one character off"),
        ("1959-03-31", "1961-03-31", "else"),  # two years apart
        ("1959-03-31", "1957-04-30", "else"),
        ("1959-03-31", None, "null"),
    ],
)
def test_birth_date_levels_on_duckdb(left: str, right: str | None, expected: str) -> None:
    duckdb = pytest.importorskip("duckdb")
    levels = splink_settings(_rules(), "duckdb")["comparisons"][2]["comparison_levels"]
    labels = build_comparisons(_rules())[2].level_labels()  # by gamma: -1 null, 0 else ...
    gammas = [-1, *range(len(levels) - 2, -1, -1)]  # Splink's order: null, best ... else
    row = "SELECT ?::DATE::VARCHAR AS birth_date_l, ?::DATE::VARCHAR AS birth_date_r"
    got = None
    for gamma, level in zip(gammas, levels, strict=True):
        cond = level["sql_condition"]
        if (
            cond == "ELSE"
            or duckdb.execute(f"SELECT ({cond}) FROM ({row})", [left, right]).fetchone()[0]
        ):
            got = labels[gamma]
            break
    assert got == expected


def _surname_and_location(**location: object) -> list[dict[str, object]]:
    """A surname and a location comparison (street line, postcode, city)."""
    return [
        {"name": "last_name", "kind": "surname", "field": "last_name"},
        {
            "name": "location",
            "kind": "location",
            "fields": ["address_line1", "postcode", "city"],
            **location,
        },
    ]


def test_location_is_one_comparison_over_three_fields() -> None:
    rules = _rules(
        comparisons=_surname_and_location(term_frequency=True),
        blocking=[["last_name", "postcode"]],
    )
    settings = splink_settings(rules)
    location = settings["comparisons"][1]
    null_sql = location["comparison_levels"][0]["sql_condition"]
    assert "address_line1_l IS NULL" in null_sql and "city_r IS NULL" in null_sql
    tf_cols = {lv.get("tf_adjustment_column") for lv in location["comparison_levels"]}
    assert {"postcode", "city"} <= tf_cols


@pytest.mark.parametrize(
    "left, right, expected",
    [
        (("1 mill ln", "LS1 1AA", "leeds"), ("1 mill ln", "LS1 1AA", "leeds"), "same street and postcode"),
        (("1 mill ln", None, "leeds"), ("1 mill ln", "LS1 1AA", "leeds"), "same street"),
        # A street line alone on one side: nothing disagrees (it was ELSE).
        (("1 mill ln", None, None), ("1 mill ln", "LS1 1AA", "leeds"), "same street, nothing else to compare"),
        (("1 mill ln", "LS2 2BB", None), ("1 mill ln", "LS1 1AA", "leeds"), "else"),
        (("1 mill lane", "LS1 1AA", None), ("1 mill ln", "LS1 1AA", "leeds"), "similar street, same postcode"),
        (("9 oak rd", "LS1 1AA", None), ("1 mill ln", "LS1 1AA", "leeds"), "same postcode"),
        ((None, None, None), ("1 mill ln", "LS1 1AA", "leeds"), "null"),
    ],
)  # fmt: skip
def test_location_levels_on_duckdb(left: tuple, right: tuple, expected: str) -> None:
    duckdb = pytest.importorskip("duckdb")
    rules = _rules(
        comparisons=[
            {
                "name": "location",
                "kind": "location",
                "fields": ["address_line1", "postcode", "city"],
            }
        ],
        blocking=[["postcode"]],
    )
    levels = splink_settings(rules, "duckdb")["comparisons"][0]["comparison_levels"]
    labels = build_comparisons(rules)[0].level_labels()
    gammas = [-1, *range(len(levels) - 2, -1, -1)]
    names = ("address_line1", "postcode", "city")
    row = "SELECT " + ", ".join(f"?::VARCHAR AS {n}_{side}" for side in ("l", "r") for n in names)
    got = None
    for gamma, level in zip(gammas, levels, strict=True):
        cond = level["sql_condition"]
        if (
            cond == "ELSE"
            or duckdb.execute(f"SELECT ({cond}) FROM ({row})", [*left, *right]).fetchone()[0]
        ):
            got = labels[gamma]
            break
    assert got == expected


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"thresholds": {"match": 1.5}}, "m.yaml: thresholds.match"),
        ({"thresholds": {"match": 0.0}}, "m.yaml: thresholds.match"),
        ({"thresholds": {"match": 0.8, "review": 0.9}}, "review"),
        ({"blocking": [["email"]]}, "m.yaml: blocking[0]: field(s) ['email'] have no comparison"),
        ({"blocking": [[]]}, "blocking[0]: an empty rule"),
        ({"max_pairs": 0}, "m.yaml: max_pairs"),
    ],
)
def test_bad_rules_fail_naming_file_and_key(over: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        _rules(**over)


def test_required_comparison_on_unmapped_field_fails_optional_is_skipped() -> None:
    rules = _rules(
        comparisons=[
            {"name": "last_name", "kind": "surname", "field": "last_name"},
            {"name": "birth_date", "kind": "birth_date", "field": "birth_date"},
            {"name": "nino", "kind": "identifier", "field": "national_id"},
        ],
        blocking=[["last_name", "birth_date"], ["national_id"]],
    )
    mapped = {"person_records": {"last_name", "birth_date"}}
    with pytest.raises(ConfigError, match=r"m.yaml: comparisons\[2\] \(nino\): no enabled source"):
        resolve_fields(rules, mapped)
    data = rules.model_dump()
    data["comparisons"][2]["optional"] = True
    data.pop("origin")
    reduced, notes = resolve_fields(parse_matching(data, origin="m.yaml"), mapped)
    assert [c.name for c in reduced.comparisons] == ["last_name", "birth_date"]
    assert reduced.blocking == [["last_name", "birth_date"]]
    assert any("nino" in n for n in notes)


def test_fingerprint_ignores_thresholds_but_not_comparisons(tmp_path: Path) -> None:
    a = _rules()
    b = _rules(thresholds={"match": 0.95, "review": 0.4})
    c = _rules(min_fields=3)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    p = tmp_path / "m.yaml"
    p.write_text(yaml.safe_dump({"comparisons": [], "blocking": []}))
    with pytest.raises(ConfigError, match=str(p)):
        load_matching(p)


def test_a_newly_mapped_field_of_a_location_changes_the_fingerprint() -> None:
    """A location comparison stays when a source maps only its postcode, its city level then
    untrained: once a source maps a city the model must be trained again, not reused."""
    rules = _rules(
        comparisons=_surname_and_location(),
        blocking=[["last_name", "postcode"]],
    )
    postcode_only, _ = resolve_fields(rules, {"person_records": {"last_name", "postcode"}})
    with_city, _ = resolve_fields(rules, {"person_records": {"last_name", "postcode", "city"}})
    assert [c.name for c in postcode_only.comparisons] == [c.name for c in with_city.comparisons]
    assert postcode_only.mapped_fields == ["last_name", "postcode"]
    assert postcode_only.fingerprint() != with_city.fingerprint()
    # The same mapping twice: the same model.
    again, _ = resolve_fields(rules, {"person_records": {"postcode", "last_name"}})
    assert again.fingerprint() == postcode_only.fingerprint()


def test_crosswise_blocking_is_applied_both_ways_on_raw_values() -> None:
    rules = _rules(
        blocking=[
            ["first_name=last_name", "birth_date"],
            ["first_name=last_name", "last_name=first_name"],
            ["initial(first_name)", "initial(last_name)", "year(birth_date)"],
        ]
    )
    got = [
        b["blocking_rule"] for b in splink_settings(rules)["blocking_rules_to_generate_predictions"]
    ]
    assert got[:3] == [
        "l.first_name = r.last_name AND l.birth_date = r.birth_date",
        "l.last_name = r.first_name AND l.birth_date = r.birth_date",
        # symmetric already: one rule, no mirror
        "l.first_name = r.last_name AND l.last_name = r.first_name",
    ]
    # derived keys: a forename's initial is its nickname root's (Bob -> robert -> r)
    assert got[3] == (
        "substr(l.first_name_canon, 1, 1) = substr(r.first_name_canon, 1, 1) AND "
        "substr(l.last_name, 1, 1) = substr(r.last_name, 1, 1) AND "
        "substr(l.birth_date, 1, 4) = substr(r.birth_date, 1, 4)"
    )


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"blocking": [["first_name=email"]]}, "blocking[0]: field(s) ['email'] have no"),
        ({"blocking": [["first_name=Last"]]}, "an entry is field, field=field or fn(field)"),
        ({"blocking": [["soundex(last_name)"]]}, "fn one of ['initial', 'year']"),
        (
            {"training": {"em_blocking": [["first_name=last_name"]]}},
            "training.em_blocking[0]: ['first_name=last_name']: crosswise and derived",
        ),
    ],
)
def test_bad_crosswise_blocking_fails_naming_the_key(over: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        _rules(**over)


def test_a_crosswise_rule_is_dropped_with_an_unmapped_field() -> None:
    rules = _rules(
        comparisons=[
            {"name": "first_name", "kind": "forename", "field": "first_name"},
            {"name": "last_name", "kind": "surname", "field": "last_name", "optional": True},
        ],
        blocking=[["first_name"], ["first_name=last_name", "last_name=first_name"]],
        training={"em_blocking": [["first_name"]], "prior_rules": [["first_name"]]},
    )
    reduced, _ = resolve_fields(rules, {"person_records": {"first_name"}})
    assert reduced.blocking == [["first_name"]]


def test_scored_links_exempt_from_guards_must_be_the_weakest_tier() -> None:
    from cdp.identity.rules import load_rules
    from cdp.identity.stage import check_matching_tier

    exact = load_rules(CONF.parent / "identity.yaml")
    shipped = load_matching(CONF)
    assert shipped.guards == "uncompared" and shipped.priority == 10
    assert shipped.guard_exemptions() >= {"first_name", "birth_date", "national_id", "email"}
    check_matching_tier(shipped, exact)  # below every exact rule: accepted
    # A site's copy from before the guards setting (tier 30, above the device rules at 20).
    old = shipped.model_copy(update={"priority": 30, "origin": "site/matching.yaml"})
    with pytest.raises(ConfigError, match=r"site/matching.yaml: priority 30 .*'cookie', 'device'"):
        check_matching_tier(old, exact)
    # A file that does not say (a site's copy from before the setting) keeps every guard.
    assert _rules().guards == "all" and _rules().guard_exemptions() == frozenset()
    # With every guard holding its links, any tier is fine.
    check_matching_tier(old.model_copy(update={"guards": "all"}), exact)
    assert old.model_copy(update={"guards": "all"}).guard_exemptions() == frozenset()


def test_person_checks_name_comparisons_and_follow_the_mapped_fields() -> None:
    with pytest.raises(ConfigError, match=r"m.yaml: person_checks\[0\]: \['national_id'\]"):
        _rules(person_checks=[{"disagree": "first_name", "unless_agree": ["national_id"]}])
    rules = _rules(
        comparisons=[
            {"name": n, "kind": k, "field": n, "optional": True}
            for n, k in [
                ("first_name", "forename"),
                ("last_name", "surname"),
                ("birth_date", "birth_date"),
            ]
        ],  # fmt: skip
        blocking=[["last_name"]],
        person_checks=[
            {"disagree": "first_name", "unless_agree": ["birth_date", "last_name"]},
            {"disagree": "birth_date", "unless_agree": ["last_name"]},
        ],
    )
    # A company without birth dates: the check on them goes, and so does the vouching.
    reduced, _ = resolve_fields(rules, {"person_records": {"first_name", "last_name"}})
    assert [(c.disagree, c.unless_agree) for c in reduced.person_checks] == [
        ("first_name", ["last_name"])
    ]


def test_a_field_every_training_pass_blocks_on_gets_a_fallback_pass() -> None:
    shipped = load_matching(CONF)
    # A voter file: names, a birth year, an address; no birth date, so only the pass on names
    # and postcode is left and it cannot train the names.
    voters = {"first_name", "last_name", "birth_year", "address_line1", "city", "postcode"}
    reduced, notes = resolve_fields(shipped, {"person_records": voters})
    assert reduced.training.em_blocking == [["first_name", "last_name", "postcode"], ["birth_year"]]
    assert any("['birth_year'] added so that 'first_name' is trained" in n for n in notes)
    # Without a birth year the next usable fallback for the names, a postcode; the location
    # then has no pass (both block on its postcode): the names alone.
    no_year, _ = resolve_fields(shipped, {"person_records": voters - {"birth_year"}})
    assert no_year.training.em_blocking == [
        ["first_name", "last_name", "postcode"],
        ["postcode"],
        ["first_name", "last_name"],
    ]
    # A register with birth dates trains every field with the configured passes alone.
    full, _ = resolve_fields(shipped, {"person_records": voters | {"birth_date"}})
    assert full.training.em_blocking == [["birth_date"], ["first_name", "last_name", "postcode"]]
    # Without a postcode the birth date is trained among namesakes of one city, and without
    # a city either among namesakes (a small register's names and birth dates alone).
    no_postcode = {"first_name", "last_name", "birth_date", "city", "email"}
    by_city, _ = resolve_fields(shipped, {"person_records": no_postcode})
    assert by_city.training.em_blocking == [["birth_date"], ["first_name", "last_name", "city"]]
    names_only, _ = resolve_fields(
        shipped, {"person_records": {"first_name", "last_name", "birth_date"}}
    )
    assert names_only.training.em_blocking == [["birth_date"], ["first_name", "last_name"]]
    # A CRM without birth dates: names and location trained among records sharing a phone
    # (before the name alone, whose namesakes a large company has many of).
    crm = {"first_name", "last_name", "address_line1", "city", "postcode", "phone", "email"}
    by_phone, _ = resolve_fields(shipped, {"person_records": crm})
    assert by_phone.training.em_blocking == [["first_name", "last_name", "postcode"], ["phone"]]


def test_with_no_usable_prior_rule_the_first_usable_fallback_estimates_the_prior() -> None:
    shipped = load_matching(CONF)
    crm = {"first_name", "last_name", "address_line1", "city", "postcode", "email"}
    reduced, notes = resolve_fields(shipped, {"person_records": crm})
    assert reduced.training.prior_rules == [["first_name", "last_name", "postcode"]]
    assert any("from prior_fallback" in n for n in notes)
    # A usable prior rule leaves the fallback out.
    dated, _ = resolve_fields(shipped, {"person_records": crm | {"birth_date"}})
    assert dated.training.prior_rules == [["first_name", "last_name", "birth_date"]]
