"""Which landing files exist, and which of them bronze already holds.

A file's identity is ``(path, size, modification time)``. ``ops/ingested_files`` records the
files each run took in; the commit history of the bronze and quarantine tables says which
files a commit holds, so a rerun after a crash writes only what is missing.

A file quarantined whole (unreadable, over the size cap) is recorded too, with status
``unreadable``: it is not read again until it changes (a new size or modification time,
as when the producer delivers it again), so a broken file costs one quarantine row, not one
per run. Files still being delivered (:func:`files_not_ready`) are not recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdp.bronze.tables import INGESTED_FILES_TABLE
from cdp.storage import TableStore

_HISTORY_DEPTH = 200


@dataclass(frozen=True, order=True)
class LandedFile:
    """A file as found in the landing zone; its identity is the whole triple."""

    uri: str  # Hadoop path URI, the same string Spark reports as _metadata.file_path
    size: int
    modified_ms: int
    read_path: str = ""  # the path string handed to Spark's reader

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.uri, self.size, self.modified_ms)


def list_landed_files(spark: SparkSession, pattern: str) -> list[LandedFile]:
    """Files matching ``pattern`` via Hadoop's FileSystem (local, HDFS, s3a, abfss …)."""
    jvm: Any = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(pattern)
    fs = hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())  # type: ignore[attr-defined]
    statuses = fs.globStatus(hpath) or []
    out = []
    for st in statuses:
        if not st.isFile():
            continue
        name = st.getPath().getName()
        if name.startswith((".", "_")):
            continue  # _SUCCESS markers, .crc side files
        out.append(
            LandedFile(
                uri=st.getPath().toUri().toString(),
                size=int(st.getLen()),
                modified_ms=int(st.getModificationTime()),
                read_path=st.getPath().toString(),
            )
        )
    return sorted(out)


def files_not_ready(
    spark: SparkSession,
    files: Sequence[LandedFile],
    *,
    min_age_s: int,
    marker: str | None,
    now_ms: int,
) -> list[LandedFile]:
    """Those of ``files`` still being delivered: modified less than ``min_age_s`` ago, or in
    a folder without the completion ``marker`` (when the source declares one).

    They are not recorded anywhere, so the next run finds them again; a producer that
    rewrites a file while it uploads changes its modification time and restarts the wait.
    """
    waiting = {f for f in files if min_age_s and f.modified_ms > now_ms - min_age_s * 1000}
    if marker:
        jvm: Any = spark.sparkContext._jvm
        conf = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[attr-defined]
        complete: dict[str, bool] = {}
        for f in files:
            folder = jvm.org.apache.hadoop.fs.Path(f.read_path or f.uri).getParent()
            key = folder.toString()
            if key not in complete:
                probe = jvm.org.apache.hadoop.fs.Path(folder, marker)
                complete[key] = bool(probe.getFileSystem(conf).exists(probe))
            if not complete[key]:
                waiting.add(f)
    return sorted(waiting)


def already_committed(store: TableStore, table: str, source: str) -> set[tuple[str, int, int]]:
    """File identities that recent commits of ``table`` say they hold for ``source``."""
    if not store.exists(table):
        return set()
    held: set[tuple[str, int, int]] = set()
    for entry in store.history(table, limit=_HISTORY_DEPTH):
        if entry.info.get("cdp.source") != source:
            continue
        for item in entry.info.get("cdp.files") or []:
            held.add((str(item[0]), int(item[1]), int(item[2])))
    return held


def known_files(store: TableStore, source: str) -> dict[str, tuple[str, int, int]]:
    """Latest recorded identity per path for ``source`` (one small row per file)."""
    if not store.exists(INGESTED_FILES_TABLE):
        return {}
    rows = (
        store.read(INGESTED_FILES_TABLE)
        .where(F.col("source") == source)
        .select("file_path", "file_size", "file_modified_ms")
        .collect()
    )
    latest: dict[str, tuple[str, int, int]] = {}
    for r in rows:
        key = (r.file_path, int(r.file_size), int(r.file_modified_ms))
        if r.file_path not in latest or key[2] >= latest[r.file_path][2]:
            latest[r.file_path] = key
    return latest
