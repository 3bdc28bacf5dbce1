"""The embedded (delta-rs) backend under real processes: two writers on one table at once, and
vacuum while a writer is paused between writing its files and committing them.

test_table_store.py covers threads in one process, a writer killed before its commit, and the
schema-change race; these tests use separate OS processes, as two jobs on one data root are.
The appending writers need no JVM (``append_rows`` writes its Parquet with pyarrow), so each
process starts in about a second; the merging writers and the paused stage start Spark.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from cdp.lock import StageLock
from cdp.storage import StorageError
from cdp.storage.deltars import DeltaRsStore

REPO = Path(__file__).resolve().parents[2]
SCHEMA_DDL = "id long, writer string, seq long"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDP_FAULT_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "lib"), os.environ.get("PYTHONPATH", "")])
    return {**env, **extra}


APPENDER = textwrap.dedent(
    """
    import json, sys, time
    from pyspark.sql.types import LongType, StringType, StructField, StructType
    from cdp.storage.deltars import DeltaRsStore

    root, table, writer, n, start_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
    schema = StructType([StructField("id", LongType()), StructField("writer", StringType()),
                         StructField("seq", LongType())])
    store = DeltaRsStore(None, root, commit_retries=50)  # append_rows needs no Spark
    while time.time() < start_at:  # both processes start committing together
        time.sleep(0.005)
    versions = []
    for seq in range(n):
        rows = [(seq * 10 + k, writer, seq) for k in range(3)]
        versions.append(store.append_rows(table, rows, schema).version)
    print(json.dumps(versions))
    """
)


def test_two_processes_appending_to_one_table_lose_and_double_nothing(tmp_path: Path) -> None:
    root, table, n = tmp_path / "tables", "bronze/mp", 15
    seed = DeltaRsStore(None, str(root))  # type: ignore[arg-type]
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    schema = StructType(
        [
            StructField("id", LongType()),
            StructField("writer", StringType()),
            StructField("seq", LongType()),
        ]
    )
    seed.append_rows(table, [(-1, "seed", -1)], schema)
    script = tmp_path / "appender.py"
    script.write_text(APPENDER)
    start_at = f"{time.time() + 3:.3f}"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(root), table, w, str(n), start_at],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in ("a", "b")
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    versions = {w: json.loads(out) for w, (out, _err) in zip("ab", outs, strict=True)}

    # Each writer saw its own commits at strictly increasing versions, never one of the
    # other's: the two sequences interleave into exactly versions 1..2n.
    for w in "ab":
        assert versions[w] == sorted(versions[w]) and len(set(versions[w])) == n, versions
    assert sorted(versions["a"] + versions["b"]) == list(range(1, 2 * n + 1))
    dt = DeltaTable(str(root / table))
    assert dt.version() == 2 * n
    rows = dt.to_pyarrow_table().to_pylist()
    got = sorted((r["writer"], r["seq"], r["id"]) for r in rows)
    want = sorted(
        [("seed", -1, -1)] + [(w, s, s * 10 + k) for w in "ab" for s in range(n) for k in range(3)]
    )
    assert got == want  # no row lost, none twice
    # Every commit holds one batch of one writer, as that writer reported it.
    for w in "ab":
        for seq, version in enumerate(versions[w]):
            at = DeltaTable(str(root / table), version=version).to_pyarrow_table().to_pylist()
            assert sum(1 for r in at if r["writer"] == w and r["seq"] == seq) == 3


MERGER = textwrap.dedent(
    """
    import json, os, sys, time
    from cdp.config import load_config
    from cdp.session import build_session
    from cdp.storage.deltars import DeltaRsStore

    root, table, writer, child, go = sys.argv[1:6]
    spark = build_session(load_config(env="test", overrides={"data_root": child}))
    store = DeltaRsStore(spark, root, commit_retries=50)
    # Writer a updates ids 0..9 and inserts 100..104; writer b updates 5..14, inserts 200..204.
    lo = 0 if writer == "a" else 5
    new = 100 if writer == "a" else 200
    ids = list(range(lo, lo + 10)) + list(range(new, new + 5))
    df = spark.createDataFrame([(i, writer, 1) for i in ids], "id long, writer string, seq long")
    df = df.cache(); df.count()
    open(child + ".ready", "w").close()  # this JVM is up; wait for the other's
    while not os.path.exists(go):
        time.sleep(0.005)
    print(json.dumps(store.merge(table, df, keys=["id"]).version))
    """
)


@pytest.mark.slow  # two more JVMs
def test_two_processes_merging_into_one_table_keep_each_key_once(
    spark: SparkSession, tmp_path: Path
) -> None:
    root, table = tmp_path / "tables", "silver/mp"
    store = DeltaRsStore(spark, str(root))
    store.append(table, spark.createDataFrame([(i, "seed", 0) for i in range(20)], SCHEMA_DDL))
    script = tmp_path / "merger.py"
    script.write_text(MERGER)
    go = tmp_path / "go"  # both merge once both JVMs are up (each says so with a file)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(root), table, w, str(tmp_path / w), str(go)],
            env=_env(),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in ("a", "b")
    ]
    deadline = time.monotonic() + 300
    while not all((tmp_path / f"{w}.ready").exists() for w in "ab"):
        failed = [p for p in procs if p.poll() is not None]
        assert not failed and time.monotonic() < deadline, [p.communicate() for p in failed]
        time.sleep(0.05)
    go.touch()
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    versions = sorted(json.loads(out.strip().splitlines()[-1]) for out, _err in outs)
    assert versions == [1, 2]  # both committed, one after the other
    rows = DeltaTable(str(root / table)).to_pyarrow_table().to_pylist()
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == 30  # 20 seeded + 5 + 5 inserted, no key twice
    by_id = {r["id"]: r["writer"] for r in rows}
    assert all(by_id[i] == "a" for i in range(5)) and all(by_id[i] == "b" for i in range(10, 15))
    assert {by_id[i] for i in range(5, 10)} <= {"a", "b"}  # the later commit won, wholly
    assert len({by_id[i] for i in range(5, 10)}) == 1
    assert all(by_id[i] == "seed" for i in range(15, 20))


PAUSED_WRITER = textwrap.dedent(
    """
    import sys
    from pyspark.sql.types import LongType, StringType, StructField, StructType
    from cdp.lock import StageLock
    from cdp.storage.deltars import DeltaRsStore

    root, table, hold_lock = sys.argv[1], sys.argv[2], sys.argv[3] == "lock"
    schema = StructType([StructField("id", LongType()), StructField("writer", StringType()),
                         StructField("seq", LongType())])
    store = DeltaRsStore(None, root)
    if hold_lock:  # as a stage run holds it (cdp.runner)
        with StageLock(root, stage="silver", run_id="paused-writer", ttl_seconds=60):
            print(store.append_rows(table, [(2, "w", 1)], schema).version)
    else:
        print(store.append_rows(table, [(2, "w", 1)], schema).version)
    """
)


def _start_paused_writer(tmp_path: Path, root: Path, table: str, mode: str) -> subprocess.Popen:
    script = tmp_path / "paused.py"
    script.write_text(PAUSED_WRITER)
    signal = tmp_path / f"reached-{mode}"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(root), table, mode],
        env=_env(
            CDP_FAULT_POINT="storage.before_commit",
            CDP_FAULT_MODE="sleep",
            CDP_FAULT_SLEEP_S="8",
            CDP_FAULT_SIGNAL=str(signal),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not signal.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, "the writer never reached storage.before_commit"
        time.sleep(0.05)
    return proc


@pytest.mark.parametrize("mode", ["lock", "nolock"])
def test_vacuum_during_a_paused_write_never_deletes_its_files(
    spark: SparkSession, tmp_path: Path, mode: str
) -> None:
    """A writer holds its staged files, uncommitted, at ``storage.before_commit``. With the
    data root's lock held (a stage run), a forced zero-retention vacuum refuses; without it
    (a bare writer), vacuum at the retention floor keeps the files, which are minutes old.
    Either way the writer then commits and the table reads back complete."""
    root, table = tmp_path / "tables", "bronze/vw"
    store = DeltaRsStore(spark, str(root))
    store.append(table, spark.createDataFrame([(1, "seed", 0)], SCHEMA_DDL))
    writer = _start_paused_writer(tmp_path, root, table, mode)
    staged = {p for p in (root / table).rglob("*.parquet") if "_delta_log" not in p.parts}
    if mode == "lock":
        with pytest.raises(StorageError, match="refused: data root is locked by stage 'silver'"):
            store.vacuum(table, retention_hours=0, force=True)
        # Maintenance (cdp.maintenance) cannot even start: it takes the same lock first.
        from cdp.lock import LockHeld

        with pytest.raises(LockHeld, match="paused-writer"):
            StageLock(str(root), stage="maintenance", run_id="m").acquire()
    else:
        removed = store.vacuum(table)  # the floor: 168 h
        assert removed == []
    assert all(p.exists() for p in staged)
    out, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, err[-3000:]
    assert int(out.strip().splitlines()[-1]) == 1
    assert sorted(
        r["id"] for r in DeltaTable(str(root / table)).to_pyarrow_table().to_pylist()
    ) == [
        1,
        2,
    ]
    for uri in DeltaTable(str(root / table)).file_uris():
        assert Path(uri.removeprefix("file://")).exists(), uri
