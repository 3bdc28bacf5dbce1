"""Bad inputs not covered by test_bad_files.py: a 30,000-column CSV (``ingest.max_columns``),
a UTF-16 file whose source declares its encoding, nested JSON and Parquet field names that
Delta rejects or that collide by case, and the file size cap in stream mode."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable
from landing_helpers import declare, ingest, make_config, write
from pyspark.sql import SparkSession
from pyspark.sql.types import LongType, StringType, StructField, StructType

from cdp.bronze.readers import leaf_count, safe_type, too_many_columns
from cdp.bronze.tables import INGESTED_FILES_TABLE, QUARANTINE_TABLE
from cdp.storage import open_store


def test_column_cap_counts_nested_fields_and_names_the_setting() -> None:
    nested = StructType(
        [
            StructField("id", LongType()),
            StructField("u", StructType([StructField("a", StringType())] * 3)),
        ]
    )
    assert leaf_count(nested) == 4
    assert too_many_columns(4, 4) is None
    assert too_many_columns(30_000, 10_000) == (
        "30,000 columns, more than ingest.max_columns (10,000); not parsed"
    )


def test_a_30000_column_csv_is_quarantined_unparsed_and_the_rest_lands(
    spark: SparkSession, env: dict[str, Path]
) -> None:
    landing, sources = env["landing"], env["sources"]
    header = ",".join(f"c{i}" for i in range(30_000))
    write(landing / "crm/a_good.csv", "id,name\n1,Ann\n")
    write(landing / "crm/b_wide.csv", header + "\n" + ",".join("1" * 30_000) + "\n")
    write(landing / "crm/c_narrow.csv", "id,name,x1,x2\n2,Bob,a,b\n")
    declare(sources, "crm", format="csv", path="crm/*.csv", options={"header": True})

    started = time.perf_counter()
    result = ingest(spark, make_config(env))
    store = open_store(spark, make_config(env))
    assert result.status == "partial"
    assert sorted(r.id for r in store.read("bronze/crm").collect()) == ["1", "2"]
    assert len(store.schema("bronze/crm").fieldNames()) < 20  # the wide header never landed
    (row,) = store.read(QUARANTINE_TABLE).collect()
    assert Path(row._file_path).name == "b_wide.csv" and row.raw_record is None
    assert row.reason == "30,000 columns, more than ingest.max_columns (10,000); not parsed"
    # The header check reads one line: no 30,000-column plan is analysed.
    assert time.perf_counter() - started < 120

    # The cap is a setting: a lower one quarantines the 4-column file of a new drop.
    write(landing / "crm/d_narrow.csv", "id,name,x1,x2\n3,Cy,a,b\n")
    low = ingest(spark, make_config(env, max_columns=3))
    assert low.status == "partial"
    reasons = {Path(r._file_path).name: r.reason for r in store.read(QUARANTINE_TABLE).collect()}
    assert reasons["d_narrow.csv"] == "4 columns, more than ingest.max_columns (3); not parsed"


def test_utf16_with_a_bom_lands_when_the_source_declares_it(
    spark: SparkSession, env: dict[str, Path]
) -> None:
    """Undeclared, such a file is quarantined with a reason (test_bad_files.py); declared, it
    is read as what it is: the byte-order mark is not part of the first column's name."""
    landing, sources = env["landing"], env["sources"]
    write(landing / "crm/u.csv", "id,name\n5,Eve\n6,Zoë\n".encode("utf-16"))  # BOM + LE
    declare(
        sources,
        "crm",
        format="csv",
        path="crm/*.csv",
        options={"header": True, "encoding": "UTF-16"},
    )
    config = make_config(env)
    result = ingest(spark, config)
    store = open_store(spark, config)
    assert result.status == "success", result.error
    got = sorted((r.id, r.name) for r in store.read("bronze/crm").collect())
    assert got == [("5", "Eve"), ("6", "Zoë")]
    assert not store.exists(QUARANTINE_TABLE) or store.read(QUARANTINE_TABLE).count() == 0


def test_nested_names_are_made_safe_and_unique_with_the_originals_in_lineage(
    spark: SparkSession, env: dict[str, Path]
) -> None:
    landing, sources = env["landing"], env["sources"]
    write(
        landing / "web/d1/a.json",
        json.dumps(
            {
                "id": 1,
                "profile": {"Email": "A@x.com", "email": "a@x.com", "first name": "Ann"},
                "items": [{"sku (id)": "s1", "qty": 2}],
            }
        )
        + "\n",
    )
    buf = io.BytesIO()
    pq.write_table(
        pa.table(
            {
                "order_id": [1],
                "detail": [{"unit price": 2.5, "Unit price": 3.0, "note;x": "n"}],
            }
        ),
        buf,
    )
    write(landing / "orders/o.parquet", buf.getvalue())
    declare(sources, "web", kind="event", format="ndjson", path="web/*/*.json")
    declare(sources, "orders", kind="transaction", format="parquet", path="orders/*.parquet")

    config = make_config(env)
    result = ingest(spark, config)
    store = open_store(spark, config)
    assert result.status == "success", result.error

    web = store.read("bronze/web")
    profile = web.schema["profile"].dataType
    assert isinstance(profile, StructType)
    assert sorted(profile.fieldNames()) == ["Email", "email_2", "first_name"]
    row = web.collect()[0]
    assert (row.profile.Email, row.profile.email_2, row.profile.first_name) == (
        "A@x.com",
        "a@x.com",
        "Ann",
    )
    assert row["items"][0]["sku__id_"] == "s1"
    orders = store.read("bronze/orders").collect()[0]
    assert (orders.detail["unit_price"], orders.detail["Unit_price_2"]) == (2.5, 3.0)
    assert orders.detail["note_x"] == "n"

    # The originals are kept where top-level renames are: in the bronze commit's lineage.
    def renamed(table: str) -> dict[str, str]:
        info = [
            h for h in DeltaTable(store.table_uri(table)).history() if h.get("cdp.column_names")
        ]
        names = info[0]["cdp.column_names"]
        return names if isinstance(names, dict) else json.loads(names)

    assert renamed("bronze/web") == {
        "profile.email": "profile.email_2",
        "profile.first name": "profile.first_name",
        "items.sku (id)": "items.sku__id_",
    }
    assert renamed("bronze/orders") == {
        "detail.unit price": "detail.unit_price",
        "detail.Unit price": "detail.Unit_price_2",
        "detail.note;x": "detail.note_x",
    }


def test_safe_type_leaves_clean_names_alone() -> None:
    clean = StructType([StructField("a", StructType([StructField("b", LongType())]))])
    renamed: dict[str, str] = {}
    assert safe_type(clean, renamed, ("a", "a")) == clean and renamed == {}


def test_stream_mode_quarantines_a_file_over_the_size_cap_unparsed(
    spark: SparkSession, env: dict[str, Path]
) -> None:
    landing, sources = env["landing"], env["sources"]
    write(landing / "crm/d1/a.csv", "id,email\n1,a@x.com\n")
    big = "id,email\n" + "".join(f"{i},{'x' * 60}@x.com\n" for i in range(20_000))
    write(landing / "crm/d1/big.csv", big)  # about 1.4 MB
    declare(sources, "crm", format="csv", path="crm/*/*.csv", options={"header": "true"})
    config = make_config(env, mode="stream", max_file_mb=1)

    first = ingest(spark, config)
    store = open_store(spark, config)
    assert first.status == "partial"
    assert [r.id for r in store.read("bronze/crm").collect()] == ["1"]
    (row,) = store.read(QUARANTINE_TABLE).collect()
    assert Path(row._file_path).name == "big.csv" and row.raw_record is None
    assert row.reason == "file larger than ingest.max_file_mb (1 MB); not parsed"
    ledger = {Path(r.file_path).name: r.status for r in store.read(INGESTED_FILES_TABLE).collect()}
    assert ledger == {"a.csv": "ingested", "big.csv": "unreadable"}

    # A rerun neither lands nor quarantines it again; a small new file still streams in.
    write(landing / "crm/d2/b.csv", "id,email\n2,b@x.com\n")
    second = ingest(spark, config)
    assert second.status == "success"
    assert sorted(r.id for r in store.read("bronze/crm").collect()) == ["1", "2"]
    assert store.read(QUARANTINE_TABLE).count() == 1
