"""Scenario tests of bronze ingestion on small hand-made landing zones."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from landing_helpers import declare, ingest, make_config, write
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdp import faults
from cdp.bronze.tables import INGESTED_FILES_TABLE, QUARANTINE_TABLE
from cdp.runner import StageFailed
from cdp.storage import open_store

CSV_1 = (
    "id,email,name\n"
    "1,a@x.com,Ann\n"
    "2,b@x.com\n"  # too few fields
    '3,"c,c@x.com",Cé\n'
    "4,d@x.com,Dan,extra\n"  # too many fields
    "4,d@x.com,Dan\n"
    "4,d@x.com,Dan\n"  # exact duplicate row: kept (silver collapses it)
)
NDJSON_LINES = [
    '{"id": 1, "user": {"email": "a@x.com"}, "ts": "2024-01-01T00:00:00Z"}',
    '{"id": 2, "user": {"email": "b@x.com"}, "ts": "2024-01-02T00:00:00Z"',  # truncated
    '{"id": 3, "user": {"email": null}, "ts": "2024-01-03T00:00:00Z"}',
    "not json at all",
]
XML = """<members>
<member><id>1</id><email>a@x.com</email></member>
<member><id>2</id><email>b@x.com</email></member>
</members>
"""


def test_every_format_lands_with_lineage_and_accounting(
    spark: SparkSession, env: dict[str, Path]
) -> None:
    landing, sources = env["landing"], env["sources"]
    write(landing / "crm/d1/contacts.csv", CSV_1)
    write(landing / "crm/d1/empty.csv", "")
    write(landing / "pos/d1/pos.csv", "rid;amount;name\n1;12,50;José\n2;3,00\n", encoding="latin-1")
    write(landing / "web/d1/events.json.gz", gzip.compress("\n".join(NDJSON_LINES).encode()))
    write(landing / "email/d1/e.json", '[{"id": 1, "ev": "open"}, {"id": 2, "ev": "click"}]')
    write(landing / "loyalty/d1/m.xml", XML)
    write(landing / "notes/d1/n.txt", "first line\nsecond line\n")
    pq.write_table(
        pa.table({"order_id": [1, 2, 3], "total": [1.5, 2.5, 3.5]}), landing / "orders_d1.parquet"
    )
    write(landing / "orders_broken.parquet", b"PAR1 this is not a parquet file")
    import pyarrow.orc as orc

    (landing / "stores").mkdir()
    orc.write_table(
        pa.table({"store_id": ["s1", "s2"], "city": ["Leeds", "Köln"]}),
        str(landing / "stores/s.orc"),
    )

    declare(
        sources,
        "crm",
        format="csv",
        path="crm/*/*.csv",
        options={"header": True},
        primary_key=["id"],
        mapping={"source_record_id": "id", "email": "email"},
    )
    declare(
        sources,
        "pos",
        format="csv",
        path="pos/*/*.csv",
        options={"header": "true", "sep": ";", "encoding": "ISO-8859-1"},
        primary_key=["rid"],
    )
    declare(
        sources,
        "web",
        kind="event",
        format="ndjson",
        path="web/*/*.json.gz",
        mapping={"email": "user.email"},
    )
    declare(
        sources,
        "email",
        kind="event",
        format="json",
        path="email/*/*.json",
        options={"multiLine": "true"},
    )
    declare(sources, "loyalty", format="xml", path="loyalty/*/*.xml", options={"rowTag": "member"})
    declare(sources, "notes", kind="other", format="text", path="notes/*/*.txt")
    declare(sources, "orders", kind="transaction", format="parquet", path="orders_*.parquet")
    declare(sources, "stores", kind="other", format="orc", path="stores/*.orc")

    config = make_config(env)
    result = ingest(spark, config)
    store = open_store(spark, config)

    expected = {  # (landed, quarantined) from the files above, counted by hand
        "crm": (4, 2),
        "pos": (1, 1),
        "web": (2, 2),
        "email": (2, 0),
        "loyalty": (2, 0),
        "notes": (2, 0),
        "orders": (3, 1),
        "stores": (2, 0),
    }
    quarantine = store.read(QUARANTINE_TABLE)
    for source, (landed, quarantined) in expected.items():
        assert store.read(f"bronze/{source}").count() == landed, source
        assert quarantine.where(f"_source = '{source}'").count() == quarantined, source
    assert result.rows_written == {f"bronze/{s}": n for s, (n, _) in expected.items()}
    assert result.rows_quarantined == {f"bronze/{s}": n for s, (_, n) in expected.items()}

    crm = store.read("bronze/crm")
    assert crm.schema["id"].dataType.simpleString() == "string"  # CSV stays as text
    row = crm.where("id = '3'").collect()[0]
    assert row.email == "c,c@x.com" and row.name == "Cé"
    assert row._file_path.endswith("crm/d1/contacts.csv")
    assert row._row_number == 3 and row._file_offset == 0
    assert row._file_size == len(CSV_1.encode())
    assert row._ingest_run_id == result.run_id and len(row._record_hash) == 32
    dups = crm.where("id = '4'").collect()
    assert len(dups) == 2 and len({r._record_hash for r in dups}) == 1
    assert {r._row_number for r in dups} == {5, 6}

    assert store.read("bronze/pos").collect()[0].name == "José"  # latin-1 decoded
    web = store.read("bronze/web")
    assert web.schema["user"].dataType.simpleString() == "struct<email:string>"  # nested kept
    bad = {r.raw_record: r.reason for r in quarantine.where("_source = 'web'").collect()}
    assert bad[NDJSON_LINES[3]] == "malformed JSON record"
    crm_bad = quarantine.where("_source = 'crm'").orderBy("_row_number").collect()
    assert [r.raw_record for r in crm_bad] == ["2,b@x.com", "4,d@x.com,Dan,extra"]
    assert [r._row_number for r in crm_bad] == [2, 4]
    broken = quarantine.where("_source = 'orders'").collect()[0]
    assert broken.reason.startswith("unreadable parquet file") and broken._file_path.endswith(
        "orders_broken.parquet"
    )

    files = store.read(INGESTED_FILES_TABLE)
    assert files.count() == 10
    assert files.where("status = 'empty'").count() == 1
    assert files.where("status = 'unreadable'").count() == 1
    log_row = store.read("ops/run_log").where(f"run_id = '{result.run_id}'").collect()[0]
    # orders_broken.parquet was quarantined whole: everything else landed, the run is partial.
    assert log_row.status == "partial" and log_row.rows_quarantined["bronze/crm"] == 2


def test_rerun_is_a_no_op_and_new_files_are_incremental(
    spark: SparkSession, env: dict[str, Path]
) -> None:
    write(env["landing"] / "crm/d1/a.csv", "id,email\n1,a@x.com\n2,b@x.com\n")
    declare(env["sources"], "crm", format="csv", path="crm/*/*.csv", options={"header": "true"})
    config = make_config(env)
    ingest(spark, config)
    store = open_store(spark, config)
    versions = {t: store.version(t) for t in store.list_tables() if t != "ops/run_log"}
    again = ingest(spark, config)
    assert again.rows_written == {}
    assert {t: store.version(t) for t in versions} == versions

    write(env["landing"] / "crm/d2/b.csv", "id,email\n3,c@x.com\n")
    third = ingest(spark, config)
    assert third.rows_written == {"bronze/crm": 1}
    assert sorted(r.id for r in store.read("bronze/crm").collect()) == ["1", "2", "3"]


def test_changed_file_lands_only_its_new_rows(spark: SparkSession, env: dict[str, Path]) -> None:
    path = env["landing"] / "crm/d1/a.csv"
    write(path, "id,email\n1,a@x.com\n2,b@x.com\n")
    declare(env["sources"], "crm", format="csv", path="crm/*/*.csv", options={"header": "true"})
    config = make_config(env)
    ingest(spark, config)
    write(path, "id,email\n1,a@x.com\n2,b-new@x.com\n3,c@x.com\n")
    os.utime(path, (os.stat(path).st_atime, os.stat(path).st_mtime + 10))
    result = ingest(spark, config)
    assert result.rows_written == {"bronze/crm": 2}
    store = open_store(spark, config)
    got = sorted((r.id, r.email) for r in store.read("bronze/crm").collect())
    assert got == [("1", "a@x.com"), ("2", "b-new@x.com"), ("2", "b@x.com"), ("3", "c@x.com")]


def test_schema_drift_adds_columns_and_rescues_retyped_values(
    spark: SparkSession, env: dict[str, Path]
) -> None:
    landing = env["landing"]
    pq.write_table(pa.table({"order_id": [1, 2], "total": [1.5, 2.5]}), landing / "o_1.parquet")
    declare(env["sources"], "orders", kind="transaction", format="parquet", path="o_*.parquet")
    write(landing / "crm/d1/a.csv", "id,email\n1,a@x.com\n")
    declare(env["sources"], "crm", format="csv", path="crm/*/*.csv", options={"header": "true"})
    config = make_config(env)
    ingest(spark, config)
    # Drop 2: a changed type and an added column (parquet); a renamed and an added column (csv).
    pq.write_table(
        pa.table({"order_id": [3, 4], "total": ["3.5", "n/a"], "channel": ["web", "pos"]}),
        landing / "o_2.parquet",
    )
    write(landing / "crm/d2/a.csv", "id,email_address,language\n2,b@x.com,fr\n")
    ingest(spark, config)
    # A nested struct gains a field in a later run (device.browser): the column widens.
    write(landing / "web/d1/w.json", '{"id": 1, "device": {"id": "d1", "os": "ios"}}\n')
    declare(env["sources"], "web", kind="event", format="ndjson", path="web/*/*.json")
    ingest(spark, config)
    write(
        landing / "web/d2/w.json",
        '{"id": 2, "device": {"id": "d2", "os": "android", "browser": "chrome"}}\n',
    )
    ingest(spark, config)
    store = open_store(spark, config)
    orders = {r.order_id: r for r in store.read("bronze/orders").collect()}
    assert orders[3].total == 3.5 and orders[3]._rescued_data is None
    assert orders[4].total is None and json.loads(orders[4]._rescued_data) == {"total": "n/a"}
    assert orders[4].channel == "pos" and orders[1].channel is None
    assert store.schema("bronze/orders")["total"].dataType.simpleString() == "double"
    crm = {r.id: r for r in store.read("bronze/crm").collect()}
    assert (
        crm["2"].email_address == "b@x.com" and crm["2"].email is None and crm["2"].language == "fr"
    )


def test_rescue_mode_keeps_the_schema_fixed(spark: SparkSession, env: dict[str, Path]) -> None:
    write(env["landing"] / "crm/d1/a.csv", "id,email\n1,a@x.com\n")
    declare(
        env["sources"],
        "crm",
        format="csv",
        path="crm/*/*.csv",
        options={"header": "true"},
        schema_evolution="rescue",
    )
    config = make_config(env)
    ingest(spark, config)
    write(env["landing"] / "crm/d2/a.csv", "id,email,extra\n2,b@x.com,zz\n")
    ingest(spark, config)
    store = open_store(spark, config)
    assert "extra" not in store.schema("bronze/crm").fieldNames()
    row = store.read("bronze/crm").where("id = '2'").collect()[0]
    assert json.loads(row._rescued_data) == {"extra": "zz"}


@pytest.mark.parametrize(
    "fault_point", ["ingest.after_bronze_commit", "ingest.after_quarantine_commit"]
)
def test_crash_after_a_commit_then_rerun_lands_everything_once(
    spark: SparkSession, env: dict[str, Path], monkeypatch: pytest.MonkeyPatch, fault_point: str
) -> None:
    write(env["landing"] / "crm/d1/a.csv", "id,email\n1,a@x.com\n2\n3,c@x.com\n")
    write(env["landing"] / "web/d1/w.json", '{"id": 1}\n{"id": \n')
    declare(env["sources"], "crm", format="csv", path="crm/*/*.csv", options={"header": "true"})
    declare(env["sources"], "web", kind="event", format="ndjson", path="web/*/*.json")
    config = make_config(env)
    monkeypatch.setenv("CDP_FAULT_POINT", fault_point)
    monkeypatch.setenv("CDP_FAULT_MODE", "raise")
    faults.reset()
    with pytest.raises(StageFailed, match="fault injected"):
        ingest(spark, config)
    monkeypatch.delenv("CDP_FAULT_POINT")
    store = open_store(spark, config)
    failed = store.read("ops/run_log").where("status = 'failed'").collect()
    assert len(failed) == 1 and "fault injected" in failed[0].error
    ingest(spark, config)
    ingest(spark, config)
    assert sorted(r.id for r in store.read("bronze/crm").collect()) == ["1", "3"]
    assert store.read("bronze/web").count() == 1
    q = store.read(QUARANTINE_TABLE)
    assert q.where("_source = 'crm'").count() == 1 and q.where("_source = 'web'").count() == 1
    assert store.read(INGESTED_FILES_TABLE).count() == 2


def test_declaration_errors_name_the_file_and_field(
    spark: SparkSession, env: dict[str, Path]
) -> None:
    write(env["landing"] / "crm/d1/a.csv", "id,email\n1,a@x.com\n")
    config = make_config(env)

    # No such format: spreadsheets of every kind are `format: xlsx`.
    declare(env["sources"], "crm", format="xls", path="crm/*/*.csv")
    with pytest.raises(StageFailed, match=r"crm\.yaml: field 'format'"):
        ingest(spark, config)

    (env["sources"] / "crm.yaml").write_text(
        yaml.safe_dump({"name": "crm", "kind": "profile", "format": "csv"})
    )
    with pytest.raises(StageFailed, match=r"crm\.yaml: missing field 'path'"):
        ingest(spark, config)

    declare(
        env["sources"],
        "crm",
        format="csv",
        path="crm/*/*.csv",
        options={"header": "true"},
        mapping={"email": "email", "phone": "phone_number"},
    )
    with pytest.raises(
        StageFailed, match=r"crm\.yaml: mapping\.phone: 'phone_number' does not resolve"
    ):
        ingest(spark, config)


def test_a_column_only_a_middle_file_has_resolves_and_a_typo_still_fails(
    spark: SparkSession, env: dict[str, Path]
) -> None:
    # The export renamed `campaign` to `campaign_id`; a backfill in the old layout arrived
    # between two deliveries of the new one: neither the first nor the latest file has it.
    write(env["landing"] / "mail/d1/a.json", '{"msg": "m1", "campaign_id": "c1"}\n')
    write(env["landing"] / "mail/d2/b.json", '{"msg": "m2", "campaign": "c2"}\n')
    write(env["landing"] / "mail/d3/c.json", '{"msg": "m3", "campaign_id": "c3"}\n')
    config = make_config(env)
    mail = {"kind": "other", "format": "ndjson", "path": "mail/*/*.json", "primary_key": ["msg"]}
    declare(
        env["sources"], "mail", **mail, mapping={"campaign_id": "coalesce(campaign_id, campaign)"}
    )
    result = ingest(spark, config)
    assert sum(result.rows_written.values()) == 3
    declare(
        env["sources"], "mail", **mail, mapping={"campaign_id": "coalesce(campaign_id, campain)"}
    )
    with pytest.raises(
        StageFailed,
        match=r"'coalesce\(campaign_id, campain\)' does not resolve against any of the 3 files",
    ):
        ingest(spark, config)


def test_a_source_added_by_yaml_alone_is_ingested(
    spark: SparkSession, env: dict[str, Path]
) -> None:
    write(env["landing"] / "crm/d1/a.csv", "id,email\n1,a@x.com\n")
    declare(env["sources"], "crm", format="csv", path="crm/*/*.csv", options={"header": "true"})
    config = make_config(env)
    ingest(spark, config)
    write(env["landing"] / "surveys/s.json", '{"respondent": "a@x.com", "nps": 9}\n')
    declare(
        env["sources"],
        "surveys",
        kind="other",
        format="ndjson",
        path="surveys/*.json",
        mapping={"email": "respondent"},
    )
    result = ingest(spark, config)
    assert result.rows_written == {"bronze/surveys": 1}
    store = open_store(spark, config)
    assert store.read("bronze/surveys").collect()[0].nps == 9


def test_streaming_ingest_gives_the_same_tables_as_batch(
    spark: SparkSession, tmp_path: Path
) -> None:
    from chispa import assert_df_equality

    def setup(root: Path) -> dict[str, Path]:
        paths = {k: root / k for k in ("data", "landing", "sources")}
        write(paths["landing"] / "crm/d1/a.csv", "id,email\n1,a@x.com\n2\n3,c@x.com\n")
        write(
            paths["landing"] / "web/d1/w.json", '{"id": 1, "u": {"e": "x"}}\n{"id": \n{"id": 3}\n'
        )
        declare(
            paths["sources"], "crm", format="csv", path="crm/*/*.csv", options={"header": "true"}
        )
        declare(paths["sources"], "web", kind="event", format="ndjson", path="web/*/*.json")
        return paths

    batch_env, stream_env = setup(tmp_path / "batch"), setup(tmp_path / "stream")
    ingest(spark, make_config(batch_env))
    stream_config = make_config(stream_env).model_copy(
        update={"ingest": make_config(stream_env).ingest.model_copy(update={"mode": "stream"})}
    )
    first = ingest(spark, stream_config)
    assert first.rows_written == {"bronze/crm": 2, "bronze/web": 2}
    # A second drop arrives; the stream picks up only it, from its checkpoint.
    for env_paths in (batch_env, stream_env):
        write(env_paths["landing"] / "crm/d2/b.csv", "id,email\n4,d@x.com\n")
    ingest(spark, make_config(batch_env))
    second = ingest(spark, stream_config)
    assert second.rows_written == {"bronze/crm": 1}
    assert (stream_env["data"] / "_checkpoints" / "ingest" / "crm").is_dir()

    volatile = ["_ingest_run_id", "_ingested_at"]
    b_store = open_store(spark, make_config(batch_env))
    s_store = open_store(spark, stream_config)
    for table in ("bronze/crm", "bronze/web", QUARANTINE_TABLE):
        b = b_store.read(table).drop(*volatile)
        s = s_store.read(table).drop(*volatile)
        # Paths differ by landing root only.
        b = b.withColumn("_file_path", F.regexp_replace("_file_path", r"^.*/landing/", ""))
        s = s.withColumn("_file_path", F.regexp_replace("_file_path", r"^.*/landing/", ""))
        b = b.drop("_file_modified_at")
        s = s.drop("_file_modified_at")
        assert_df_equality(s.select(*b.columns), b, ignore_row_order=True, ignore_nullable=True)


def test_a_json_sample_with_no_rows_falls_back_to_full_inference(
    spark: SparkSession, env: dict[str, Path]
) -> None:
    from cdp.bronze.validate import _validate_source, validate_source
    from cdp.config import ConfigError
    from cdp.sources import load_sources

    write(env["landing"] / "tickets/d1/t.json", '{"ticket_id": "T1", "email": "a@x.com"}\n')
    declare(
        env["sources"],
        "tickets",
        kind="other",
        format="ndjson",
        path="tickets/*/*.json",
        primary_key=["ticket_id"],
        mapping={"email": "email"},
    )
    config = make_config(env)
    (spec,) = load_sources(config, only=["tickets"])
    # A sample this thin holds no row of a one-line file: the check says so before it resolves
    # any column (Spark would log the failed resolution as an ERROR) ...
    with pytest.raises(ConfigError, match="sampled schema holds no columns"):
        _validate_source(spark, spec, config.landing_uri, sampling_ratio=1e-9)
    # ... and the public check, reading the whole file, accepts the declaration.
    landed = validate_source(spark, spec, config.landing_uri)
    assert landed is not None and landed.uri.endswith("t.json")
