"""Behaviour of the storage layer, run against every backend that can run here.

Each table written is also opened independently with ``deltalake.DeltaTable`` to prove it is a
standard Delta table, not something only this code can read.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest
from chispa import assert_df_equality
from deltalake import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType

from cdp.storage import (
    ConcurrentWriteError,
    MergeError,
    SchemaError,
    StorageError,
    TableNotFound,
    TableStore,
    UnsupportedTableError,
    delta_spark_available,
)
from cdp.storage.deltars import DeltaRsStore
from cdp.writecheck import RecordingStore

SCHEMA = StructType(
    [
        StructField("id", LongType()),
        StructField("name", StringType()),
        StructField("country", StringType()),
        StructField("updated", LongType()),
    ]
)


def rows(spark: SparkSession, data: list[tuple], schema: StructType = SCHEMA):
    return spark.createDataFrame(data, schema)


@pytest.fixture(params=["delta-rs", "delta-spark"])
def store(request: pytest.FixtureRequest, spark: SparkSession, tmp_path: Path) -> TableStore:
    if request.param == "delta-spark":
        if not delta_spark_available(spark):
            from cdp.session import delta_package

            pytest.skip(
                "Delta Lake JVM classes (io.delta.tables.DeltaTable) are not on the classpath; "
                f"start Spark with --packages {delta_package()} to run these"
            )
        from cdp.storage.deltaspark import DeltaSparkStore

        s: TableStore = DeltaSparkStore(spark, str(tmp_path / "tables"))
    else:
        s = DeltaRsStore(spark, str(tmp_path / "tables"), commit_retries=5)
    s.set_run_id("test-run-1")
    return s


def delta_table(store: TableStore, name: str) -> DeltaTable:
    return DeltaTable(store.table_uri(name))


def assert_standard_delta(
    store: TableStore, name: str, expected_version: int, columns: list[str]
) -> None:
    table = delta_table(store, name)
    assert table.version() == expected_version
    proto = table.protocol()
    assert proto.min_reader_version >= 1 and proto.min_writer_version >= 2
    assert [f.name for f in table.schema().fields] == columns
    # The files in the log are the files on disk, and delta-rs can read the data itself.
    for uri in table.file_uris():
        assert Path(uri).exists(), uri


def test_append_creates_then_adds(spark: SparkSession, store: TableStore) -> None:
    assert not store.exists("bronze/t")
    r1 = store.append("bronze/t", rows(spark, [(1, "a", "GB", 1), (2, "b", "US", 1)]))
    r2 = store.append("bronze/t", rows(spark, [(3, "c", "GB", 1)]))
    assert (r1.version, r2.version) == (0, 1)
    assert r2.rows_written == 1
    expected = rows(spark, [(1, "a", "GB", 1), (2, "b", "US", 1), (3, "c", "GB", 1)])
    assert_df_equality(
        store.read("bronze/t"), expected, ignore_row_order=True, ignore_nullable=True
    )
    assert_standard_delta(store, "bronze/t", 1, ["id", "name", "country", "updated"])
    assert delta_table(store, "bronze/t").to_pyarrow_table().num_rows == 3
    assert store.history("bronze/t")[0].run_id == "test-run-1"
    assert store.list_tables() == ["bronze/t"]


def test_overwrite_whole_and_by_partition(spark: SparkSession, store: TableStore) -> None:
    store.append(
        "silver/p",
        rows(spark, [(1, "a", "GB", 1), (2, "b", "US", 1), (3, "c", "DE", 1)]),
        partition_by=["country"],
    )
    store.overwrite(
        "silver/p", rows(spark, [(4, "d", "GB", 2), (5, "e", "GB", 2)]), replace_partitions=True
    )
    expected = rows(
        spark, [(4, "d", "GB", 2), (5, "e", "GB", 2), (2, "b", "US", 1), (3, "c", "DE", 1)]
    )
    got = store.read("silver/p").select(*SCHEMA.fieldNames())
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
    assert delta_table(store, "silver/p").metadata().partition_columns == ["country"]
    # Partition values live in the log; delta-rs sees them without Spark.
    by_rs = delta_table(store, "silver/p").to_pyarrow_table().to_pylist()
    assert sorted((r["id"], r["country"]) for r in by_rs) == [
        (2, "US"),
        (3, "DE"),
        (4, "GB"),
        (5, "GB"),
    ]

    store.overwrite("silver/p", rows(spark, [(9, "z", "FR", 3)]))
    assert_df_equality(
        store.read("silver/p").select(*SCHEMA.fieldNames()),
        rows(spark, [(9, "z", "FR", 3)]),
        ignore_nullable=True,
    )
    assert store.version("silver/p") == 2


def test_date_partitions_are_replaced_and_deleted(spark: SparkSession, store: TableStore) -> None:
    """Typed partition values (DATE) compare equal to the partition text of new files."""
    day = dt.date(2025, 6, 1)

    def frame(data: list[tuple]) -> DataFrame:
        return spark.createDataFrame(data, "id LONG, as_of DATE")

    store.append(
        "gold/d", frame([(1, day), (2, day), (3, dt.date(2025, 7, 1))]), partition_by=["as_of"]
    )
    store.overwrite("gold/d", frame([(4, day)]), replace_partitions=True)
    got = sorted((r.id, r.as_of) for r in store.read("gold/d").collect())
    assert got == [(3, dt.date(2025, 7, 1)), (4, day)]
    store.delete("gold/d", "as_of = '2025-07-01'")
    assert [r.id for r in store.read("gold/d").collect()] == [4]


def test_merge_update_insert_delete(spark: SparkSession, store: TableStore) -> None:
    store.append("silver/m", rows(spark, [(1, "a", "GB", 5), (2, "b", "US", 5), (3, "c", "DE", 5)]))
    source = rows(
        spark,
        [
            (1, "a-new", "GB", 6),  # newer: update
            (2, "b-old", "US", 4),  # older late arrival: must not overwrite
            (3, None, "DE", 7),  # deletion signal
            (4, "d", "FR", 1),  # new: insert
        ],
    )
    result = store.merge(
        "silver/m",
        source,
        keys=["id"],
        update_condition="s.updated >= t.updated",
        delete_condition="s.name IS NULL",
    )
    expected = rows(spark, [(1, "a-new", "GB", 6), (2, "b", "US", 5), (4, "d", "FR", 1)])
    assert_df_equality(
        store.read("silver/m"), expected, ignore_row_order=True, ignore_nullable=True
    )
    assert result.metrics["num_updated"] == 1
    assert result.metrics["num_inserted"] == 1
    assert result.metrics["num_deleted"] == 1
    assert delta_table(store, "silver/m").to_pyarrow_table().num_rows == 3

    # The same source again changes nothing but the already-applied rows stay as they are.
    again = store.merge(
        "silver/m",
        rows(spark, [(1, "a-new", "GB", 6)]),
        keys=["id"],
        update_condition="s.updated > t.updated",
    )
    assert again.version is None or again.metrics.get("num_updated", 0) == 0
    assert store.read("silver/m").count() == 3


def test_merge_rejects_duplicate_source_keys(spark: SparkSession, store: TableStore) -> None:
    store.append("silver/d", rows(spark, [(1, "a", "GB", 1)]))
    before = store.version("silver/d")
    with pytest.raises(MergeError, match="same key"):
        store.merge("silver/d", rows(spark, [(1, "x", "GB", 2), (1, "y", "GB", 3)]), keys=["id"])
    assert store.version("silver/d") == before


def test_merge_into_missing_table_creates_it(spark: SparkSession, store: TableStore) -> None:
    store.merge("gold/new", rows(spark, [(1, "a", "GB", 1)]), keys=["id"])
    assert store.read("gold/new").count() == 1


def test_delete_time_travel_and_history(spark: SparkSession, store: TableStore) -> None:
    store.append("ops/x", rows(spark, [(1, "a", "GB", 1), (2, "b", "US", 1), (3, "c", "US", 1)]))
    result = store.delete("ops/x", "country = 'US'")
    assert result.metrics["num_deleted"] == 2
    assert [r.id for r in store.read("ops/x").collect()] == [1]
    assert store.read("ops/x", version=0).count() == 3
    ops = [h.operation for h in store.history("ops/x")]
    assert ops[0] == "DELETE" and len(ops) == 2
    assert store.delete("ops/x", "country = 'ZZ'").version is None
    # A timestamp after the first commit and before the second gives version 0.
    first_ts = store.history("ops/x")[-1].timestamp
    assert first_ts is not None
    assert store.read("ops/x", timestamp=first_ts).count() == 3


def test_replace_where_swaps_one_slice_in_one_commit(
    spark: SparkSession, store: TableStore
) -> None:
    # Two files, each mixing the slice being replaced (US) with rows that must survive.
    store.append("gold/r", rows(spark, [(1, "a", "GB", 1), (2, "b", "US", 1)]).coalesce(1))
    store.append("gold/r", rows(spark, [(3, "c", "US", 1), (4, "d", "FR", 1)]).coalesce(1))
    before = store.version("gold/r")
    result = store.replace_where(
        "gold/r", rows(spark, [(5, "e", "US", 2), (6, "f", "US", 2)]), "country = 'US'"
    )
    assert result.version == (before or 0) + 1  # one commit: no version without the slice
    assert result.rows_written == 2
    got = sorted((r.id, r.country, r.updated) for r in store.read("gold/r").collect())
    assert got == [(1, "GB", 1), (4, "FR", 1), (5, "US", 2), (6, "US", 2)]
    assert store.read("gold/r", version=before).count() == 4  # the old slice, time travel
    # Rows outside the predicate: refused, nothing committed.
    with pytest.raises(StorageError, match="do not match"):
        store.replace_where("gold/r", rows(spark, [(7, "g", "GB", 3)]), "country = 'US'")
    assert store.version("gold/r") == result.version
    assert sorted(r.id for r in store.read("gold/r").collect()) == [1, 4, 5, 6]
    # A missing table is created from the rows.
    store.replace_where("gold/new", rows(spark, [(8, "h", "US", 1)]), "country = 'US'")
    assert [r.id for r in store.read("gold/new").collect()] == [8]


def test_schema_evolution_and_type_conflict(spark: SparkSession, store: TableStore) -> None:
    store.append("bronze/e", rows(spark, [(1, "a", "GB", 1)]))
    wider = rows(spark, [(2, "b", "US", 1)]).withColumn("extra", F.lit("x"))
    store.append("bronze/e", wider)
    got = store.read("bronze/e").orderBy("id").collect()
    assert [r.extra for r in got] == [None, "x"]
    assert "extra" in [f.name for f in delta_table(store, "bronze/e").schema().fields]
    retyped = rows(spark, [(3, "c", "GB", 1)]).withColumn("name", F.lit(5))
    with pytest.raises((SchemaError, Exception)):
        store.append("bronze/e", retyped)
    assert store.read("bronze/e").count() == 2


def test_vacuum_and_optimize(spark: SparkSession, store: TableStore) -> None:
    for i in range(4):
        store.append("bronze/v", rows(spark, [(i, "a", "GB", 1)]).coalesce(1))
    files_before = len(delta_table(store, "bronze/v").file_uris())
    store.optimize("bronze/v")
    table = delta_table(store, "bronze/v")
    assert len(table.file_uris()) < files_before
    assert store.read("bronze/v").count() == 4
    removed = store.vacuum("bronze/v", retention_hours=0, force=True)
    assert len(removed) >= files_before
    assert store.read("bronze/v").count() == 4
    assert store.read("bronze/v", version=table.version()).count() == 4


def test_vacuum_refuses_a_retention_below_the_floor_unless_forced(
    spark: SparkSession, store: TableStore
) -> None:
    store.append("bronze/vf", rows(spark, [(1, "a", "GB", 1)]))
    store.overwrite("bronze/vf", rows(spark, [(2, "b", "GB", 1)]))
    replaced = set(delta_table(store, "bronze/vf").file_uris())
    with pytest.raises(StorageError, match=r"retention of 0 h refused: below the floor of 168 h"):
        store.vacuum("bronze/vf", retention_hours=0)
    with pytest.raises(StorageError, match="below the floor"):
        store.vacuum("bronze/vf", retention_hours=167.9)
    assert store.vacuum("bronze/vf") == []  # the default: the floor, nothing that old
    assert store.vacuum("bronze/vf", retention_hours=0, force=True)  # the replaced file goes
    assert set(delta_table(store, "bronze/vf").file_uris()) == replaced
    assert [r.id for r in store.read("bronze/vf").collect()] == [2]


def test_vacuum_never_runs_while_another_run_holds_the_lock(
    spark: SparkSession, store: TableStore
) -> None:
    from cdp.lock import StageLock, lock_path

    store.append("bronze/vl", rows(spark, [(1, "a", "GB", 1)]))
    path = lock_path(store.root)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Another process's lease (written as that process would): vacuum refuses, naming it.
    other = StageLock(store.root, stage="silver", run_id="other-run")
    other.owner = "elsewhere:4242:other-run"
    path.write_text(other._lease(time.time()).to_json())
    with pytest.raises(StorageError, match=r"refused: data root is locked by stage 'silver' "
                       r"\(owner elsewhere:4242:other-run\)"):  # fmt: skip
        store.vacuum("bronze/vl", retention_hours=0, force=True)
    assert store.vacuum("bronze/vl", dry_run=True) == []  # a dry run deletes nothing: allowed
    path.unlink()
    # This process's own lease (a stage vacuuming, like the privacy erasure): no deadlock.
    with StageLock(store.root, stage="privacy", run_id="mine"):
        store.vacuum("bronze/vl", retention_hours=0, force=True)
    assert not path.exists()


def test_missing_table_is_a_clear_error(store: TableStore) -> None:
    with pytest.raises(TableNotFound, match="does not exist"):
        store.read("nope/none")


# --------------------------------------------------------------------------------------------
# Embedded-backend specifics: crash safety, concurrency, refusal of unsupported features.
# --------------------------------------------------------------------------------------------


@pytest.fixture()
def rs_store(spark: SparkSession, tmp_path: Path) -> DeltaRsStore:
    s = DeltaRsStore(spark, str(tmp_path / "tables"), commit_retries=8)
    s.set_run_id("test-run-rs")
    return s


def test_commit_metadata_carries_run_id(spark: SparkSession, rs_store: DeltaRsStore) -> None:
    rs_store.append("a/b", rows(spark, [(1, "a", "GB", 1)]))
    info = delta_table(rs_store, "a/b").history(1)[0]
    assert info["cdp.run_id"] == "test-run-rs"
    add = pa.table(delta_table(rs_store, "a/b").get_add_actions(flatten=True)).to_pylist()[0]
    assert add["num_records"] == 1


def test_truncate_history_ends_time_travel_before_the_cut(
    spark: SparkSession, rs_store: DeltaRsStore
) -> None:
    for i in range(3):
        rs_store.append("a/h", rows(spark, [(i, "a", "GB", 1)]))
    log = Path(rs_store.table_uri("a/h")) / "_delta_log"
    assert rs_store.truncate_history("a/h", keep_from=1) == "partial: kept from version 1"
    assert not (log / f"{0:020d}.json").exists() and (log / f"{1:020d}.json").exists()
    assert rs_store.truncate_history("a/h") == "done"
    assert sorted(p.name for p in log.glob("*.json")) == [f"{2:020d}.json"]
    assert rs_store.read("a/h").count() == 3  # the table reads from the checkpoint
    with pytest.raises(Exception):  # noqa: B017 - delta-rs's own error type for a lost version
        rs_store.read("a/h", version=0).count()
    recording = RecordingStore(rs_store)
    assert recording.truncate_history("a/h") == "done"
    assert recording.written == ["a/h"]


def test_crash_before_commit_leaves_previous_version(
    spark: SparkSession, rs_store: DeltaRsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cdp import faults

    rs_store.append("bronze/c", rows(spark, [(1, "a", "GB", 1)]))
    monkeypatch.setenv("CDP_FAULT_POINT", "storage.before_commit")
    monkeypatch.setenv("CDP_FAULT_MODE", "raise")
    faults.reset()
    with pytest.raises(faults.InjectedFault):
        rs_store.append("bronze/c", rows(spark, [(2, "b", "US", 1)]))
    monkeypatch.delenv("CDP_FAULT_POINT")
    assert rs_store.version("bronze/c") == 0
    assert [r.id for r in rs_store.read("bronze/c").collect()] == [1]
    rs_store.append("bronze/c", rows(spark, [(2, "b", "US", 1)]))
    assert sorted(r.id for r in rs_store.read("bronze/c").collect()) == [1, 2]


def test_killed_writer_process_leaves_table_intact(spark: SparkSession, tmp_path: Path) -> None:
    """A real process killed (os._exit) between writing files and committing."""
    import subprocess
    import sys

    root = tmp_path / "tables"
    store = DeltaRsStore(spark, str(root))
    store.append("bronze/k", rows(spark, [(1, "a", "GB", 1)]))
    script = tmp_path / "writer.py"
    script.write_text(
        "import sys\n"
        "from cdp.config import load_config\n"
        "from cdp.session import build_session\n"
        "from cdp.storage.deltars import DeltaRsStore\n"
        f"cfg = load_config(env='test', overrides={{'data_root': {str(tmp_path / 'child')!r}}})\n"
        "spark = build_session(cfg)\n"
        f"s = DeltaRsStore(spark, {str(root)!r})\n"
        "s.append('bronze/k', spark.createDataFrame([(2, 'b', 'US', 1)], 'id long, name string, country string, updated long'))\n"
        "print('committed')\n"
    )
    env = {**__import__("os").environ, "CDP_FAULT_POINT": "storage.before_commit"}
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 137, proc.stderr[-2000:]
    assert "committed" not in proc.stdout
    # Orphan data files exist on disk, but the table is still at version 0 with one row.
    parquet_on_disk = list((root / "bronze/k").glob("*.parquet"))
    assert len(parquet_on_disk) > len(DeltaTable(str(root / "bronze/k")).file_uris())
    assert store.version("bronze/k") == 0
    assert store.read("bronze/k").count() == 1
    # The rerun commits exactly once; vacuum removes the orphans.
    store.append("bronze/k", rows(spark, [(2, "b", "US", 1)]))
    assert sorted(r.id for r in store.read("bronze/k").collect()) == [1, 2]
    store.vacuum("bronze/k", retention_hours=0, force=True)
    on_disk = {p.name for p in (root / "bronze/k").glob("*.parquet")}
    in_log = {Path(u).name for u in DeltaTable(str(root / "bronze/k")).file_uris()}
    assert on_disk == in_log


def test_concurrent_appends_all_land(spark: SparkSession, rs_store: DeltaRsStore) -> None:
    rs_store.append("bronze/cc", rows(spark, [(0, "seed", "GB", 0)]))
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            rs_store.append("bronze/cc", rows(spark, [(i, f"w{i}", "GB", 0)]))
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ids = sorted(r.id for r in rs_store.read("bronze/cc").collect())
    assert ids == [0, 1, 2, 3, 4]
    assert delta_table(rs_store, "bronze/cc").version() == 4


def test_concurrent_merges_retry_or_fail_clearly(
    spark: SparkSession, rs_store: DeltaRsStore
) -> None:
    rs_store.append("silver/cm", rows(spark, [(i, "x", "GB", 0) for i in range(10)]))
    outcomes: dict[int, str] = {}

    def merger(i: int) -> None:
        try:
            rs_store.merge(
                "silver/cm",
                rows(spark, [(i, f"m{i}", "GB", 1)]),
                keys=["id"],
            )
            outcomes[i] = "ok"
        except ConcurrentWriteError:
            outcomes[i] = "conflict"

    threads = [threading.Thread(target=merger, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == [0, 1, 2]
    got = [(r.id, r.name) for r in rs_store.read("silver/cm").collect()]
    final = dict(got)
    assert len(got) == len(final) == 10  # never duplicated, never lost
    for i in range(3):
        # A merge that reported success is visible; one that gave up left nothing behind.
        assert final[i] == (f"m{i}" if outcomes[i] == "ok" else "x"), (i, outcomes)
    assert all(final[i] == "x" for i in range(3, 10))
    assert "ok" in outcomes.values()  # retries resolve at least the first race


def test_a_commit_between_the_column_change_and_the_data_commit_is_neither_lost_nor_doubled(
    spark: SparkSession, rs_store: DeltaRsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """delta-rs commits a schema change on its own: another writer's commit landing right
    after it must make the merge start again from that commit, not commit over it."""
    from cdp import faults

    rs_store.append("silver/sr", rows(spark, [(i, "x", "GB", 0) for i in (1, 2, 3)]))
    real_checkpoint = faults.checkpoint
    raced: list[int | None] = []

    def racing(name: str) -> None:
        if name == "storage.after_add_columns" and not raced:
            other = DeltaRsStore(spark, rs_store.root)
            raced.append(other.append("silver/sr", rows(spark, [(4, "other", "US", 0)])).version)
        real_checkpoint(name)

    monkeypatch.setattr(faults, "checkpoint", racing)
    source = rows(spark, [(4, "mine", "GB", 1)]).withColumn("extra", F.lit("e"))
    result = rs_store.merge("silver/sr", source, keys=["id"], merge_schema=True)
    assert raced == [2]  # v1: the column change, v2: the other writer, then the merge
    got = sorted((r.id, r.name, r.extra) for r in rs_store.read("silver/sr").collect())
    assert got == [(1, "x", None), (2, "x", None), (3, "x", None), (4, "mine", "e")]
    assert result.version == 3 and result.metrics["num_updated"] == 1


def test_concurrent_commit_conflict_is_detected(
    spark: SparkSession, rs_store: DeltaRsStore
) -> None:
    """A merge whose read version was overtaken is recomputed, so the other write survives."""
    rs_store.append("silver/race", rows(spark, [(1, "a", "GB", 0)]))
    original = rs_store._commit
    calls = {"n": 0}

    def racing_commit(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            # Another writer commits between our read and our commit.
            other = DeltaRsStore(spark, rs_store.root)
            other.append("silver/race", rows(spark, [(2, "b", "US", 0)]))
        return original(*args, **kwargs)

    rs_store._commit = racing_commit  # type: ignore[method-assign]
    try:
        rs_store.merge("silver/race", rows(spark, [(1, "a2", "GB", 1)]), keys=["id"])
    finally:
        rs_store._commit = original  # type: ignore[method-assign]
    got = {r.id: r.name for r in rs_store.read("silver/race").collect()}
    assert got == {1: "a2", 2: "b"}
    assert calls["n"] >= 2


def test_retries_exhausted_is_a_clear_conflict_error(spark: SparkSession, tmp_path: Path) -> None:
    store = DeltaRsStore(spark, str(tmp_path / "t"), commit_retries=1)
    store.append("x/y", rows(spark, [(1, "a", "GB", 0)]))
    original = store._commit

    def always_overtaken(*args, **kwargs):  # type: ignore[no-untyped-def]
        DeltaRsStore(spark, store.root).append(
            "x/y", rows(spark, [(int(time.time_ns() % 1000) + 10, "o", "GB", 0)])
        )
        return original(*args, **kwargs)

    store._commit = always_overtaken  # type: ignore[method-assign]
    with pytest.raises(ConcurrentWriteError, match="commit race"):
        store.delete("x/y", "id = 1")
    store._commit = original  # type: ignore[method-assign]
    assert store.read("x/y").where("id = 1").count() == 1


def _write_log(table: Path, actions: list[dict]) -> None:
    log_dir = table / "_delta_log"
    log_dir.mkdir(parents=True)
    (log_dir / f"{0:020d}.json").write_text("\n".join(json.dumps(a) for a in actions) + "\n")


@pytest.mark.parametrize(
    ("protocol", "configuration", "feature"),
    [
        (
            {
                "minReaderVersion": 3,
                "minWriterVersion": 7,
                "readerFeatures": ["deletionVectors"],
                "writerFeatures": ["deletionVectors"],
            },
            {},
            "deletionVectors",
        ),
        (
            {"minReaderVersion": 2, "minWriterVersion": 5},
            {"delta.columnMapping.mode": "name", "delta.columnMapping.maxColumnId": "1"},
            "columnMapping",
        ),
    ],
)
def test_unsupported_features_are_refused(
    spark: SparkSession, rs_store: DeltaRsStore, protocol: dict, configuration: dict, feature: str
) -> None:
    field_meta = (
        {"delta.columnMapping.id": 1, "delta.columnMapping.physicalName": "col-5f4c1a"}
        if feature == "columnMapping"
        else {}
    )
    schema = {
        "type": "struct",
        "fields": [{"name": "id", "type": "long", "nullable": True, "metadata": field_meta}],
    }
    _write_log(
        Path(rs_store.table_uri("ext/t")),
        [
            {"protocol": protocol},
            {
                "metaData": {
                    "id": "00000000-0000-0000-0000-000000000001",
                    "format": {"provider": "parquet", "options": {}},
                    "schemaString": json.dumps(schema),
                    "partitionColumns": [],
                    "configuration": configuration,
                    "createdTime": 0,
                }
            },
        ],
    )
    with pytest.raises(UnsupportedTableError, match=feature):
        rs_store.read("ext/t")
    with pytest.raises(UnsupportedTableError, match=feature):
        rs_store.append("ext/t", spark.range(1))


def test_timestamps_and_dates_round_trip(spark: SparkSession, rs_store: DeltaRsStore) -> None:
    df = spark.createDataFrame(
        [(1, dt.datetime(2024, 3, 1, 12, 30, tzinfo=dt.timezone.utc), dt.date(2024, 3, 1))],
        "id long, ts timestamp, d date",
    )
    rs_store.append("t/ts", df, partition_by=["d"])
    got = rs_store.read("t/ts").collect()[0]
    assert got.ts == dt.datetime(2024, 3, 1, 12, 30) and got.d == dt.date(2024, 3, 1)
    arrow = delta_table(rs_store, "t/ts").to_pyarrow_table().to_pylist()[0]
    assert arrow["ts"].replace(tzinfo=None) == dt.datetime(2024, 3, 1, 12, 30)
