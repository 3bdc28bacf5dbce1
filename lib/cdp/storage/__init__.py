"""One storage interface over Delta tables, with two backends.

``open_store`` picks the backend from ``storage.backend``: ``delta-spark`` (Delta Lake's JVM
implementation, when its classes load), ``delta-rs`` (the embedded default: Spark writes data
files, the ``deltalake`` package commits them), or ``auto`` (the first when available).
"""

from __future__ import annotations

from pyspark.sql import SparkSession

from cdp.config import CdpConfig, StorageBackend
from cdp.storage.base import (
    CommitResult,
    ConcurrentWriteError,
    HistoryEntry,
    MergeError,
    SchemaError,
    StorageError,
    TableInfo,
    TableNotFound,
    TableStore,
    UnsupportedTableError,
)

__all__ = [
    "CommitResult",
    "ConcurrentWriteError",
    "HistoryEntry",
    "MergeError",
    "SchemaError",
    "StorageError",
    "TableInfo",
    "TableNotFound",
    "TableStore",
    "UnsupportedTableError",
    "delta_spark_available",
    "open_store",
    "resolve_backend",
]


def delta_spark_available(spark: SparkSession) -> bool:
    """True when Delta Lake's JVM classes and its Python package are both usable."""
    from cdp.session import jvm_class_available
    from cdp.storage.deltaspark import DELTA_TABLE_CLASS

    try:
        import delta.tables  # noqa: F401
    except ImportError:
        return False
    return jvm_class_available(spark, DELTA_TABLE_CLASS)


def resolve_backend(spark: SparkSession, requested: StorageBackend) -> StorageBackend:
    if requested is StorageBackend.AUTO:
        return (
            StorageBackend.DELTA_SPARK if delta_spark_available(spark) else StorageBackend.DELTA_RS
        )
    if requested is StorageBackend.DELTA_SPARK and not delta_spark_available(spark):
        from cdp.session import delta_package

        raise StorageError(
            "storage.backend=delta-spark, but Delta Lake's JVM classes (io.delta.tables.DeltaTable) "
            f"are not on the classpath: start Spark with --packages {delta_package()} "
            "or use storage.backend=delta-rs"
        )
    return requested


def open_store(spark: SparkSession, config: CdpConfig, *, root: str | None = None) -> TableStore:
    """The table store for this run's configuration (tables live under the data root)."""
    backend = resolve_backend(spark, config.storage.backend)
    base = root or config.data_root_uri
    if backend is StorageBackend.DELTA_SPARK:
        from cdp.storage.deltaspark import DeltaSparkStore

        return DeltaSparkStore(spark, base, commit_retries=config.storage.commit_retries)
    from cdp.storage.deltars import DeltaRsStore

    return DeltaRsStore(
        spark,
        base,
        commit_retries=config.storage.commit_retries,
        target_file_size_mb=config.storage.target_file_size_mb,
    )
