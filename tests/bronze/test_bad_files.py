"""Bad landing files: each is set aside once with a reason, and everything else lands.

One landing zone holds a truncated gzip and bzip2 CSV, a CSV whose header is fine but whose
gzip stream ends early, a corrupt Parquet footer, a broken XML record, a zero-byte file, a
UTF-16 file, a record with a 5 MB field and JSON keys that differ only by case; a second test
covers files still being delivered (too young, no completion marker).
"""

from __future__ import annotations

import bz2
import gzip
import io
import os
import time
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from landing_helpers import declare, ingest, make_config, write
from pyspark.sql import SparkSession

from cdp.bronze.tables import INGESTED_FILES_TABLE, QUARANTINE_TABLE
from cdp.config import load_config
from cdp.storage import open_store

ROWS = "id,name\n" + "".join(f"{i},n{i}\n" for i in range(3000))


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _parquet_bytes() -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table({"order_id": [1, 2], "total": [1.5, 2.5]}), buf)
    return buf.getvalue()


def test_each_bad_file_is_set_aside_once_and_the_rest_lands(
    spark: SparkSession, env: dict[str, Path]
) -> None:
    landing, sources = env["landing"], env["sources"]
    write(landing / "crm/d1/good.csv.gz", gzip.compress(b"id,name\n1,Ann\n2,Bob\n"))
    write(landing / "crm/d1/cut.csv.gz", _truncated(gzip.compress(ROWS.encode())))
    write(landing / "crm/d1/cut.csv.bz2", _truncated(bz2.compress(ROWS.encode())))
    write(landing / "crm/d1/empty.csv", "")
    write(landing / "crm/d1/wide.csv", "id,name\n3," + "x" * 5_000_000 + "\n4,Dee\n")
    write(landing / "crm/d1/utf16.csv", "id,name\n5,Eve\n".encode("utf-16"))
    write(landing / "orders/ok.parquet", _parquet_bytes())
    write(landing / "orders/cut.parquet", _parquet_bytes()[:-30])
    write(landing / "web/d1/a.json", '{"Email": "A@x.com", "email": "a@x.com", "x y": 1}\n')
    write(landing / "web/d1/cut.json.gz", _truncated(gzip.compress(b'{"id": 1}\n' * 5000)))
    write(
        landing / "loyalty/m.xml",
        "<members><member><id>1</id></member><member><id>2</id>",
    )
    declare(sources, "crm", format="csv", path="crm/*/*", options={"header": True})
    declare(sources, "orders", kind="transaction", format="parquet", path="orders/*.parquet")
    declare(sources, "web", kind="event", format="ndjson", path="web/*/*")
    declare(sources, "loyalty", format="xml", path="loyalty/*.xml", options={"rowTag": "member"})

    config = make_config(env)
    result = ingest(spark, config)
    store = open_store(spark, config)

    assert result.status == "partial"
    assert result.metrics["files_quarantined"] == "5"
    log_row = store.read("ops/run_log").where(f"run_id = '{result.run_id}'").collect()[0]
    assert log_row.status == "partial" and "crm: 3 file(s) quarantined whole" in log_row.error

    assert sorted(r.id for r in store.read("bronze/crm").collect()) == ["1", "2", "4"]
    assert store.read("bronze/orders").count() == 2
    web = store.read("bronze/web")
    assert {"Email", "email_2", "x_y"} <= set(web.columns)
    assert web.collect()[0].email_2 == "a@x.com"
    assert [r.id for r in store.read("bronze/loyalty").collect()] == [1]

    q = {(r._source, Path(r._file_path).name): r for r in store.read(QUARANTINE_TABLE).collect()}
    assert set(q) == {
        ("crm", "cut.csv.gz"),
        ("crm", "cut.csv.bz2"),
        ("crm", "wide.csv"),
        ("crm", "utf16.csv"),
        ("orders", "cut.parquet"),
        ("web", "cut.json.gz"),
        ("loyalty", "m.xml"),
    }
    for key in [("crm", "cut.csv.gz"), ("crm", "cut.csv.bz2"), ("orders", "cut.parquet")]:
        assert q[key].reason.startswith("unreadable"), key
        on_disk = Path(urlparse(q[key]._file_path).path).stat().st_size
        assert q[key]._file_size == on_disk and q[key].raw_record is None, key
    assert "UTF-16" in q[("crm", "utf16.csv")].reason
    wide = q[("crm", "wide.csv")]
    assert wide.reason.startswith("record longer than ingest.max_record_chars")
    assert "xxxx" not in wide.reason and len(wide.raw_record) <= 100_000
    assert q[("loyalty", "m.xml")].reason == "malformed XML record"

    files = {Path(r.file_path).name: r.status for r in store.read(INGESTED_FILES_TABLE).collect()}
    assert files["empty.csv"] == "empty" and files["cut.csv.gz"] == "unreadable"
    assert files["good.csv.gz"] == "ingested"

    # Quarantined files are in the ledger: a rerun neither retries nor re-quarantines them.
    again = ingest(spark, config)
    assert again.status == "success" and again.rows_written == {}
    assert store.read(QUARANTINE_TABLE).count() == len(q)


def test_files_being_delivered_wait_for_a_later_run(
    spark: SparkSession, env: dict[str, Path]
) -> None:
    landing, sources = env["landing"], env["sources"]
    old = time.time() - 7200
    write(landing / "crm/a.csv", "id\n1\n")
    os.utime(landing / "crm/a.csv", (old, old))
    write(landing / "crm/b.csv", "id\n2\n")  # modified just now
    write(landing / "pos/d1/x.csv", "id\n3\n")
    write(landing / "pos/d1/_SUCCESS", "")
    write(landing / "pos/d2/y.csv", "id\n4\n")  # folder not complete yet
    for f in ("pos/d1/x.csv", "pos/d1/_SUCCESS", "pos/d2/y.csv"):
        os.utime(landing / f, (old, old))
    declare(sources, "crm", format="csv", path="crm/*.csv", options={"header": True})
    declare(
        sources,
        "pos",
        format="csv",
        path="pos/*/*.csv",
        options={"header": True},
        completion_marker="_SUCCESS",
    )
    config = make_config(env, min_file_age_seconds=600)

    first = ingest(spark, config)
    store = open_store(spark, config)
    assert first.status == "success" and first.metrics["files_waiting"] == "2"
    assert [r.id for r in store.read("bronze/crm").collect()] == ["1"]
    assert [r.id for r in store.read("bronze/pos").collect()] == ["3"]
    assert store.read(INGESTED_FILES_TABLE).count() == 2  # waiting files are not ledgered

    os.utime(landing / "crm/b.csv", (old, old))
    write(landing / "pos/d2/_SUCCESS", "")
    os.utime(landing / "pos/d2/_SUCCESS", (old, old))
    second = ingest(spark, config)
    assert second.metrics["files_waiting"] == "0"
    assert sorted(r.id for r in store.read("bronze/crm").collect()) == ["1", "2"]
    assert sorted(r.id for r in store.read("bronze/pos").collect()) == ["3", "4"]


@pytest.mark.parametrize("status, code", [("success", 0), ("partial", 3)])
def test_a_partial_stage_makes_the_run_exit_non_zero(
    monkeypatch: pytest.MonkeyPatch, status: str, code: int
) -> None:
    from cdp import entry, runner, session

    class _Spark:
        version = "x"

        class sparkContext:  # noqa: N801
            master = "local"

    def fake_run_stage(name: str, **_: object) -> runner.StageResult:
        return runner.StageResult(name, "r1", status, 0.1, {}, {}, {}, "log", error="why")

    monkeypatch.setattr(session, "build_session", lambda config: _Spark())
    monkeypatch.setattr(runner, "run_stage", fake_run_stage)
    assert entry.run_stages(["ingest"], load_config(env="test"), None) == code
