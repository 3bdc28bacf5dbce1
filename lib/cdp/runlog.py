"""The operations run log: one row per job run in ``ops/run_log``, failed runs included."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import (
    DateType,
    DoubleType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from cdp import tables as T

RUN_LOG_TABLE = T.RUN_LOG.name

RUN_LOG_SCHEMA = StructType(
    [
        StructField("run_id", StringType()),
        StructField("job", StringType()),
        StructField("env", StringType()),
        StructField("status", StringType()),
        StructField("config_hash", StringType()),
        StructField("backend", StringType()),
        StructField("as_of", DateType()),
        StructField("started_at", TimestampType()),
        StructField("ended_at", TimestampType()),
        StructField("duration_s", DoubleType()),
        StructField("rows_read", MapType(StringType(), LongType())),
        StructField("rows_written", MapType(StringType(), LongType())),
        StructField("rows_quarantined", MapType(StringType(), LongType())),
        StructField("metrics", MapType(StringType(), StringType())),
        StructField("error", StringType()),
        StructField("log_path", StringType()),
        StructField("cdp_version", StringType()),
        StructField("host", StringType()),
    ]
)


def make_run_id(job: str, started_at: datetime, config_hash: str) -> str:
    """A readable, sortable run id derived from what identifies the run (not a random UUID).

    The process id and host enter the hash so two runs started in the same microsecond on
    different workers still differ.
    """
    stamp = started_at.strftime("%Y%m%dT%H%M%S%fZ")
    digest = hashlib.sha256(
        f"{job}|{stamp}|{config_hash}|{socket.gethostname()}|{os.getpid()}".encode()
    ).hexdigest()[:8]
    return f"{stamp}-{job}-{digest}"


@dataclass
class RunRecorder:
    """Counts what a run read, wrote and quarantined; becomes its run-log row."""

    run_id: str
    job: str
    env: str
    config_hash: str
    backend: str
    started_at: datetime
    as_of: date | None = None
    log_path: str | None = None
    rows_read: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rows_written: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rows_quarantined: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    metrics: dict[str, str] = field(default_factory=dict)
    # Why the run is only partial (value-free sentences); non-empty makes the status
    # ``partial``: what could be done was committed, some input was set aside.
    incomplete: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def read(self, table: str, rows: int) -> None:
        with self._lock:
            self.rows_read[table] += int(rows)

    def wrote(self, table: str, rows: int) -> None:
        with self._lock:
            self.rows_written[table] += int(rows)

    def quarantined(self, table: str, rows: int) -> None:
        with self._lock:
            self.rows_quarantined[table] += int(rows)

    def partial(self, reason: str) -> None:
        """Mark the run ``partial``: it committed what it could and set ``reason`` aside."""
        with self._lock:
            self.incomplete.append(reason)

    def metric(self, key: str, value: Any) -> None:
        with self._lock:
            self.metrics[key] = str(value)

    def to_row(self, *, status: str, ended_at: datetime, error: str | None) -> dict[str, Any]:
        from cdp import __version__

        return {
            "run_id": self.run_id,
            "job": self.job,
            "env": self.env,
            "status": status,
            "config_hash": self.config_hash,
            "backend": self.backend,
            "as_of": self.as_of,
            "started_at": self.started_at,
            "ended_at": ended_at,
            "duration_s": (ended_at - self.started_at).total_seconds(),
            "rows_read": dict(self.rows_read),
            "rows_written": dict(self.rows_written),
            "rows_quarantined": dict(self.rows_quarantined),
            "metrics": dict(self.metrics),
            "error": error,
            "log_path": self.log_path,
            "cdp_version": __version__,
            "host": socket.gethostname(),
        }


def run_log_frame(spark: SparkSession, row: dict[str, Any]) -> DataFrame:
    return spark.createDataFrame([row], RUN_LOG_SCHEMA)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
