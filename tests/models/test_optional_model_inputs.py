"""Model inputs without rows: the features they would give are left out of the models."""

from __future__ import annotations

from datetime import date, datetime

from pyspark.sql import SparkSession

from cdp import tables as T
from cdp.models.features import feature_inputs
from cdp.models.features_stage import left_out_features, parts_of
from cdp.models.inputs import Inputs
from cdp.models.settings import ModelsConfig
from cdp.optional_inputs import empty_silver

MAP_DDL = "customer_id string, record_table string, source string, source_record_id string"
IDS_DDL = "customer_id string, id_type string, id_value string"


def _inputs(spark: SparkSession, *, missing: tuple[str, ...]) -> Inputs:
    tx = spark.createDataFrame(
        [("pos", "1", "C1", 12.5, datetime(2024, 5, 1, 10), None, None, False)],
        "source string, source_record_id string, customer_id string, amount double, "
        "order_time timestamp, channel string, items string, is_deleted boolean",
    )
    ev = empty_silver(spark, T.EVENTS.name)
    if "events" not in missing:  # present, with one row
        ev = spark.createDataFrame(
            [("web", "e1", "page_view", datetime(2024, 4, 1, 10), "web", "C1", None, None, None)],
            "source string, source_record_id string, event_type string, event_time timestamp, "
            "channel string, customer_id string, email string, anonymous_id string, "
            "device_id string",
        )
    frames = {
        "transactions": tx,
        "events": ev,
        "consents": empty_silver(spark, T.CONSENTS.name),
        "persons": empty_silver(spark, T.PERSON_RECORDS.name),
        "identity_map": spark.createDataFrame([("C1", "transactions", "pos", "1")], MAP_DDL),
        "identifiers": spark.createDataFrame([("C1", "customer_id", "C1")], IDS_DDL),
    }
    return Inputs(frames, {}, missing)


def test_features_of_inputs_without_rows_are_left_out(spark: SparkSession) -> None:
    settings = ModelsConfig()
    as_of = date(2024, 6, 1)
    # Events, consents and persons missing: none of their features reaches a model.
    inputs = _inputs(spark, missing=("events", "consents", "persons"))
    assert inputs.without_rows() == ("events", "consents", "persons")
    left_out = set(left_out_features(inputs, as_of, settings))
    by_input = feature_inputs(parts_of(inputs, as_of, settings))
    assert {"web_events_30d", "emails_sent_90d", "consent_marketing_email", "age_years"} <= left_out
    assert left_out == set(by_input["events"] + by_input["consents"] + by_input["persons"])
    assert not left_out & set(by_input["transactions"])
    assert {"orders_365d", "has_purchased"} <= set(by_input["transactions"])

    # Events present with rows: their features stay; consents and persons exist but are empty.
    inputs = _inputs(spark, missing=())
    assert inputs.without_rows() == ("consents", "persons")
    left_out = set(left_out_features(inputs, as_of, settings))
    assert "web_events_30d" not in left_out
    assert "age_years" in left_out
