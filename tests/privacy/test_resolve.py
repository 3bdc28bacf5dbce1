"""Request subjects to the person behind them (``cdp.privacy.resolve.resolve``): by e-mail, by
phone and by customer id, with values someone who stays also holds kept out of the keys."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from cdp import tables as T
from cdp.privacy.keys import pseudonym
from cdp.privacy.resolve import Person, resolve

KEY = b"resolve-test-key-0123456789abcdef"


class _Store:
    def __init__(self, spark: SparkSession, tables: dict[str, DataFrame]) -> None:
        self.spark, self.tables = spark, tables

    def exists(self, name: str) -> bool:
        return name in self.tables

    def read(self, name: str) -> DataFrame:
        return self.tables[name]


def _store(spark: SparkSession) -> _Store:
    # c1: Ann, two records (CRM and web shop) sharing her household phone with c2 (Bob).
    # An event record nobody placed carries Ann's e-mail only (silver catches it).
    identifiers = spark.createDataFrame(
        [
            ("c1", "email", "ann@example.com"),
            ("c1", "phone", "+442079460000"),
            ("c2", "email", "bob@example.com"),
            ("c2", "phone", "+442079460000"),
            ("c2", "customer_id", "shop-9"),  # a source's own customer id
        ],
        "customer_id string, id_type string, id_value string",
    )
    idmap = spark.createDataFrame(
        [
            ("c1", "crm", "1", "person_records"),
            ("c1", "shop", "a", "person_records"),
            ("c2", "crm", "2", "person_records"),
            ("c2", "shop", "b", "person_records"),
        ],
        "customer_id string, source string, source_record_id string, record_table string",
    )
    people = spark.createDataFrame(
        [
            ("crm", "1", "ann@example.com", "+442079460000", None),
            ("shop", "a", "ann@example.com", None, None),
            ("crm", "2", "bob@example.com", "+442079460000", None),
            ("shop", "b", None, None, "shop-9"),
        ],
        "source string, source_record_id string, email string, phone string, customer_id string",
    )
    events = spark.createDataFrame(
        [("web", "e1", "ann@example.com"), ("web", "e2", "carl@example.com")],
        "source string, source_record_id string, email string",
    )
    return _Store(
        spark,
        {
            T.IDENTITY_IDENTIFIERS.name: identifiers,
            T.IDENTITY_MAP.name: idmap,
            "silver/person_records": people,
            "silver/events": events,
        },
    )


def _of(store: _Store, **subjects: list[str]) -> Person:
    named = {k: [pseudonym(KEY, v) for v in vs] for k, vs in subjects.items()}
    return resolve(
        store,
        KEY,
        emails=named.get("emails", []),
        phones=named.get("phones", []),
        customer_ids=named.get("customer_ids", []),
    )


def test_an_email_finds_the_customer_every_record_and_the_unplaced_event(
    spark: SparkSession,
) -> None:
    ann = _of(_store(spark), emails=["ann@example.com"])
    assert ann.customers == {"c1"}
    assert ann.records == {"crm|1", "shop|a", "web|e1"}
    # The household phone stays: Bob keeps it.
    assert ann.values == {"email": {"ann@example.com"}}


def test_a_customer_id_finds_the_customer_and_their_records(spark: SparkSession) -> None:
    store = _store(spark)
    by_id = _of(store, customer_ids=["c1"])
    assert by_id.customers == {"c1"} and by_id.records == {"crm|1", "shop|a"}
    # Found by id, the event record is not reached, so her e-mail is also held by a record
    # outside the person and is no erasure key (by e-mail, above, it is).
    assert by_id.values == {}
    # A source's own customer id (an identifier of kind customer_id) names its customer.
    bob = _of(store, customer_ids=["shop-9"])
    assert bob.customers == {"c2"} and bob.records == {"crm|2", "shop|b"}


def test_a_shared_phone_names_both_holders_and_an_unknown_subject_nobody(
    spark: SparkSession,
) -> None:
    store = _store(spark)
    both = _of(store, phones=["+442079460000"])
    assert both.customers == {"c1", "c2"}
    assert _of(store, emails=["nobody@example.com"]) == Person()
