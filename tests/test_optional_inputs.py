"""Optional silver inputs (cdp.optional_inputs): a missing canonical table reads as empty with
its canonical columns, and the run log and the progress say it was missing."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from pyspark.sql import SparkSession

from cdp import tables as T
from cdp.config import load_config
from cdp.optional_inputs import missing_inputs, missing_metric, read_or_empty
from cdp.pipeline import get_stage
from cdp.runlog import RunRecorder
from cdp.silver.model import TABLES, empty_schema_ddl
from cdp.stage import StageContext
from cdp.storage import open_store


def test_empty_schema_has_every_canonical_field_typed() -> None:
    for table in TABLES.values():
        ddl = empty_schema_ddl(table)
        columns = dict(c.split(" ", 1) for c in ddl.split(", "))
        assert set(table.fields) | {"source", "is_deleted", "attributes"} == set(columns)
        assert columns[table.time_field] == "timestamp"
    assert "amount decimal(18,2)" in empty_schema_ddl(TABLES["transactions"])


def test_model_stages_declare_events_consents_and_persons_optional() -> None:
    optional = {T.EVENTS, T.CONSENTS, T.PERSON_RECORDS}
    for name in ("features", "train", "score", "backtest"):
        stage = get_stage(name)
        assert optional <= set(stage.optional_reads), name
        assert not optional & set(stage.reads), name
        assert T.TRANSACTIONS in stage.reads


def test_missing_table_reads_as_empty_and_is_recorded(spark: SparkSession, tmp_path: Path) -> None:
    config = load_config(env="test", overrides={"data_root": str(tmp_path / "data")})
    store = open_store(spark, config)
    said: list[str] = []
    run = RunRecorder(
        run_id="r1",
        job="test",
        env="test",
        config_hash="x",
        backend=store.backend_name,
        started_at=datetime.now(timezone.utc),
    )
    ctx = StageContext(spark=spark, config=config, store=store, run=run, progress=said.append)

    events = read_or_empty(ctx, T.EVENTS.name, "no engagement")
    assert events.count() == 0
    assert {"source", "event_type", "event_time", "customer_id", "is_deleted"} <= set(
        events.columns
    )
    assert dict(events.dtypes)["event_time"] == "timestamp"
    assert run.metrics[missing_metric(T.EVENTS.name)] == "1"
    assert missing_inputs(run.metrics) == [T.EVENTS.name]
    assert said == ["silver/events does not exist: read as empty (no engagement)"]

    # A table that exists is read as it is, and nothing is recorded.
    store.overwrite(T.CONSENTS.name, spark.createDataFrame([("s", "1")], "source string, x string"))
    assert read_or_empty(ctx, T.CONSENTS.name).count() == 1
    assert missing_inputs(run.metrics) == [T.EVENTS.name]
