"""Identity resolution: merge protection (pure functions on inline frames), stable ids through
the stage (real Delta tables), rule loading and the evaluation metrics."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from functools import reduce
from pathlib import Path
from typing import Any

import pytest
import yaml
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp import faults
from cdp.config import CdpConfig, ConfigError, load_config
from cdp.identity.checkpoint import cut
from cdp.identity.components import connected_components
from cdp.identity.evaluate import evaluate_identity
from cdp.identity.limits import Caps
from cdp.identity.links import identifier_links
from cdp.identity.matching import links as match_links
from cdp.identity.nodes import RECORD, prepare_records, record_attributes, record_nodes
from cdp.identity.resolution import Resolution, _resolve_tiered, resolve
from cdp.identity.rules import parse_rules
from cdp.identity.stable import derived_id
from cdp.identity.stage import (
    HISTORY_TABLE,
    IDENTIFIERS_TABLE,
    MAP_TABLE,
    REJECTED_TABLE,
    build_links,
)
from cdp.runner import StageFailed, run_stage
from cdp.storage import open_store

PERSON_SCHEMA = (
    "source string, source_record_id string, crm_id string, loyalty_id string, "
    "customer_id string, anonymous_id string, device_id string, email string, "
    "email_status string, phone string, phone_status string, first_name string, "
    "last_name string, birth_date date, postcode string, gender string, is_deleted boolean"
)
EVENT_SCHEMA = (
    "source string, source_record_id string, event_type string, anonymous_id string, "
    "device_id string, customer_id string, email string, email_status string, "
    "phone string, phone_status string, is_deleted boolean"
)

BASE_RULES: dict[str, Any] = {
    "identifiers": [
        {"name": "crm_id", "id_type": "crm_id", "fields": ["crm_id"], "priority": 100},
        {"name": "web_account", "id_type": "customer_id", "fields": ["customer_id"],
         "priority": 100},
        {"name": "email", "id_type": "email", "fields": ["email"], "priority": 80},
        {"name": "phone", "id_type": "phone", "fields": ["phone"], "priority": 60},
    ],
    "event_links": [
        {"name": "login_cookie", "from": "anonymous_id", "to": ["customer_id"], "priority": 20},
    ],
    "blocklist": {
        "values": {"*": ["n/a", "unknown"], "email": ["test@test.com"]},
        "patterns": {"phone": ["^\\+?(\\d)\\1+$"]},
    },
    "shared_values": {"max_records": 4, "max_distinct": {"birth_date": 1},
                      "max_linked": {"customer_id": 1}},
    "limits": {"crm_id": 1},
    "max_component_records": 50,
}  # fmt: skip


@contextmanager
def shuffle_partitions(spark: SparkSession, n: int) -> Iterator[None]:
    """Shuffles into ``n`` partitions for a block: the test environment uses one (fewer
    tasks on tiny inputs), and ids and groups must not depend on it."""
    previous = spark.conf.get("spark.sql.shuffle.partitions")
    spark.conf.set("spark.sql.shuffle.partitions", str(n))
    try:
        yield
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", previous)


def rules_with(**changes: Any) -> Any:
    data = yaml.safe_load(yaml.safe_dump(BASE_RULES))
    data.update(changes)
    return parse_rules(data)


def person(rid: str, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"source": "crm", "source_record_id": rid, "is_deleted": False}
    row.update(fields)
    for f in ("email", "phone"):
        row.setdefault(f"{f}_status", "ok" if row.get(f) else "empty")
    return row


def persons(spark: SparkSession, *rows: dict[str, Any]) -> DataFrame:
    names = [c.split()[0] for c in PERSON_SCHEMA.split(", ")]
    return spark.createDataFrame([tuple(r.get(n) for n in names) for r in rows], PERSON_SCHEMA)


def groups(spark: SparkSession, frames: dict[str, DataFrame], rules: Any, events: Any = None):
    """Resolve and return ({frozenset of record ids}, resolution)."""
    records = record_nodes(frames)
    links = build_links(frames, events, rules)
    attrs = record_attributes(frames, rules.attribute_fields())
    accepted = links.where(F.col("reason").isNull())
    res = resolve(records, accepted, rules, attributes=attrs, engine="dataframe")
    labelled = records.join(
        res.labels.where(F.col("id_type") == RECORD).select("node", "comp"), "node"
    )
    out: dict[int, set[str]] = {}
    for r in labelled.collect():
        out.setdefault(r["comp"], set()).add(r["source_record_id"])
    return {frozenset(g) for g in out.values()}, res, links


# --------------------------------------------------------------------------------------------
# Merge protection


def test_junk_null_empty_and_invalid_values_never_link(spark: SparkSession) -> None:
    df = persons(
        spark,
        person("1", email="test@test.com", phone="+1111111111"),
        person("2", email="test@test.com", phone="+1111111111"),
        person("3", email=None, phone=None),
        person("4", email=None, phone=None),
        person("5", email="", crm_id="  "),
        person("6", email="", crm_id="  "),
        person("7", email="bad@x.com", email_status="invalid"),
        person("8", email="bad@x.com", email_status="invalid"),
        person("9", email="unknown"),
        person("10", email="UNKNOWN"),
        person("11", email="ok@x.com"),
        person("12", email="ok@x.com"),
    )
    got, _, links = groups(spark, {"person_records": df}, rules_with())
    assert got == {frozenset({str(i)}) for i in range(1, 11)} | {frozenset({"11", "12"})}
    reasons = {(r["id_type"], r["reason"]) for r in links.where("reason IS NOT NULL").collect()}
    assert reasons == {("email", "blocklist:value"), ("phone", "blocklist:pattern")}


def test_shared_value_is_not_used_as_an_edge(spark: SparkSession) -> None:
    df = persons(
        spark,
        # One e-mail behind two birth dates: a household address, not one person.
        person("1", email="family@x.com", birth_date=date(1970, 1, 1), phone="+441234500001"),
        person("2", email="family@x.com", birth_date=date(1975, 5, 5)),
        # One phone on five records: more than max_records (4).
        *[person(f"p{i}", phone="+441234500099") for i in range(5)],
        # Same e-mail, same birth date (or none): a normal link.
        person("3", email="me@x.com", birth_date=date(1980, 1, 1)),
        person("4", email="me@x.com"),
    )
    got, _, links = groups(spark, {"person_records": df}, rules_with())
    assert frozenset({"1", "2"}) not in got and frozenset({"1"}) in got
    assert all(frozenset({f"p{i}"}) in got for i in range(5))
    assert frozenset({"3", "4"}) in got
    reasons = {r["reason"] for r in links.where("reason IS NOT NULL").collect()}
    assert reasons == {"shared:distinct_birth_date", "shared:records"}


def test_two_genders_behind_a_value_mark_it_shared_but_unknown_is_no_evidence(
    spark: SparkSession,
) -> None:
    df = persons(
        spark,
        person("1", email="couple@x.com", gender="male"),
        person("2", email="couple@x.com", gender="female"),
        person("3", email="solo@x.com", gender="female"),
        person("4", email="solo@x.com", gender="unknown"),
        person("5", email="solo@x.com"),
    )
    rules = rules_with(
        shared_values={"max_records": 4, "max_distinct": {"birth_date": 1, "gender": 1}}
    )
    got, _, links = groups(spark, {"person_records": df}, rules)
    assert got == {frozenset({"1"}), frozenset({"2"}), frozenset({"3", "4", "5"})}
    shared = {(r["unit_value"], r["reason"]) for r in links.where("reason IS NOT NULL").collect()}
    assert shared == {("couple@x.com", "shared:distinct_gender")}


@pytest.mark.parametrize("email_priority, expected", [(80, {"1", "3"}), (40, {"2", "3"})])
def test_limit_drops_the_lowest_priority_link(
    spark: SparkSession, email_priority: int, expected: set[str]
) -> None:
    # 3 would join crm A (via e-mail) and crm B (via phone); limit crm_id: 1.
    df = persons(
        spark,
        person("1", crm_id="A", email="e@x.com"),
        person("2", crm_id="B", phone="+441234567890"),
        person("3", email="e@x.com", phone="+441234567890"),
    )
    data = yaml.safe_load(yaml.safe_dump(BASE_RULES))
    data["identifiers"][2]["priority"] = email_priority
    rules = parse_rules(data)
    got, res, _ = groups(spark, {"person_records": df}, rules)
    with shuffle_partitions(spark, 4):  # the suite runs on one partition (conf/test.yaml)
        again, _, _ = groups(spark, {"person_records": df}, rules)
    assert got == again  # deterministic, whatever the partitioning
    assert frozenset(expected) in got and len(got) == 2
    dropped = res.rejected.collect()
    weaker = "phone" if email_priority > 60 else "email"
    assert [(r["rule"], r["reason"]) for r in dropped] == [(weaker, "limit:crm_id")]
    assert res.limit_hits == 1


def test_oversized_component_is_flagged_and_split_on_its_weakest_links(
    spark: SparkSession,
) -> None:
    df = persons(
        spark,
        person("1", customer_id="A", phone="+441234567001"),
        person("2", customer_id="A", email="e@x.com"),
        person("3", customer_id="B", email="e@x.com"),
        person("4", customer_id="B", phone="+441234567001"),
    )
    rules = rules_with(max_component_records=3, limits={})
    got, res, _ = groups(spark, {"person_records": df}, rules)
    assert got == {frozenset({"1", "2"}), frozenset({"3", "4"})}
    assert res.oversized == 2  # flagged once per tier that tried to grow it past the cap
    assert {(r["rule"], r["reason"]) for r in res.rejected.collect()} == {
        ("email", "oversized"),
        ("phone", "oversized"),
    }


TX_SCHEMA = (
    "source string, source_record_id string, order_id string, customer_id string, "
    "email string, email_status string, is_deleted boolean"
)


def lines(spark: SparkSession, *rows: tuple[str, str | None, str]) -> DataFrame:
    """Transaction rows (record id, order id, the customer's web account id) of a shop."""
    return spark.createDataFrame(
        [("shop", rid, order, account, None, "empty", False) for rid, order, account in rows],
        TX_SCHEMA,
    )


def test_an_invoices_lines_count_once_toward_a_shared_value(spark: SparkSession) -> None:
    """A line-level export: A's three invoices of four lines each are three records to
    ``shared_values.max_records`` (4 here), not twelve; B's six single-line orders are six,
    so B's account id is shared."""
    rows = [(f"a{i}-{j}", f"inv-{i}", "A") for i in range(3) for j in range(4)]
    rows += [(f"b{i}", f"ord-b{i}", "B") for i in range(6)]
    rules = rules_with()
    frames = prepare_records({"transactions": lines(spark, *rows)}, rules)
    got, _, links = groups(spark, frames, rules)
    assert frozenset(r[0] for r in rows[:12]) in got
    reasons = {r["unit_value"]: r["reason"] for r in links.select("unit_value", "reason").collect()}
    assert reasons == {"A": None, "B": "shared:records"}


def test_a_heavy_buyer_is_one_customer_whatever_the_size_cap(spark: SparkSession) -> None:
    """The size cap counts who a person is (their person records), not what they bought: a
    customer with ten orders stays whole under ``max_component_records: 3``, while four person
    records still break it."""
    rules = rules_with(max_component_records=3, shared_values={"max_records": 100})
    orders = [(f"o{i}", f"ord-{i}", "C") for i in range(10)]
    frames = prepare_records(
        {
            "transactions": lines(spark, *orders),
            "person_records": persons(spark, person("p1", customer_id="C")),
        },
        rules,
    )
    got, res, _ = groups(spark, frames, rules)
    assert got == {frozenset({"p1", *(o[0] for o in orders)})}
    assert res.oversized == 0


def test_conflicting_attributes_never_join_however_the_records_got_linked(
    spark: SparkSession,
) -> None:
    # A couple: B's CRM record carries A's e-mail; A's CRM record has no e-mail, A's order has
    # A's crm id and the e-mail. No value sits behind two birth dates (the e-mail's records
    # hold one), so shared-value detection passes it; only the merged customer would hold two.
    df = persons(
        spark,
        person("a_crm", crm_id="A", birth_date=date(1942, 3, 22), gender="female"),
        person("a_order", crm_id="A", email="jessica@x.com"),
        person("b_crm", crm_id="B", email="jessica@x.com", birth_date=date(1989, 6, 4)),
        person("b_loyalty", email="jessica@x.com", phone="+491515275305", gender="unknown"),
        person("b_other", phone="+491515275305", birth_date=date(1989, 6, 4)),
        # One person, one birth date seen twice and once missing: no conflict.
        person("c1", email="c@x.com", birth_date=date(1970, 1, 1)),
        person("c2", email="c@x.com", phone="+441234500077", birth_date=date(1970, 1, 1)),
        person("c3", phone="+441234500077"),
    )
    limits = {"crm_id": 2}
    frames = {"person_records": df}
    merged, _, _ = groups(spark, frames, rules_with(limits=limits))
    assert frozenset({"a_crm", "a_order", "b_crm", "b_loyalty", "b_other"}) in merged

    rules = rules_with(limits=limits, attribute_limits={"birth_date": 1, "gender": 1})
    got, res, _ = groups(spark, frames, rules)
    assert got == {
        frozenset({"a_crm", "a_order"}),  # crm id (priority 100) before the e-mail (80)
        frozenset({"b_crm"}),
        frozenset({"b_loyalty", "b_other"}),  # phone (60) after the e-mail was dropped
        frozenset({"c1", "c2", "c3"}),
    }
    assert res.conflict_hits == 1 and res.limit_hits == 0
    assert [
        (r["rule"], r["unit_value"], r["reason"], r["links"]) for r in res.rejected.collect()
    ] == [("email", "jessica@x.com", "conflict:birth_date", 3)]


def test_a_mistyped_birth_date_or_swapped_names_are_no_conflict_other_dates_are(
    spark: SparkSession,
) -> None:
    df = persons(
        spark,
        # Day and month transposed, names swapped: one person; so is a year one digit off.
        person("a1", crm_id="A", birth_date=date(1961, 3, 2), first_name="Zoe", last_name="Jones"),
        person("a2", crm_id="A", birth_date=date(1961, 2, 3), first_name="Jones", last_name="Zoe"),
        person("a3", crm_id="A"),
        person("c1", crm_id="C", birth_date=date(1950, 5, 5)),
        person("c2", crm_id="C", birth_date=date(1951, 5, 5)),
        # Two birth dates years apart behind one crm id: two people.
        person("b1", crm_id="B", birth_date=date(1970, 1, 1), first_name="Anna", last_name="Ek"),
        person("b2", crm_id="B", birth_date=date(1985, 6, 6), first_name="Anna", last_name="Ek"),
        # Names swapped and one of them mistyped: one person ...
        person("d1", crm_id="D", first_name="Samuel", last_name="Brown"),
        person("d2", crm_id="D", first_name="Brosn", last_name="Samuel"),
        # ... but a swap whose other name is another name is two people.
        person("e1", crm_id="E", first_name="Samuel", last_name="Brown"),
        person("e2", crm_id="E", first_name="Green", last_name="Samuel"),
    )
    rules = rules_with(
        limits={},
        # One crm id behind a mistyped birth date is not shared (and two dates are).
        date_conflicts={"birth_date": {"max_edits": 1}},
        name_conflicts={"first_name": {"max_edits": 1}},
    )
    got, res, links = groups(spark, {"person_records": df}, rules)
    assert frozenset({"a1", "a2", "a3"}) in got and frozenset({"c1", "c2"}) in got
    assert frozenset({"b1"}) in got and frozenset({"b2"}) in got
    assert frozenset({"d1", "d2"}) in got
    assert frozenset({"e1"}) in got and frozenset({"e2"}) in got
    reasons = {r["reason"] for r in links.where(F.col("reason").isNotNull()).collect()}
    assert reasons == {"shared:distinct_birth_date"}  # crm id B, not A
    with pytest.raises(ConfigError, match="date_conflicts and in attribute_limits"):
        rules_with(date_conflicts={"birth_date": {}}, attribute_limits={"birth_date": 1})


def test_prepared_records_give_the_same_links_and_attributes_as_silver(
    spark: SparkSession,
) -> None:
    # Names folded once must read exactly as names folded where used: accents, case, blanks,
    # "unknown" (a blocklisted link, no attribute), tombstones, and a table without names.
    df = persons(
        spark,
        person("a", email="ann@x.com", first_name="Ánn ", last_name="O'Neil", gender="female",
               birth_date=date(1980, 1, 2)),
        person("b", email="ann@x.com", first_name="ANN", phone="+442034710001"),
        person("c", email="c@x.com", first_name="unknown", last_name="Unknown", gender="unknown"),
        person("d", email="ann@x.com", first_name="Ann", is_deleted=True),
        person("e", email=" ", first_name="", email_status="empty"),
    )  # fmt: skip
    orders = spark.createDataFrame(
        [("shop", "o1", None, None, None, "ann@x.com", "ok", None, "empty", "ann", "O Neil")],
        "source string, source_record_id string, crm_id string, loyalty_id string, "
        "customer_id string, email string, email_status string, phone string, "
        "phone_status string, first_name string, last_name string",
    )
    frames = {"person_records": df, "transactions": orders}
    rules = rules_with(
        identifiers=[
            *BASE_RULES["identifiers"],
            {"name": "email_first_name", "id_type": "email_first_name",
             "fields": ["email", "first_name"], "priority": 75},
            {"name": "name_birth", "id_type": "name_birth",
             "fields": ["last_name", "birth_date"], "priority": 50},
        ],
        attribute_limits={"birth_date": 1, "gender": 1},
        name_conflicts={"first_name": {"max_edits": 2}},
    )  # fmt: skip
    prepared = prepare_records(frames, rules)
    assert "_fold_first_name" in prepared["transactions"].columns
    assert prepared["person_records"].where("source_record_id = 'd'").count() == 0

    raw_links, links = identifier_links(frames, rules), identifier_links(prepared, rules)
    assert_df_equality(raw_links, links, ignore_row_order=True)
    assert links.where("rule = 'email_first_name' AND reason IS NULL").select(
        "unit_value"
    ).distinct().collect() == [("ann@x.com|ann",)]
    fields = rules.attribute_fields()
    assert_df_equality(
        record_attributes(frames, fields),
        record_attributes(prepared, fields),
        ignore_row_order=True,
    )
    # Orders written before transactions had names: no name links, and no error.
    old_orders = prepare_records({"transactions": orders.drop("first_name", "last_name")}, rules)
    assert {r["rule"] for r in identifier_links(old_orders, rules).collect()} == {"email"}


def test_first_names_that_cannot_be_one_persons_split_and_their_variants_do_not(
    spark: SparkSession,
) -> None:
    df = persons(
        spark,
        # A household landline on two CRM records; one birth date missing, both male.
        person("chris", crm_id="A", phone="+442034719766", first_name="Christopher",
               birth_date=date(1985, 1, 7), gender="male"),
        person("chris_order", crm_id="A", email="c.smith@x.com"),
        person("joe", crm_id="B", phone="+442034719766", first_name="Joseph", gender="male"),
        # One person's variants: nicknames ...
        person("r1", email="r@x.com", first_name="Robert"),
        person("r2", email="r@x.com", first_name="bob"),
        person("r3", email="r@x.com", first_name="Bobby"),
        # ... a typo of a known form (an order billed to "Tom", another to "Thoams") ...
        person("t1", email="t@x.com", first_name="Tom"),
        person("t2", email="t@x.com", first_name="Thoams"),
        # ... but a known short form is no bridge between two names it starts.
        person("k1", phone="+442034710099", first_name="Christine"),
        person("k2", phone="+442034710099", first_name="Kristopher"),
        # ... a typo, accents, case and an initial.
        person("e1", phone="+442034710001", first_name="Elisabet"),
        person("e2", email="eli@x.com", phone="+442034710001", first_name="ÉLISABETH"),
        person("e3", email="eli@x.com", first_name="E."),
    )  # fmt: skip
    frames = {"person_records": df}
    limits = {"crm_id": 2}
    merged, _, _ = groups(spark, frames, rules_with(limits=limits))
    assert frozenset({"chris", "chris_order", "joe"}) in merged

    nicknames = {
        "robert": ["bob", "bobby"],
        "thomas": ["tom"],
        "christopher": ["chris", "kristopher"],
    }
    conflict = {"max_edits": 2, "min_length": 4, "nicknames": nicknames}
    rules = rules_with(limits=limits, name_conflicts={"first_name": conflict})
    got, res, _ = groups(spark, frames, rules)
    assert got == {
        frozenset({"chris", "chris_order"}),
        frozenset({"joe"}),
        frozenset({"r1", "r2", "r3"}),
        frozenset({"t1", "t2"}),
        frozenset({"k1"}),
        frozenset({"k2"}),
        frozenset({"e1", "e2", "e3"}),
    }
    assert res.conflict_hits == 2
    assert sorted((r["rule"], r["reason"], r["links"]) for r in res.rejected.collect()) == [
        ("phone", "conflict:first_name", 2),
        ("phone", "conflict:first_name", 2),
    ]
    # Without the nickname entry, Robert and Bob(by) are two people.
    bare = rules_with(limits=limits, name_conflicts={"first_name": {"max_edits": 2}})
    got, _, _ = groups(spark, frames, bare)
    assert frozenset({"r1", "r2", "r3"}) not in got


def test_a_sale_nobody_can_be_recognised_by_is_no_customer_a_person_record_is(
    spark: SparkSession,
) -> None:
    from cdp.identity.stage import anonymous_records

    records = spark.createDataFrame(
        [(1, "transactions"), (2, "transactions"), (3, "person_records"), (4, "consents"),
         (5, "transactions")],
        "node long, record_table string",
    )  # fmt: skip
    # Receipt 1 carries a loyalty card (a value node links it); receipt 2 nothing; person 3
    # nothing either (a CRM contact without e-mail is still a customer); consent 4 nothing;
    # receipt 5 only a scored pair's link.
    accepted = spark.createDataFrame(
        [(101, "loyalty_id", 1, RECORD), (900, "probabilistic", 5, RECORD)],
        "unit long, unit_type string, other long, other_type string",
    )
    got = anonymous_records(records, accepted)
    expected = spark.createDataFrame([(2,), (4,)], "node long")
    assert_df_equality(got, expected, ignore_row_order=True)


def test_scored_links_are_held_by_the_guards_on_fields_the_model_does_not_compare(
    spark: SparkSession,
) -> None:
    # One person written three ways (the second entry's first name replaced, the third's
    # e-mail mistyped), joined only by scored pairs, and two people of one household whose
    # scored pair would join two genders.
    df = persons(
        spark,
        person("p1", first_name="Connor", email="connor.green@x.com", gender="male"),
        person("p2", first_name="Olivia"),
        person("p3", first_name="Connor", email="connor.gren@x.com"),
        person("h1", first_name="Sam", gender="male"),
        person("h2", first_name="Sam", gender="female"),
    )
    frames = {"person_records": df}
    rules = rules_with(
        limits={"email": 1},
        attribute_limits={"gender": 1},
        name_conflicts={"first_name": {"max_edits": 2}},
    )
    records = record_nodes(frames)
    node = {r["source_record_id"]: r["node"] for r in records.collect()}
    pairs = spark.createDataFrame(
        [(node[a], node[b], a, b) for a, b in [("p1", "p2"), ("p1", "p3"), ("h1", "h2")]],
        "node_l long, node_r long, key_l string, key_r string",
    )
    scored = match_links.pair_links(
        pairs, rule="probabilistic", id_type="probabilistic", priority=10
    )
    links = build_links(frames, None, rules).unionByName(scored).where("reason is null")
    attrs = record_attributes(frames, rules.attribute_fields())

    def customers(exempt: Any) -> set[frozenset[str]]:
        res = resolve(records, links, rules, attributes=attrs, engine="dataframe", exempt=exempt)
        labelled = records.join(
            res.labels.where(F.col("id_type") == RECORD).select("node", "comp"), "node"
        )
        out: dict[int, set[str]] = {}
        for r in labelled.collect():
            out.setdefault(r["comp"], set()).add(r["source_record_id"])
        return {frozenset(g) for g in out.values()}

    # Every guard: the replaced first name and the second e-mail split the person.
    assert customers(None) == {frozenset({r}) for r in ("p1", "p2", "p3", "h1", "h2")}
    # The model compared first names and e-mails: their guards do not hold its tier; gender,
    # which it does not compare, still keeps the household apart.
    trusting = customers({10: frozenset({"first_name", "email", "birth_date"})})
    assert trusting == {frozenset({"p1", "p2", "p3"}), frozenset({"h1"}), frozenset({"h2"})}


def test_an_email_naming_another_person_than_its_holder_is_shared(spark: SparkSession) -> None:
    def household(tag: str, email: str, **holder: Any) -> list[dict[str, Any]]:
        # The holder's CRM record and an order that carries nothing but the address.
        return [
            person(f"{tag}", crm_id=tag, email=email, **holder),
            person(f"{tag}_order", email=email),
        ]

    df = persons(
        spark,
        # Another first name the data knows ...
        *household("joseph", "jennifer.moore17@x.com", first_name="Joseph", last_name="Moore"),
        person("jennifer", crm_id="jen", first_name="Jennifer", last_name="Moore"),
        # ... or another initial before the holder's last name.
        *household("jack", "dwood7@x.com", first_name="Jack", last_name="Wood"),
        # The holder's own address: nickname, initial + surname (a nickname's initial too),
        # surname + initial, a typo, a prefix, and addresses spelling no known first name.
        *household("bob", "robert_smith3@x.com", first_name="Bob", last_name="Smith"),
        *household("jerome", "jpetit66@x.com", first_name="Jérôme", last_name="Petit"),
        *household("bill", "wtaylor@x.com", first_name="Bill", last_name="Taylor"),
        *household("jutta", "kochj@x.com", first_name="Jutta", last_name="Koch"),
        *household("elli", "elizabeht.b@x.com", first_name="Elizabeth", last_name="Brown"),
        *household("chris", "christopher.k@x.com", first_name="Chris", last_name="King"),
        *household("zed", "zeno.moore@x.com", first_name="Joseph", last_name="Moore"),
        *household("becky", "rebecca.white@x.com", first_name="B.", last_name="White"),
        *household("bram", "bram22@x.com", first_name="Brm", last_name="Meer"),
        # Other people whose first names make "rebecca" and "bram" names the data knows.
        person("rebecca", crm_id="rebecca", first_name="Rebecca", last_name="Stone"),
        person("bram_v", crm_id="bram_v", first_name="Bram", last_name="Visser"),
        *household("cat", "coolcat77@x.com", first_name="Anna", last_name="Lee"),
    )  # fmt: skip
    conflict = {"nicknames": {"robert": ["bob"], "william": ["bill"], "rebecca": ["becky"]}}
    shared = {"max_records": 4, "email_names": {"min_name_records": 1}}
    rules = rules_with(shared_values=shared, name_conflicts={"first_name": conflict})
    got, _, links = groups(spark, {"person_records": df}, rules)
    for tag in ("joseph", "jack"):
        assert {frozenset({tag}), frozenset({f"{tag}_order"})} <= got
    for tag in ("bob", "jerome", "bill", "jutta", "elli", "chris", "zed", "cat", "becky", "bram"):
        assert frozenset({tag, f"{tag}_order"}) in got
    flagged = {
        r["unit_value"]
        for r in links.where(F.col("reason") == "shared:email_name").select("unit_value").collect()
    }
    assert flagged == {"jennifer.moore17@x.com", "dwood7@x.com"}
    # Off by default: the same data links the household address.
    plain, _, _ = groups(
        spark,
        {"person_records": df},
        rules_with(shared_values={"max_records": 4}, name_conflicts={"first_name": conflict}),
    )
    assert frozenset({"joseph", "joseph_order"}) in plain
    with pytest.raises(ConfigError, match=r"email_names: unknown identifier type 'mail'"):
        rules_with(shared_values={"email_names": {"id_type": "mail"}})


def test_email_names_know_surnames_and_names_behind_a_stronger_id(spark: SparkSession) -> None:
    def household(tag: str, email: str, **holder: Any) -> list[dict[str, Any]]:
        return [
            person(f"{tag}", crm_id=tag, email=email, **holder),
            person(f"{tag}_order", email=email),
        ]

    def others(last_name: str, n: int, first_name: str = "Kim") -> list[dict[str, Any]]:
        # Unrelated people who make a name known to the data as a surname.
        return [
            person(
                f"{last_name}{i}",
                crm_id=f"{last_name}{i}",
                first_name=first_name,
                last_name=last_name,
            )
            for i in range(n)
        ]

    df = persons(
        spark,
        # "Thomas" is a first name even though as many records carry it as a surname.
        *household("pierre", "thomas.vincent4@x.com", first_name="Pierre", last_name="Vincent"),
        person("tom", crm_id="tom", first_name="Thomas", last_name="Dupont"),
        *others("Thomas", 3),
        # Another initial before a surname the data knows, whoever's it is ...
        *household("harry", "ttaylor5@x.com", first_name="Harry", last_name="Wilson"),
        *others("Taylor", 2),
        # ... but the holder's own initial before another surname is theirs (a maiden name).
        *household("jen", "jtaylor8@x.com", first_name="Jennifer", last_name="Jones"),
        # A surname that a few records carry as a first name is still no first name.
        *household("karl", "mueller77@x.com", first_name="Karl", last_name="Berg"),
        person("mueller_swapped", crm_id="ms", first_name="Mueller", last_name="Kim"),
        *others("Mueller", 5),
        # Zoe's CRM record has no e-mail; her order carries her CRM id and the address that
        # names Michael, so the address is the household's ...
        person("zoe", crm_id="zoe", first_name="Zoe", last_name="Wright"),
        person("zoe_order", crm_id="zoe", email="jones.michael6@x.com"),
        person("michael_order", email="jones.michael6@x.com"),
        person("michael", crm_id="michael", first_name="Michael", last_name="Jones"),
        # ... while an order with her own address stays hers.
        person("zoe_order2", crm_id="zoe", email="zoe.w@x.com"),
        person("zoe_order3", email="zoe.w@x.com"),
    )  # fmt: skip
    shared = {"max_records": 10, "email_names": {"min_name_records": 1}}
    got, _, links = groups(spark, {"person_records": df}, rules_with(shared_values=shared))
    flagged = {
        r["unit_value"]
        for r in links.where(F.col("reason") == "shared:email_name").select("unit_value").collect()
    }
    assert flagged == {"thomas.vincent4@x.com", "ttaylor5@x.com", "jones.michael6@x.com"}
    for tag in ("pierre", "harry"):
        assert {frozenset({tag}), frozenset({f"{tag}_order"})} <= got
    for tag in ("jen", "karl"):
        assert frozenset({tag, f"{tag}_order"}) in got
    assert frozenset({"zoe", "zoe_order", "zoe_order2", "zoe_order3"}) in got
    assert frozenset({"michael_order"}) in got


def test_attribute_limits_name_known_fields_and_need_the_attributes(spark: SparkSession) -> None:
    with pytest.raises(ConfigError, match=r"attribute_limits: unknown field 'shoe_size'"):
        rules_with(attribute_limits={"shoe_size": 1})
    with pytest.raises(ConfigError, match=r"attribute_limits.birth_date: must be at least 1"):
        rules_with(attribute_limits={"birth_date": 0})
    with pytest.raises(ConfigError, match=r"name_conflicts: 'birth_date' is not a name field"):
        rules_with(name_conflicts={"birth_date": {}})
    rules = rules_with(attribute_limits={"birth_date": 1})
    df = persons(spark, person("1", email="e@x.com"))
    with pytest.raises(ValueError, match="record_attributes"):
        resolve(record_nodes({"person_records": df}), df.limit(0), rules)


def test_one_component_run_then_repair_equals_building_every_tier(spark: SparkSession) -> None:
    # resolve() runs connected components once and rebuilds tier by tier only the components
    # that break a rule; that must give exactly what building the whole graph tier by tier
    # gives. Random records drawing from small pools, so some components break the crm_id,
    # e-mail or size limits and others do not.
    rng = random.Random(11)
    rows = []
    for i in range(70):
        fields: dict[str, Any] = {}
        if rng.random() < 0.4:
            fields["crm_id"] = f"C{rng.randrange(18)}"
        if rng.random() < 0.6:
            fields["email"] = f"e{rng.randrange(40)}@x.com"
        if rng.random() < 0.5:
            fields["phone"] = f"+4420700{rng.randrange(30):05d}"
        if rng.random() < 0.15:
            fields["birth_date"] = date(1980, 1, 1 + rng.randrange(3))
        if rng.random() < 0.15:
            fields["first_name"] = rng.choice(["Robert", "Bob", "Roberta", "Zoe", "Zoé"])
        rows.append(person(str(i), **fields))
    df = persons(spark, *rows)
    rules = rules_with(
        limits={"crm_id": 1, "email": 2},
        attribute_limits={"birth_date": 1},
        name_conflicts={"first_name": {"nicknames": {"robert": ["bob"]}}},
        max_component_records=9,
        shared_values={"max_records": 100, "max_distinct": {}},
    )
    frames = {"person_records": df}
    records = record_nodes(frames)
    attrs = record_attributes(frames, rules.attribute_fields())
    accepted = build_links(frames, None, rules).where(F.col("reason").isNull()).drop("reason")
    fast = resolve(records, accepted, rules, attributes=attrs, engine="dataframe")
    # some components did need repair, for each kind of rule ...
    assert fast.limit_hits > 0 and fast.conflict_hits > 0 and fast.oversized > 0
    full = Resolution(labels=records.limit(0), rejected=records.limit(0))

    def cc(edges: DataFrame) -> DataFrame:
        full.cc_runs += 1
        return connected_components(
            edges.select("uc", "oc"), src="uc", dst="oc", engine="dataframe"
        )

    caps = Caps.of(rules)
    labels, rejected = _resolve_tiered(records, accepted, attrs, caps, cc, cut, full)
    got = {tuple(r) for r in fast.labels.select("node", "comp", "id_type").collect()}
    want = {tuple(r) for r in labels.select("node", "comp", "id_type").collect()}
    assert got == want
    assert len({r[1] for r in got if r[2] == RECORD}) > 5  # ... and many did not
    cols = ["rule", "id_type", "unit_value", "reason", "links"]
    assert sorted(tuple(r) for r in fast.rejected.select(cols).collect()) == sorted(
        tuple(r) for r in reduce(DataFrame.unionByName, rejected).select(cols).collect()
    )
    assert (fast.limit_hits, fast.conflict_hits, fast.oversized) == (
        full.limit_hits,
        full.conflict_hits,
        full.oversized,
    )
    # One run over the whole graph, then at most the same runs over the broken components only.
    assert fast.cc_runs <= full.cc_runs + 1


def test_event_links_dedupe_and_shared_cookie(spark: SparkSession) -> None:
    df = persons(spark, person("1", customer_id="U1"), person("2", customer_id="U2"))
    ev = spark.createDataFrame(
        [
            ("web", "e1", "login", "cookieA", None, "U1", None, "empty", None, "empty", False),
            ("web", "e2", "login", "cookieA", None, "U1", None, "empty", None, "empty", False),
            ("web", "e3", "login", "shared", None, "U1", None, "empty", None, "empty", False),
            ("web", "e4", "login", "shared", None, "U2", None, "empty", None, "empty", False),
        ],
        EVENT_SCHEMA,
    )
    got, res, links = groups(spark, {"person_records": df}, rules_with(), events=ev)
    assert got == {frozenset({"1"}), frozenset({"2"})}
    ev_links = links.where(F.col("rule") == "login_cookie")
    assert ev_links.where("reason IS NULL").count() == 1  # cookieA-U1 once, though seen twice
    assert {r["reason"] for r in ev_links.where("reason IS NOT NULL").collect()} == {
        "shared:linked_customer_id"
    }
    values = res.labels.where(F.col("id_type") == "anonymous_id").count()
    assert values == 1


# --------------------------------------------------------------------------------------------
# Rules


def test_rule_naming_a_missing_field_fails_at_load_with_a_clear_message(tmp_path: Path) -> None:
    data = yaml.safe_load(yaml.safe_dump(BASE_RULES))
    data["identifiers"].append(
        {"name": "shoe", "id_type": "shoe", "fields": ["shoe_size"], "priority": 5}
    )
    path = tmp_path / "identity.yaml"
    path.write_text(yaml.safe_dump(data))
    from cdp.identity.rules import load_rules

    with pytest.raises(ConfigError, match=r"identifiers\[4\] \(shoe\).*shoe_size"):
        load_rules(path)
    data["identifiers"].pop()
    data["event_links"][0]["to"] = ["nickname"]
    with pytest.raises(ConfigError, match=r"login_cookie.*nickname"):
        parse_rules(data)
    data["event_links"][0]["to"] = ["customer_id"]
    data["name_conflicts"] = {"first_name": {"nicknames_file": "nope.yaml"}}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"name_conflicts.first_name.nicknames_file: no file"):
        load_rules(path)
    (tmp_path / "nope.yaml").write_text("- just a list\n")
    with pytest.raises(ConfigError, match=r"expected a mapping of name -> list"):
        load_rules(path)
    # The shipped rules load, nickname list included.
    shipped = load_rules(Path(__file__).parents[2] / "conf" / "rules" / "identity.yaml")
    assert len(shipped.name_conflicts["first_name"].nicknames) > 100
    assert shipped.attribute_fields() == ["birth_date", "first_name", "gender"]


# --------------------------------------------------------------------------------------------
# The stage: stable ids on real Delta tables


@pytest.fixture()
def config(tmp_path: Path) -> CdpConfig:
    rules = tmp_path / "identity.yaml"
    rules.write_text(yaml.safe_dump(BASE_RULES))
    return load_config(
        env="test",
        overrides={
            "data_root": str(tmp_path / "data"),
            "identity.rules_file": str(rules),
            "identity.engine": "dataframe",
        },
    )


def _map(store: Any) -> list[tuple[Any, ...]]:
    return sorted(tuple(r) for r in store.read(MAP_TABLE).collect())


def test_stable_ids_rerun_join_merge_split_and_history(
    spark: SparkSession, config: CdpConfig
) -> None:
    store = open_store(spark, config)
    a = person("a", email="a@x.com", customer_id="U1")
    b = person("b", email="a@x.com")
    c = person("c", email="c@x.com", crm_id="K")
    store.overwrite("silver/person_records", persons(spark, a, b, c))
    store.overwrite(
        "silver/events",
        spark.createDataFrame(
            [("web", "e1", "login", "ck1", None, "U1", None, "empty", None, "empty", False)],
            EVENT_SCHEMA,
        ),
    )
    run_stage("identity", spark=spark, config=config)
    first = _map(store)
    ids = {r[2]: r[0] for r in first}
    x, y = ids["a"], ids["c"]
    assert ids["b"] == x and x != y and x.startswith("c_") and len(x) == 18
    assert y == spark.range(1).select(derived_id(F.lit("person_records|crm|c"))).first()[0]
    idents = {(r["customer_id"], r["id_type"], r["id_value"]) for r in
              store.read(IDENTIFIERS_TABLE).collect()}  # fmt: skip
    assert (x, "anonymous_id", "ck1") in idents and (y, "crm_id", "K") in idents

    # Rerun on unchanged silver, partitioned otherwise: the map is not rewritten, its
    # content is identical.
    version = store.version(MAP_TABLE)
    with shuffle_partitions(spark, 4):
        run_stage("identity", spark=spark, config=config)
    assert store.version(MAP_TABLE) == version and _map(store) == first

    # Join (d) and merge (e bridges both customers through crm K and e-mail a).
    d = person("d", email="a@x.com")
    e = person("e", email="a@x.com", crm_id="K")
    store.overwrite("silver/person_records", persons(spark, a, b, c, d, e))
    second_run = run_stage("identity", spark=spark, config=config).run_id
    second = {r[2]: r for r in _map(store)}
    survivor = min(x, y)  # both assigned in the same run: the smallest id survives
    assert {r[0] for r in second.values()} == {survivor}
    kept = "a" if survivor == x else "c"
    assert second[kept][4] == first[[r[2] for r in first].index(kept)][4]  # assigned run kept
    assert second["d"][4] == second_run
    hist = {(r["old_id"], r["new_id"], r["event"], r["records"])
            for r in store.read(HISTORY_TABLE).where(F.col("run_id") == second_run).collect()}  # fmt: skip
    loser = y if survivor == x else x
    assert (loser, survivor, "merged", 1 if loser == y else 2) in hist
    assert (survivor, survivor, "joined", 2) in hist

    # Split: e is deleted; the larger part (a, b, d) keeps the id, c gets a new one.
    e_del = dict(e, is_deleted=True)
    store.overwrite("silver/person_records", persons(spark, a, b, c, d, e_del))
    third_run = run_stage("identity", spark=spark, config=config).run_id
    third = {r[2]: r[0] for r in _map(store)}
    assert third["a"] == third["b"] == third["d"] == survivor
    assert third["c"] != survivor and "e" not in third
    hist3 = {(r["old_id"], r["new_id"], r["event"])
             for r in store.read(HISTORY_TABLE).where(F.col("run_id") == third_run).collect()}  # fmt: skip
    assert hist3 == {(survivor, third["c"], "split")}
    assert store.exists(REJECTED_TABLE)


def test_a_crash_before_the_map_commit_leaves_the_map_and_history_records_each_change_once(
    spark: SparkSession, config: CdpConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(spark, config)
    a = person("a", email="a@x.com")
    c = person("c", email="c@x.com", crm_id="K")
    store.overwrite("silver/person_records", persons(spark, a, c))
    run_stage("identity", spark=spark, config=config)
    before, version = _map(store), store.version(MAP_TABLE)

    def history() -> list[tuple[Any, ...]]:
        rows = store.read(HISTORY_TABLE).collect()
        return sorted((r["run_id"], r["old_id"], r["new_id"], r["event"], r["base_map_version"])
                      for r in rows)  # fmt: skip

    created = history()
    assert [(h[3], h[4]) for h in created] == [("created", -1), ("created", -1)]

    # e bridges a and c: the crashed run writes its history, then dies before the map commit.
    e = person("e", email="a@x.com", crm_id="K")
    store.overwrite("silver/person_records", persons(spark, a, c, e))
    monkeypatch.setenv("CDP_FAULT_POINT", "identity.before_map")
    monkeypatch.setenv("CDP_FAULT_MODE", "raise")
    faults.reset()
    with pytest.raises(StageFailed, match="fault injected at identity.before_map"):
        run_stage("identity", spark=spark, config=config)
    assert store.version(MAP_TABLE) == version and _map(store) == before
    orphans = [h for h in history() if h not in created]
    assert {(h[3], h[4]) for h in orphans} == {("merged", version), ("joined", version)}

    monkeypatch.delenv("CDP_FAULT_POINT")
    rerun = run_stage("identity", spark=spark, config=config).run_id
    assert store.version(MAP_TABLE) == version + 1
    assert len({r[0] for r in _map(store)}) == 1
    after = history()
    assert [h for h in after if h[4] == version] == sorted(
        (rerun, *h[1:]) for h in orphans
    )  # the same change, recorded once, by the run whose map landed
    assert len(after) == len(created) + len(orphans)

    # A crash on a change that silver then takes back: the rerun finds nothing to record and
    # removes what the crashed run wrote about a map that never existed.
    store.overwrite("silver/person_records", persons(spark, a, c, e, person("f", email="a@x.com")))
    monkeypatch.setenv("CDP_FAULT_POINT", "identity.before_map")
    with pytest.raises(StageFailed):
        run_stage("identity", spark=spark, config=config)
    assert any(h[4] == version + 1 for h in history())
    monkeypatch.delenv("CDP_FAULT_POINT")
    store.overwrite("silver/person_records", persons(spark, a, c, e))
    run_stage("identity", spark=spark, config=config)
    assert store.version(MAP_TABLE) == version + 1 and history() == after


def test_rejected_links_are_one_slice_per_map_version_replaced_by_a_rerun(
    spark: SparkSession, config: CdpConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(spark, config)
    household = [person(f"p{i}", phone="+441234500099") for i in range(5)]  # max_records 4
    store.overwrite(
        "silver/person_records", persons(spark, person("a", email="a@x.com"), *household)
    )

    def rejected() -> list[tuple[Any, ...]]:
        return sorted((r["base_map_version"], r["rule"], r["value_hash"], r["reason"], r["links"])
                      for r in store.read(REJECTED_TABLE).collect())  # fmt: skip

    run_stage("identity", spark=spark, config=config)
    first = rejected()
    assert [(r[0], r[1], r[3]) for r in first] == [(-1, "phone", "shared:records")]
    version = store.version(MAP_TABLE)
    # A crash before the map commit, then its rerun: the slice of the base version once.
    store.overwrite(
        "silver/person_records",
        persons(spark, person("a", email="a@x.com"), person("b", email="a@x.com"), *household),
    )
    monkeypatch.setenv("CDP_FAULT_POINT", "identity.before_map")
    monkeypatch.setenv("CDP_FAULT_MODE", "raise")
    faults.reset()
    with pytest.raises(StageFailed):
        run_stage("identity", spark=spark, config=config)
    monkeypatch.delenv("CDP_FAULT_POINT")
    run_stage("identity", spark=spark, config=config)
    after = rejected()
    assert after == sorted([*first, (version, *first[0][1:])])
    # Reruns on unchanged silver (the map stays at its version): they repeat the rejections
    # of the run that wrote the map, so its slice (the newest) is replaced, not added to.
    run_stage("identity", spark=spark, config=config)
    assert rejected() == after
    run_stage("identity", spark=spark, config=config)
    assert rejected() == after


# --------------------------------------------------------------------------------------------
# Evaluation


def test_evaluation_metrics_on_a_hand_made_example(spark: SparkSession) -> None:
    # Truth: P1 = {1,2,3}, P2 = {4,5}, P3 = {6}; 7 is in the truth only (quarantined),
    # 8 in the map only. Prediction: X = {1,2}, Y = {3,4,5}, Z = {6}, W = {8}.
    truth = spark.createDataFrame(
        [("s", str(i), e) for i, e in [(1, "P1"), (2, "P1"), (3, "P1"), (4, "P2"), (5, "P2"),
                                       (6, "P3"), (7, "P3")]],
        "source string, source_record_id string, entity_id string",
    )  # fmt: skip
    idmap = spark.createDataFrame(
        [("X", "s", "1", 1), ("X", "s", "2", 1), ("Y", "s", "3", 1), ("Y", "s", "4", 1),
         ("Y", "s", "5", 1), ("Z", "s", "6", 0), ("W", "s", "8", 1)],
        "customer_id string, source string, source_record_id string, n_identifiers int",
    )  # fmt: skip
    m = evaluate_identity(spark, identity_map=idmap, truth=truth)
    s = m.all_records
    assert (m.truth_records, m.map_records, m.evaluated) == (7, 7, 6)
    # predicted pairs: X 1 + Y 3 = 4; true: P1 3 + P2 1 = 4; TP: (1,2) + (4,5) = 2
    assert (s.predicted_pairs, s.true_pairs, s.true_positive_pairs) == (4, 4, 2)
    assert s.precision == pytest.approx(0.5) and s.recall == pytest.approx(0.5)
    assert s.f1 == pytest.approx(0.5)
    assert (s.over_merged_clusters, s.over_merged_entities, s.split_entities) == (1, 2, 1)
    assert m.linkable is not None and m.linkable.records == 5
    assert m.cluster_sizes == {"1": 2, "2": 1, "3-5": 1}
    assert "precision 0.5000" in m.format()
    assert m.left_out == 0 and m.linkable_with_left_out is None


def test_evaluation_counts_records_left_out_of_the_map_as_their_own_customers(
    spark: SparkSession,
) -> None:
    # Truth: P1 = {1,2,3,4}. The map holds 1 and 2 together; 3 (carrying an identifier) and 4
    # (carrying none: not linkable) were resolved but left out of the map; 9 is resolved but
    # not in the truth.
    truth = spark.createDataFrame(
        [("s", "1", "P1"), ("s", "2", "P1"), ("s", "3", "P1"), ("s", "4", "P1")],
        "source string, source_record_id string, entity_id string",
    )
    idmap = spark.createDataFrame(
        [("X", "s", "1", 1), ("X", "s", "2", 1)],
        "customer_id string, source string, source_record_id string, n_identifiers int",
    )
    records = spark.createDataFrame(
        [("s", "1", 1), ("s", "2", 1), ("s", "3", 1), ("s", "3", 1), ("s", "4", 0), ("s", "9", 2)],
        "source string, source_record_id string, n_identifiers long",
    )
    m = evaluate_identity(spark, identity_map=idmap, truth=truth, records=records)
    assert m.linkable is not None and m.linkable.recall == pytest.approx(1.0)
    assert m.left_out == 1
    s = m.linkable_with_left_out
    assert s is not None and (s.records, s.true_pairs, s.true_positive_pairs) == (3, 3, 1)
    assert s.recall == pytest.approx(1 / 3) and s.precision == pytest.approx(1.0)
    assert "left out of the map" in m.format() and "recall 0.3333" in m.format()
