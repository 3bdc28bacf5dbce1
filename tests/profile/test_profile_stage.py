"""Scenario test of the ``profile`` stage through ``run_stage`` on tiny silver and identity
tables written through the real store (delta-rs backend)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp.config import CdpConfig, load_config
from cdp.profile.stage import PROFILE_TABLE
from cdp.runner import StageFailed, run_stage
from cdp.storage import TableStore, open_store


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


PERSONS = [
    # source, id, crm_id, email, phone, first, last, birth, gender, line1, city, postcode, country, updated, deleted
    ("crm_contacts", "c1", "c1", "ann@x.com", "+442079460958", "Ann", "Lee", date(1980, 5, 1),
     "female", "1 High St", "London", "SW1A 1AA", "GB", ts("2024-03-01 10:00:00"), False),
    ("loyalty_members", "m1", None, "ann@x.com", "+447700900001", "Anne", "Lee", date(1980, 5, 1),
     None, None, None, None, None, ts("2024-04-01 10:00:00"), False),
    # Deleted: K2 keeps only its order.
    ("crm_contacts", "c2", "c2", "bob@x.com", None, "Bob", "Stone", None, None, None, None, None,
     None, ts("2024-01-01 10:00:00"), True),
    # Known only after as_of: K3 is not in the profile for 2024-06-30.
    ("crm_contacts", "c3", "c3", "cy@x.com", None, "Cy", "Doe", None, None, None, None, None,
     None, ts("2024-08-01 10:00:00"), False),
]  # fmt: skip
PERSONS_SCHEMA = (
    "source string, source_record_id string, crm_id string, email string, phone string, "
    "first_name string, last_name string, birth_date date, gender string, address_line1 string, "
    "city string, postcode string, country string, updated_at timestamp, is_deleted boolean"
)
TRANSACTIONS = [
    ("ecommerce_orders", "o1", "o1", "acc1", "ann@x.com", Decimal("30.00"), "EUR", ts("2024-06-01 12:00:00"), False),
    ("ecommerce_orders", "o2", "o2", "acc1", "ann.lee@work.com", Decimal("20.00"), "EUR", ts("2024-06-20 12:00:00"), False),
    ("ecommerce_orders", "o3", "o3", None, "bob@x.com", Decimal("15.00"), "EUR", ts("2024-05-01 12:00:00"), False),
    ("ecommerce_orders", "o4", "o4", "acc1", None, Decimal("50.00"), "EUR", ts("2024-07-15 12:00:00"), False),
]  # fmt: skip
TRANSACTIONS_SCHEMA = (
    "source string, source_record_id string, order_id string, customer_id string, email string, "
    "amount decimal(18,2), currency string, order_time timestamp, is_deleted boolean"
)
CONSENTS = [
    ("consents", "k1", "ann@x.com", "marketing", "email", "granted", ts("2024-01-01 09:00:00"), False),
    ("consents", "k2", "ann@x.com", "marketing", "sms", "granted", ts("2024-01-01 09:00:00"), False),
    ("consents", "k3", "ann@x.com", "marketing", "sms", "withdrawn", ts("2024-02-01 09:00:00"), False),
]  # fmt: skip
CONSENTS_SCHEMA = (
    "source string, source_record_id string, email string, purpose string, channel string, "
    "status string, consent_time timestamp, is_deleted boolean"
)
S1 = '{"session_id":"s1"}'
EVENTS = [
    ("web_events", "e1", "page_view", ts("2024-06-29 10:00:00"), "cookie1", None, None, "web", S1, False),
    ("web_events", "e2", "page_view", ts("2024-06-29 10:05:00"), "cookie1", "acc1", None, "web", S1, False),
    ("email_engagement", "n1", "open", ts("2024-06-25 08:00:00"), None, None, "bob@x.com", "email", None, False),
    ("web_events", "e3", "page_view", ts("2024-05-01 10:00:00"), "stranger", None, None, "web", S1, False),
]  # fmt: skip
EVENTS_SCHEMA = (
    "source string, source_record_id string, event_type string, event_time timestamp, "
    "anonymous_id string, customer_id string, email string, channel string, properties string, "
    "is_deleted boolean"
)
IDENTITY_MAP = [
    ("K1", "crm_contacts", "c1", "person_records"),
    ("K1", "loyalty_members", "m1", "person_records"),
    ("K1", "ecommerce_orders", "o1", "transactions"),
    ("K1", "ecommerce_orders", "o2", "transactions"),
    ("K1", "ecommerce_orders", "o4", "transactions"),
    ("K1", "consents", "k1", "consents"),
    ("K1", "consents", "k2", "consents"),
    ("K1", "consents", "k3", "consents"),
    ("K2", "crm_contacts", "c2", "person_records"),
    ("K2", "ecommerce_orders", "o3", "transactions"),
    ("K3", "crm_contacts", "c3", "person_records"),
]
IDENTIFIERS = [
    ("K1", "crm_id", "c1"),
    ("K1", "email", "ann@x.com"),
    ("K1", "email", "ann.lee@work.com"),
    ("K1", "phone", "+442079460958"),
    ("K1", "customer_id", "acc1"),
    ("K1", "anonymous_id", "cookie1"),
    ("K2", "email", "bob@x.com"),
    ("K3", "email", "cy@x.com"),
]


@pytest.fixture()
def config(tmp_path: Path) -> CdpConfig:
    return load_config(env="test", overrides={"data_root": str(tmp_path / "data")})


def write_inputs(spark: SparkSession, store: TableStore, *, identity: bool = True) -> None:
    store.overwrite("silver/person_records", spark.createDataFrame(PERSONS, PERSONS_SCHEMA))
    store.overwrite("silver/transactions", spark.createDataFrame(TRANSACTIONS, TRANSACTIONS_SCHEMA))
    store.overwrite("silver/consents", spark.createDataFrame(CONSENTS, CONSENTS_SCHEMA))
    store.overwrite("silver/events", spark.createDataFrame(EVENTS, EVENTS_SCHEMA))
    if identity:
        store.overwrite(
            "gold/identity_map",
            spark.createDataFrame(
                IDENTITY_MAP,
                "customer_id string, source string, source_record_id string, record_table string",
            ).withColumns({"assigned_run_id": F.lit("r0"), "assigned_at": F.current_timestamp()}),
        )
        store.overwrite(
            "gold/identity_identifiers",
            spark.createDataFrame(
                IDENTIFIERS, "customer_id string, id_type string, id_value string"
            ),
        )


def run_log(store: TableStore, run_id: str) -> DataFrame:
    return store.read("ops/run_log").where(F.col("run_id") == run_id)


def test_profile_stage_end_to_end(spark: SparkSession, config: CdpConfig) -> None:
    store = open_store(spark, config)
    write_inputs(spark, store)

    result = run_stage("profile", spark=spark, config=config, as_of=date(2024, 6, 30))
    assert result.status == "success"
    assert result.rows_written == {PROFILE_TABLE: 2}
    profile = store.read(PROFILE_TABLE)

    best = profile.select(
        "customer_id", "first_name", "first_name_source", "email", "email_source",
        "email_source_record_id", "phone", "phone_source", "address_line1", "postcode",
        "address_source_record_id", "birth_date", "birth_date_source", "gender",
    )  # fmt: skip
    assert_df_equality(
        best,
        spark.createDataFrame(
            [
                (
                    "K1",
                    "Ann",
                    "crm_contacts",
                    "ann@x.com",
                    "ecommerce_orders",
                    "o1",
                    "+447700900001",
                    "loyalty_members",
                    "1 High St",
                    "SW1A 1AA",
                    "c1",
                    date(1980, 5, 1),
                    "crm_contacts",
                    "female",
                ),
                (
                    "K2",
                    None,
                    None,
                    "bob@x.com",
                    "ecommerce_orders",
                    "o3",
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                ),
            ],  # fmt: skip
            best.schema,
        ),
        ignore_row_order=True,  # row order is not part of the table's contract
        ignore_nullable=True,  # Delta reads every column back as nullable
    )

    summary = profile.select(
        "customer_id", "emails", "phones", "record_count", "source_count", "sources",
        "first_seen", "last_seen", "email_marketing_consent", "sms_marketing_consent",
        F.col("consents.status").alias("consent_statuses"), "last_purchase_at", "recency_days",
        "frequency", "monetary", "avg_order_value", "event_count", "sessions_7d",
        "page_views_7d", "email_opens_7d", "page_views_90d", "as_of",
    )  # fmt: skip
    expected = spark.createDataFrame(
        [
            (
                "K1",
                ["ann.lee@work.com", "ann@x.com"],
                ["+442079460958", "+447700900001"],
                7,
                4,
                ["consents", "crm_contacts", "ecommerce_orders", "loyalty_members"],
                ts("2024-01-01 09:00:00"),
                ts("2024-06-29 10:05:00"),
                True,
                False,
                ["granted", "withdrawn"],
                ts("2024-06-20 12:00:00"),
                10,
                2,
                50.0,
                25.0,
                2,
                1,
                2,
                0,
                2,
                date(2024, 6, 30),
            ),
            (
                "K2",
                ["bob@x.com"],
                [],
                1,
                1,
                ["ecommerce_orders"],
                ts("2024-05-01 12:00:00"),
                ts("2024-06-25 08:00:00"),
                False,
                False,
                [],
                ts("2024-05-01 12:00:00"),
                60,
                1,
                15.0,
                15.0,
                1,
                0,
                0,
                1,
                0,
                date(2024, 6, 30),
            ),
        ],  # fmt: skip
        summary.schema,
    )
    assert_df_equality(summary, expected, ignore_row_order=True, ignore_nullable=True)

    scores = {
        r.customer_id: r
        for r in profile.select(
            "customer_id", "r_score", "f_score", "m_score", "rfm_segment"
        ).collect()
    }
    # K1 bought more, more recently and for more than K2: it scores higher on all three.
    for s in ("r_score", "f_score", "m_score"):
        assert 1 <= scores["K2"][s] < scores["K1"][s] <= 5
    assert {r.profile_run_id for r in profile.select("profile_run_id").collect()} == {result.run_id}
    identifiers = profile.where("customer_id = 'K1'").select("identifiers").first()
    assert identifiers is not None
    assert [tuple(i) for i in identifiers[0]] == sorted(
        (t, v) for k, t, v in IDENTIFIERS if k == "K1"
    )

    log = run_log(store, result.run_id).first()
    assert log is not None and log.status == "success"
    assert log.rows_read["gold/identity_map"] == len(IDENTITY_MAP)

    # Without --as-of the profile is dated by the latest transaction (2024-07-15): order o4
    # now counts, and the table is replaced, not appended to.
    again = run_stage("profile", spark=spark, config=config)
    profile = store.read(PROFILE_TABLE)
    assert again.rows_written == {PROFILE_TABLE: 2} and profile.count() == 2
    k1 = profile.where("customer_id = 'K1'").first()
    assert k1 is not None
    assert (k1.as_of, k1.frequency, k1.monetary) == (date(2024, 7, 15), 3, 100.0)


def test_profile_stage_needs_identity(spark: SparkSession, config: CdpConfig) -> None:
    store = open_store(spark, config)
    store.overwrite("silver/person_records", spark.createDataFrame(PERSONS[:1], PERSONS_SCHEMA))
    with pytest.raises(
        StageFailed, match="gold/identity_map does not exist: run the identity stage"
    ):
        run_stage("profile", spark=spark, config=config, as_of=date(2024, 6, 30))
