"""Unit tests of the profile transformations (survivorship, consents, RFM, engagement),
chispa style, on a handful of inline rows."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession

from cdp.config import ConfigError
from cdp.profile import aggregates as A
from cdp.profile.survivorship import (
    AttributeRule,
    Strategy,
    load_profile_rules,
    survive,
)

REPO_RULES = Path(__file__).resolve().parents[2] / "conf" / "rules" / "profile.yaml"

CANDIDATES = (
    "customer_id string, record_table string, source string, source_record_id string, "
    "record_time timestamp, first_name string, email string, address_line1 string, "
    "city string, postcode string, country string, gender string"
)


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_survivorship_strategies_tie_breakers_and_provenance(spark: SparkSession) -> None:
    t1, t2, t3, t4 = ts("2024-01-01"), ts("2024-02-01"), ts("2024-03-01"), ts("2024-04-01")
    rows = [
        # c1: the CRM has a name and a 3-field address; loyalty has the full address.
        (
            "c1",
            "person_records",
            "crm",
            "r1",
            t1,
            "Ann",
            "a@x.com",
            "1 High St",
            "London",
            None,
            "GB",
            "female",
        ),
        (
            "c1",
            "person_records",
            "loy",
            "l1",
            t3,
            "Anne",
            "b@x.com",
            "2 Low Rd",
            "Leeds",
            "LS1 1AA",
            "GB",
            "male",
        ),
        ("c1", "person_records", "loy", "l2", t2, None, "b@x.com", None, None, None, None, None),
        # An order carrying a@x.com makes it as frequent as b@x.com, and newer: it wins.
        ("c1", "transactions", "shop", "o1", t4, None, "a@x.com", None, None, None, None, None),
        # c2: only an unlisted source; gender is only taken from the CRM.
        (
            "c2",
            "person_records",
            "web",
            "w1",
            t1,
            "Bo",
            None,
            "3 Mill Ln",
            None,
            None,
            "FR",
            "male",
        ),
        # c3: a full tie on every strategy: the smaller source record id decides.
        ("c3", "person_records", "crm", "r5", t1, "Cy", None, None, None, None, None, None),
        ("c3", "person_records", "crm", "r4", t1, "Cyd", None, None, None, None, None, None),
        # A record without time ranks after timed ones for most_recent.
        ("c3", "person_records", "loy", "l9", None, None, "c@x.com", None, None, None, None, None),
        ("c3", "person_records", "loy", "l8", t1, None, "d@x.com", None, None, None, None, None),
    ]
    candidates = spark.createDataFrame(rows, CANDIDATES)
    ladder = [Strategy.MOST_RECENT, Strategy.SOURCE_PRIORITY]
    rules = [
        AttributeRule(
            name="first_name",
            fields=["first_name"],
            strategy=Strategy.SOURCE_PRIORITY,
            sources=["crm", "loy"],
            tie_breakers=ladder,
        ),
        AttributeRule(
            name="email",
            fields=["email"],
            strategy=Strategy.MOST_FREQUENT,
            tie_breakers=ladder,
            tables=["person_records", "transactions"],
        ),
        AttributeRule(
            name="address",
            fields=["address_line1", "city", "postcode", "country"],
            strategy=Strategy.MOST_COMPLETE,
            tie_breakers=ladder,
            required=["address_line1"],
        ),
        AttributeRule(
            name="gender",
            fields=["gender"],
            strategy=Strategy.SOURCE_PRIORITY,
            sources=["crm"],
            only_listed=True,
        ),
    ]
    actual = survive(candidates, rules, extra_aggregates=A.record_aggregates()[:3])
    expected = spark.createDataFrame(
        [
            (
                "c1",
                "Ann",
                "crm",
                "r1",
                "a@x.com",
                "shop",
                "o1",
                "2 Low Rd",
                "Leeds",
                "LS1 1AA",
                "GB",
                "loy",
                "l1",
                "female",
                "crm",
                "r1",
                4,
                3,
                ["crm", "loy", "shop"],
            ),
            (
                "c2",
                "Bo",
                "web",
                "w1",
                None,
                None,
                None,
                "3 Mill Ln",
                None,
                None,
                "FR",
                "web",
                "w1",
                None,
                None,
                None,
                1,
                1,
                ["web"],
            ),
            (
                "c3",
                "Cyd",
                "crm",
                "r4",
                "d@x.com",
                "loy",
                "l8",
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                4,
                2,
                ["crm", "loy"],
            ),
        ],
        "customer_id string, first_name string, first_name_source string, "
        "first_name_source_record_id string, email string, email_source string, "
        "email_source_record_id string, address_line1 string, city string, postcode string, "
        "country string, address_source string, address_source_record_id string, "
        "gender string, gender_source string, gender_source_record_id string, "
        "record_count long, source_count long, sources array<string>",
    )
    # Row order is not part of the contract; nullability differs between aggregates and
    # literals, which is not what this test is about.
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_repo_rules_load_and_bad_rules_fail_with_the_key_named(tmp_path: Path) -> None:
    rules = load_profile_rules(REPO_RULES)
    names = [r.name for r in rules.resolved()]
    assert names == [
        "first_name", "last_name", "email", "phone", "address", "birth_date", "birth_year", "gender"
    ]  # fmt: skip
    address = next(r for r in rules.resolved() if r.name == "address")
    assert address.fields == ["address_line1", "city", "postcode", "country"]
    assert address.tie_breakers == [Strategy.MOST_RECENT, Strategy.SOURCE_PRIORITY]

    bad_field = tmp_path / "f.yaml"
    bad_field.write_text("attributes:\n  nickname: {strategy: most_recent}\n")
    with pytest.raises(
        ConfigError, match="nickname.*'nickname' is not a column of silver/person_records"
    ):
        load_profile_rules(bad_field)
    bad_strategy = tmp_path / "s.yaml"
    bad_strategy.write_text("attributes:\n  email: {strategy: loudest}\n")
    with pytest.raises(ConfigError, match=r"attributes\.email\.strategy"):
        load_profile_rules(bad_strategy)
    clash = tmp_path / "c.yaml"
    clash.write_text(
        "attributes:\n  city: {strategy: most_recent}\n"
        "  address: {strategy: most_complete, fields: [address_line1, city]}\n"
    )
    with pytest.raises(ConfigError, match="output column 'city'"):
        load_profile_rules(clash)


def test_latest_consent_per_purpose_and_channel_wins(spark: SparkSession) -> None:
    rows = [
        ("c1", "cons", "k1", ts("2024-01-01 10:00:00"), "marketing", "email", "granted"),
        ("c1", "cons", "k2", ts("2024-03-01 10:00:00"), "marketing", "email", "withdrawn"),
        ("c1", "crm", "k3", ts("2024-05-01 10:00:00"), "marketing", "email", "granted"),
        # Same instant: the refusal wins whatever the record ids.
        ("c1", "cons", "k9", ts("2024-02-01 10:00:00"), "marketing", "sms", "granted"),
        ("c1", "cons", "k4", ts("2024-02-01 10:00:00"), "marketing", "sms", "withdrawn"),
        ("c2", "cons", "k5", ts("2024-01-01 10:00:00"), "analytics", "web", "granted"),
        ("c2", "cons", "k6", ts("2024-01-02 10:00:00"), None, "web", "withdrawn"),  # ignored
    ]
    consents = spark.createDataFrame(
        rows,
        "customer_id string, source string, source_record_id string, record_time timestamp, "
        "purpose string, channel string, status string",
    )
    actual = A.latest_consents(
        consents,
        granted_statuses=["granted"],
        flags={"email_marketing_consent": "email", "sms_marketing_consent": "sms"},
    )
    expected = spark.createDataFrame(
        [
            (
                "c1",
                [
                    ("marketing", "email", "granted", ts("2024-05-01 10:00:00"), "crm"),
                    ("marketing", "sms", "withdrawn", ts("2024-02-01 10:00:00"), "cons"),
                ],
                True,
                False,
            ),
            (
                "c2",
                [("analytics", "web", "granted", ts("2024-01-01 10:00:00"), "cons")],
                False,
                False,
            ),
        ],
        "customer_id string, consents array<struct<purpose:string, channel:string, "
        "status:string, consent_time:timestamp, source:string>>, "
        "email_marketing_consent boolean, sms_marketing_consent boolean",
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_rfm_metrics_scores_and_segments(spark: SparkSession) -> None:
    as_of = date(2024, 6, 30)
    rows = []
    # Five buyers b1..b5: b<i> has i orders of 10 each, the last one i days before as_of,
    # so b5 is the most recent, most frequent and biggest spender.
    for i in range(1, 6):
        for j in range(i):
            day = datetime(2024, 6, 30 - (6 - i) - j, 12)
            rows.append((f"b{i}", "shop", f"o{i}{j}", f"o{i}{j}", 10.0, "EUR", day))
    # The same order twice through another record of it counts once; a GBP order converts.
    rows.append(("b1", "shop", "o10-dup", "o10", 0.0, "EUR", datetime(2024, 6, 25, 12)))
    rows.append(("b1", "till", "t1", None, 5.0, "GBP", datetime(2024, 1, 1, 12)))
    txns = spark.createDataFrame(
        rows,
        "customer_id string, source string, source_record_id string, order_id string, "
        "amount double, currency string, record_time timestamp",
    )
    spend = A.rfm(txns, as_of=as_of, fx_rates={"EUR": 1.0, "GBP": 2.0}).transform(
        lambda df: A.rfm_scores(df, bins=5)
    )
    expected = spark.createDataFrame(
        [
            ("b1", datetime(2024, 6, 25, 12), 5, 2, 20.0, 10.0, 1, 1, 1, "hibernating"),
            ("b2", datetime(2024, 6, 26, 12), 4, 2, 20.0, 10.0, 2, 1, 1, "hibernating"),
            ("b3", datetime(2024, 6, 27, 12), 3, 3, 30.0, 10.0, 3, 3, 3, "loyal"),
            ("b4", datetime(2024, 6, 28, 12), 2, 4, 40.0, 10.0, 4, 4, 4, "champions"),
            ("b5", datetime(2024, 6, 29, 12), 1, 5, 50.0, 10.0, 5, 5, 5, "champions"),
        ],
        "customer_id string, last_purchase_at timestamp, recency_days int, frequency long, "
        "monetary double, avg_order_value double, r_score int, f_score int, m_score int, "
        "rfm_segment string",
    )
    assert_df_equality(spend, expected, ignore_row_order=True, ignore_nullable=True)


def test_rfm_counts_invoices_not_lines_and_refunds_are_no_purchase(spark: SparkSession) -> None:
    as_of = date(2024, 6, 30)
    cols = (
        "customer_id string, source string, source_record_id string, order_id string, "
        "amount double, currency string, record_time timestamp"
    )
    may, june = datetime(2024, 5, 1, 10), datetime(2024, 6, 10, 10)
    txns = spark.createDataFrame(
        [
            # Three lines of one invoice, a second invoice, then its cancellation.
            ("c1", "pos", "l1", "536365", 2.5, "GBP", may),
            ("c1", "pos", "l2", "536365", 3.5, "GBP", may),
            ("c1", "pos", "l3", "536365", 4.0, "GBP", may),
            ("c1", "pos", "l4", "536370", 20.0, "GBP", june),
            ("c1", "pos", "l5", "C536371", -20.0, "GBP", datetime(2024, 6, 20, 10)),
            # Only a refund in the window: no buyer.
            ("c2", "pos", "l6", "C536380", -5.0, "GBP", june),
        ],
        cols,
    )
    expected = spark.createDataFrame(
        [("c1", june, 20, 2, 10.0, 5.0)],
        "customer_id string, last_purchase_at timestamp, recency_days int, frequency long, "
        "monetary double, avg_order_value double",
    )
    assert_df_equality(A.rfm(txns, as_of=as_of), expected, ignore_nullable=True)


def test_events_are_attributed_through_identifiers_and_counted_per_window(
    spark: SparkSession,
) -> None:
    identifiers = spark.createDataFrame(
        [
            ("c1", "customer_id", "acc1"),
            ("c1", "anonymous_id", "cookieA"),
            ("c2", "email", "bo@x.com"),
            ("c2", "device_id", "dev1"),  # shared device: also seen with c1's login
        ],
        "customer_id string, id_type string, id_value string",
    )
    props = '{"session_id": "%s"}'
    events = spark.createDataFrame(
        [
            # c1: two web sessions in the last 7 days (one anonymous, by cookie), one older.
            (
                "web",
                "e1",
                "page_view",
                ts("2024-06-29 10:00:00"),
                "web",
                props % "s1",
                None,
                "cookieA",
                None,
                None,
                False,
            ),
            (
                "web",
                "e2",
                "add_to_cart",
                ts("2024-06-29 10:01:00"),
                "web",
                props % "s1",
                None,
                "cookieA",
                None,
                None,
                False,
            ),
            (
                "web",
                "e3",
                "page_view",
                ts("2024-06-30 23:59:00"),
                "web",
                props % "s2",
                "acc1",
                None,
                "dev1",
                None,
                False,
            ),
            (
                "web",
                "e4",
                "page_view",
                ts("2024-06-10 09:00:00"),
                "web",
                props % "s3",
                "acc1",
                None,
                None,
                None,
                False,
            ),
            # After as_of, deleted, or unknown: not counted.
            (
                "web",
                "e5",
                "page_view",
                ts("2024-07-01 00:00:00"),
                "web",
                props % "s4",
                "acc1",
                None,
                None,
                None,
                False,
            ),
            (
                "web",
                "e6",
                "page_view",
                ts("2024-06-29 11:00:00"),
                "web",
                props % "s5",
                "acc1",
                None,
                None,
                None,
                True,
            ),
            (
                "web",
                "e7",
                "page_view",
                ts("2024-06-29 11:00:00"),
                "web",
                props % "s6",
                None,
                "nobody",
                None,
                None,
                False,
            ),
            # c2: email engagement; an app event without session id counts as its day.
            (
                "esp",
                "m1",
                "open",
                ts("2024-06-20 08:00:00"),
                "email",
                None,
                None,
                None,
                None,
                "bo@x.com",
                False,
            ),
            (
                "esp",
                "m2",
                "click",
                ts("2024-06-20 08:05:00"),
                "email",
                None,
                None,
                None,
                None,
                "bo@x.com",
                False,
            ),
            (
                "esp",
                "m3",
                "open",
                ts("2024-03-01 08:00:00"),
                "email",
                None,
                None,
                None,
                None,
                "bo@x.com",
                False,
            ),
            (
                "app",
                "a1",
                "screen_view",
                ts("2024-06-28 08:00:00"),
                "app",
                None,
                None,
                None,
                "dev1",
                None,
                False,
            ),
            (
                "app",
                "a2",
                "screen_view",
                ts("2024-06-28 09:00:00"),
                "app",
                None,
                None,
                None,
                "dev1",
                None,
                False,
            ),
        ],
        "source string, source_record_id string, event_type string, event_time timestamp, "
        "channel string, properties string, customer_id string, anonymous_id string, "
        "device_id string, email string, is_deleted boolean",
    )
    attributed = A.attribute_events(
        events,
        identifiers,
        id_columns={
            "customer_id": "customer_id",
            "email": "email",
            "device_id": "device_id",
            "anonymous_id": "anonymous_id",
        },
        before=A.day_end(date(2024, 6, 30)),
    )
    assert sorted((r.source_record_id, r.customer_id) for r in attributed.collect()) == [
        ("a1", "c2"), ("a2", "c2"), ("e1", "c1"), ("e2", "c1"),
        ("e3", "c1"),  # the login beats the shared device
        ("e4", "c1"), ("m1", "c2"), ("m2", "c2"), ("m3", "c2"),
    ]  # fmt: skip
    actual = A.engagement(
        attributed,
        as_of=date(2024, 6, 30),
        windows_days=[7, 30],
        session_channels=["web", "app"],
        page_view_types=["page_view", "screen_view"],
        email_open_types=["open"],
        email_click_types=["click"],
    )
    expected = spark.createDataFrame(
        [
            ("c1", 4, ts("2024-06-10 09:00:00"), ts("2024-06-30 23:59:00"), 2, 2, 0, 0, 3, 3, 0, 0),
            ("c2", 5, ts("2024-03-01 08:00:00"), ts("2024-06-28 09:00:00"), 1, 2, 0, 0, 1, 2, 1, 1),
        ],
        "customer_id string, event_count long, events_first_seen timestamp, "
        "events_last_seen timestamp, sessions_7d long, page_views_7d long, email_opens_7d long, "
        "email_clicks_7d long, sessions_30d long, page_views_30d long, email_opens_30d long, "
        "email_clicks_30d long",
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)
