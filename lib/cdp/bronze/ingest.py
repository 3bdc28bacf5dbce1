"""Bronze: land every declared source, incrementally and exactly once, into Delta tables.

For each source, one run:

1. lists the files matching its glob (through Hadoop's FileSystem, so local paths and object
   stores work alike) and keeps those whose identity ``(path, size, modification time)`` is
   not yet in ``ops/ingested_files``;
2. reads them with the declared format and options, keeping every source column (CSV as
   strings, self-describing formats in their native types) and adding lineage columns;
3. sends records the reader cannot parse to ``bronze/_quarantine`` with the raw text and a
   reason, and everything else to ``bronze/<source>``;
4. records the files in ``ops/ingested_files``.

Exactly once: each bronze and quarantine commit carries the identities of the files it holds.
After a crash, a rerun asks each table's recent commit history which files it already holds
and writes only what is missing, so every record lands once whichever commit the crash hit.

Schema drift never fails a run: new columns are added to the table (or rescued, per source),
and a value whose type no longer fits its column is kept, as JSON, in ``_rescued_data``.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)
from pyspark.sql.utils import AnalysisException

from cdp import faults
from cdp.config import ConfigError
from cdp.pipeline import StageContext
from cdp.sources import SchemaEvolution, SourceFormat, SourceSpec, load_sources
from cdp.storage import TableStore
from cdp.storage.base import widen_struct

log = logging.getLogger(__name__)

QUARANTINE_TABLE = "bronze/_quarantine"
INGESTED_FILES_TABLE = "ops/ingested_files"
CORRUPT = "_corrupt_record"
RESCUED = "_rescued_data"
LINEAGE_COLUMNS = (
    "_source",
    "_file_path",
    "_file_size",
    "_file_modified_at",
    "_file_offset",
    "_row_number",
    "_ingest_run_id",
    "_ingested_at",
    "_record_hash",
    RESCUED,
)
_ROW_INDEX_MASK = (1 << 33) - 1  # monotonically_increasing_id: partition id << 33 | row index
_BAD_NAME_CHARS = re.compile(r"[ ,;{}()\n\t=]")
_HISTORY_DEPTH = 200

QUARANTINE_SCHEMA = StructType(
    [
        StructField("_source", StringType()),
        StructField("_file_path", StringType()),
        StructField("_file_size", LongType()),
        StructField("_file_modified_at", TimestampType()),
        StructField("_file_offset", LongType()),
        StructField("_row_number", LongType()),
        StructField("raw_record", StringType()),
        StructField("reason", StringType()),
        StructField("parsed_record", StringType()),
        StructField("_ingest_run_id", StringType()),
        StructField("_ingested_at", TimestampType()),
        StructField("_record_hash", StringType()),
    ]
)

INGESTED_FILES_SCHEMA = StructType(
    [
        StructField("source", StringType()),
        StructField("file_path", StringType()),
        StructField("file_size", LongType()),
        StructField("file_modified_ms", LongType()),
        StructField("status", StringType()),
        StructField("ingest_run_id", StringType()),
        StructField("ingested_at", TimestampType()),
    ]
)


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


@dataclass
class SourceOutcome:
    source: str
    files_new: int = 0
    files_changed: int = 0
    rows_landed: int = 0
    rows_quarantined: int = 0
    rows_already_present: int = 0


# ---------------------------------------------------------------------------------------------
# Listing
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def _spark_format(fmt: SourceFormat) -> str:
    return "json" if fmt is SourceFormat.NDJSON else fmt.value


def source_reader(spark: SparkSession, spec: SourceSpec, schema: StructType | None = None) -> Any:
    """A DataFrameReader with the source's format and options (PERMISSIVE, corrupt column)."""
    fmt = _spark_format(spec.format)
    reader = spark.read.format(fmt).options(**spec.options)
    if fmt in ("csv", "json", "xml"):
        reader = reader.option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT)
    if fmt == "csv":
        reader = reader.option("inferSchema", "false")
    if schema is not None:
        reader = reader.schema(schema)
    return reader


def _local_path(uri: str) -> str | None:
    if uri.startswith("file:"):
        from urllib.parse import unquote, urlparse

        return unquote(urlparse(uri).path)
    return None


def _open_text(path: str, encoding: str) -> io.TextIOBase:
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding=encoding, errors="replace")
    if path.endswith(".bz2"):
        return io.TextIOWrapper(bz2.open(path, "rb"), encoding=encoding, errors="replace")
    return io.TextIOWrapper(open(path, "rb"), encoding=encoding, errors="replace")  # noqa: SIM115


def csv_header(spark: SparkSession, spec: SourceSpec, f: LandedFile) -> list[str] | None:
    """Column names from a CSV file's first line (None for an empty file)."""
    opts = {k.lower(): v for k, v in spec.options.items()}
    delimiter = opts.get("sep", opts.get("delimiter", ","))
    quote = opts.get("quote", '"')
    encoding = opts.get("encoding", opts.get("charset", "utf-8"))
    local = _local_path(f.uri)
    if local is not None:
        with _open_text(local, encoding) as fh:
            line = fh.readline()
    else:
        rows = spark.read.option("encoding", encoding).text(f.read_path).limit(1).collect()
        line = rows[0][0] if rows else ""
    line = line.lstrip("\ufeff").rstrip("\r\n")
    if not line.strip():
        return None
    tokens = next(csv.reader([line], delimiter=delimiter, quotechar=quote or '"'))
    if opts.get("header", "false").lower() != "true":
        return [f"_c{i}" for i in range(len(tokens))]
    return unique_names([t.strip() for t in tokens])


def unique_names(names: Sequence[str]) -> list[str]:
    """Column names Delta accepts without column mapping, unique, in order."""
    out: list[str] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(names):
        name = _BAD_NAME_CHARS.sub("_", raw) or f"_c{i}"
        base = name
        while name.lower() in seen:
            seen[base.lower()] += 1
            name = f"{base}_{seen[base.lower()]}"
        seen[name.lower()] = 1
        out.append(name)
    return out


def with_file_columns(df: DataFrame) -> DataFrame:
    """Source columns plus the file's lineage from the scan's ``_metadata`` (batch or stream)."""
    cols = [F.col(f"`{c}`") for c in df.columns]
    if CORRUPT not in df.columns:
        cols.append(F.lit(None).cast("string").alias(CORRUPT))
    return df.select(
        *cols,
        F.col("_metadata.file_path").alias("_file_path"),
        F.col("_metadata.file_size").alias("_file_size"),
        F.col("_metadata.file_modification_time").alias("_file_modified_at"),
        F.col("_metadata.file_block_start").alias("_file_offset"),
    )


def with_row_number(df: DataFrame) -> DataFrame:
    """1-based row within its file split; (``_file_offset``, ``_row_number``) is the position.

    Relies on one file split per scan partition (see :func:`one_file_per_partition`): the low
    33 bits of ``monotonically_increasing_id`` are the row's index inside its partition.
    """
    return df.withColumn(
        "_row_number", F.monotonically_increasing_id().bitwiseAND(F.lit(_ROW_INDEX_MASK)) + 1
    )


def _with_lineage(df: DataFrame) -> DataFrame:
    return with_row_number(with_file_columns(df))


def read_source_files(
    spark: SparkSession,
    spec: SourceSpec,
    files: Sequence[LandedFile],
    *,
    sampling_ratio: float | None = None,
) -> tuple[list[DataFrame], list[tuple[LandedFile, str]]]:
    """Frames of parsed rows (grouped by file schema where the format needs it) and the
    files that could not be read at all, with the reason. ``sampling_ratio`` makes JSON schema
    inference look at a sample only (declaration checks use it)."""
    readable = [f for f in files if f.size > 0]
    if not readable:
        return [], []
    fmt = spec.format
    frames: list[DataFrame] = []
    unreadable: list[tuple[LandedFile, str]] = []
    if fmt is SourceFormat.CSV:
        groups: dict[tuple[str, ...], list[LandedFile]] = {}
        for f in readable:
            header = csv_header(spark, spec, f)
            if header is not None:
                groups.setdefault(tuple(header), []).append(f)
        for names, group in groups.items():
            schema = StructType(
                [StructField(c, StringType()) for c in names] + [StructField(CORRUPT, StringType())]
            )
            df = (
                source_reader(spark, spec, schema)
                .option("enforceSchema", "true")
                .csv([f.read_path for f in group])
            )
            frames.append(_with_lineage(df))
    elif fmt in (SourceFormat.PARQUET, SourceFormat.ORC):
        by_schema: dict[str, list[LandedFile]] = {}
        for f in readable:
            try:
                schema_json = spark.read.format(fmt.value).load(f.read_path).schema.json()
            except Exception as exc:  # not a Parquet/ORC file, truncated footer …
                unreadable.append((f, f"unreadable {fmt.value} file: {_first_line(exc)}"))
                continue
            by_schema.setdefault(schema_json, []).append(f)
        for group in by_schema.values():
            df = source_reader(spark, spec).load([f.read_path for f in group])
            frames.append(_with_lineage(df))
    else:
        reader = source_reader(spark, spec)
        if (
            sampling_ratio is not None
            and _spark_format(fmt) == "json"
            and "samplingRatio" not in spec.options
        ):
            reader = reader.option("samplingRatio", str(sampling_ratio))
        df = reader.load([f.read_path for f in readable])
        frames.append(_with_lineage(df))
    return frames, unreadable


def _first_line(exc: BaseException) -> str:
    java = getattr(exc, "java_exception", None)
    if java is not None:  # py4j errors: the JVM message says what went wrong
        try:
            cause = java
            while cause.getCause() is not None:
                cause = cause.getCause()
            return str(cause.getMessage() or java.getMessage())[:500]
        except Exception:
            pass
    text = str(exc).strip().splitlines()
    return text[0][:500] if text else type(exc).__name__


# ---------------------------------------------------------------------------------------------
# Transformations (pure)
# ---------------------------------------------------------------------------------------------


def _to_text(col: Any, dtype: Any) -> Any:
    if isinstance(dtype, (StructType, ArrayType, MapType)):
        return F.to_json(col)
    return col.cast("string")


def align_to_schema(
    df: DataFrame, target: StructType | None, *, mode: SchemaEvolution
) -> tuple[DataFrame, StructType]:
    """Fit a frame's source columns to the table's; values that do not fit go to
    ``_rescued_data`` (JSON object: column -> original value). Returns the frame and the
    schema the table will have after this write."""
    source_cols = [f for f in df.schema.fields if f.name not in (CORRUPT, *LINEAGE_COLUMNS)]
    rescued: list[tuple[str, Any]] = []
    out_cols: list[Any] = []
    known = {f.name: f.dataType for f in target.fields} if target is not None else {}
    new_schema_fields = list(target.fields) if target is not None else []
    for field in source_cols:
        col = F.col(f"`{field.name}`")
        if target is None or field.name not in known:
            if target is not None and mode is SchemaEvolution.RESCUE:
                rescued.append((field.name, F.when(col.isNotNull(), _to_text(col, field.dataType))))
                continue
            out_cols.append(col)
            new_schema_fields.append(StructField(field.name, field.dataType))
            continue
        want = known[field.name]
        if want == field.dataType:
            out_cols.append(col)
            continue
        widened = widen_struct(want, field.dataType)
        if widened is not None:
            # A struct that gained nested fields (for example device.browser): kept as it is;
            # the table's column type widens to hold both.
            out_cols.append(col)
            new_schema_fields = [
                StructField(f.name, widened) if f.name == field.name else f
                for f in new_schema_fields
            ]
            continue
        if isinstance(want, StringType):
            out_cols.append(_to_text(col, field.dataType).alias(field.name))
            continue
        if isinstance(field.dataType, (StructType, ArrayType, MapType)) or isinstance(
            want, (StructType, ArrayType, MapType)
        ):
            cast = F.lit(None).cast(want)
        else:
            cast = F.expr(f"try_cast(`{field.name}` AS {want.simpleString()})")
        out_cols.append(cast.alias(field.name))
        rescued.append(
            (field.name, F.when(col.isNotNull() & cast.isNull(), _to_text(col, field.dataType)))
        )
    if rescued:
        payload = F.to_json(F.struct(*[expr.alias(name) for name, expr in rescued]))
        rescued_col = F.when(payload != F.lit("{}"), payload)
    else:
        rescued_col = F.lit(None).cast("string")
    passthrough = [
        F.col(c) for c in df.columns if c in (CORRUPT, *LINEAGE_COLUMNS) and c != RESCUED
    ]
    aligned = df.select(*out_cols, *passthrough, rescued_col.alias(RESCUED))
    return aligned, StructType(new_schema_fields)


def record_hash(schema: StructType, columns: Iterable[str]) -> Any:
    """A 128-bit hash of the record's source columns (names sorted), as 32 hex characters.

    Two xxhash64 values with different seeds, computed on the typed values directly: several
    times cheaper than SHA-256 over the record's JSON, and plenty to tell records apart within
    one source key. Each value is preceded by its null flag, because Spark's hash skips nulls
    and ("x", null) would otherwise hash like (null, "x"). Maps, which Spark cannot hash, are
    hashed as their JSON.
    """
    types = {f.name: f.dataType for f in schema.fields}
    parts: list[Any] = []
    for name in sorted(columns):
        col = F.col(f"`{name}`")
        value = F.to_json(col) if isinstance(types.get(name), MapType) else col
        parts += [col.isNull(), value]
    if not parts:
        parts = [F.lit("")]

    def half(seed: str) -> Any:
        return F.lpad(F.hex(F.xxhash64(F.lit(seed), *parts)), 16, "0")

    return F.concat(half("cdp-record-a"), half("cdp-record-b"))


def split_good_and_quarantined(
    df: DataFrame,
    *,
    source: str,
    fmt: SourceFormat,
    run_id: str,
    ingested_at: datetime,
    raw_max_chars: int,
) -> tuple[DataFrame, DataFrame]:
    """Parsed rows -> (bronze rows with lineage, quarantine rows with raw text and reason)."""
    source_cols = [c for c in df.columns if c not in (CORRUPT, *LINEAGE_COLUMNS)]
    lineage = [
        F.lit(source).alias("_source"),
        F.col("_file_path"),
        F.col("_file_size").cast("long").alias("_file_size"),
        F.col("_file_modified_at"),
        F.col("_file_offset").cast("long").alias("_file_offset"),
        F.col("_row_number").cast("long").alias("_row_number"),
        F.lit(run_id).alias("_ingest_run_id"),
        F.lit(ingested_at).cast("timestamp").alias("_ingested_at"),
    ]
    is_bad = F.col(CORRUPT).isNotNull()
    good = df.where(~is_bad).select(
        *[F.col(f"`{c}`") for c in source_cols],
        *lineage,
        record_hash(df.schema, source_cols).alias("_record_hash"),
        (F.col(RESCUED) if RESCUED in df.columns else F.lit(None).cast("string")).alias(RESCUED),
    )
    if fmt is SourceFormat.CSV:
        reason = F.lit("malformed CSV record: wrong number of fields or broken quoting")
    elif fmt in (SourceFormat.JSON, SourceFormat.NDJSON):
        reason = F.lit("malformed JSON record")
    elif fmt is SourceFormat.XML:
        reason = F.lit("malformed XML record")
    else:
        reason = F.lit(f"malformed {fmt.value} record")
    bad = df.where(is_bad).select(
        F.lit(source).alias("_source"),
        F.col("_file_path"),
        F.col("_file_size").cast("long").alias("_file_size"),
        F.col("_file_modified_at"),
        F.col("_file_offset").cast("long").alias("_file_offset"),
        F.col("_row_number").cast("long").alias("_row_number"),
        F.substring(F.col(CORRUPT), 1, raw_max_chars).alias("raw_record"),
        reason.alias("reason"),
        # Whatever the reader made of the record; it also makes the scan parse every column,
        # so a record is judged malformed by the same rules here as on the bronze side.
        F.to_json(F.struct(*[F.col(f"`{c}`") for c in source_cols])).alias("parsed_record"),
        F.lit(run_id).alias("_ingest_run_id"),
        F.lit(ingested_at).cast("timestamp").alias("_ingested_at"),
        F.sha2(F.col(CORRUPT), 256).alias("_record_hash"),
    )
    return good, bad


# ---------------------------------------------------------------------------------------------
# Validation of declarations against the files
# ---------------------------------------------------------------------------------------------


def _first_readable(
    spark: SparkSession,
    spec: SourceSpec,
    files: Sequence[LandedFile],
    sampling_ratio: float | None = None,
) -> tuple[LandedFile, StructType] | None:
    """The first of ``files`` that can be read, with its schema (unreadable files are skipped:
    ingestion quarantines them); None if the files hold no records at all."""
    problems = []
    for candidate in files:
        try:
            frames, unreadable = read_source_files(
                spark, spec, [candidate], sampling_ratio=sampling_ratio
            )
        except Exception as exc:
            raise ConfigError(
                f"{spec.origin}: format/options: cannot read {candidate.uri} as "
                f"{spec.format.value}: {_first_line(exc)}"
            ) from None
        if unreadable:
            problems.append(unreadable[0][1])
            continue
        if frames:
            return candidate, frames[0].schema
    if problems:
        raise ConfigError(f"{spec.origin}: format: no file can be read: {problems[0]}")
    return None


def validate_source(spark: SparkSession, spec: SourceSpec, landing_root: str) -> LandedFile | None:
    """Check the declaration against the files; see :func:`_validate_source`.

    JSON schemas are first inferred from a sample (a full inference reads the whole file);
    only when that finds a problem is the check repeated on the full files, so a rare field
    the sample missed is never reported as an error.
    """
    try:
        return _validate_source(spark, spec, landing_root, sampling_ratio=0.05)
    except ConfigError:
        if spec.format not in (SourceFormat.JSON, SourceFormat.NDJSON):
            raise
        return _validate_source(spark, spec, landing_root, sampling_ratio=None)


def _validate_source(
    spark: SparkSession, spec: SourceSpec, landing_root: str, *, sampling_ratio: float | None
) -> LandedFile | None:
    """Check key columns and mapping expressions against the files; ConfigError if wrong.

    Columns are looked up in the first file and, so that a mapping may already cover a column
    that a later delivery renamed or added (``coalesce(new_name, old_name)``), in the latest
    file. A name in neither is a typo or a wrong declaration, reported with file and field.
    """
    files = [f for f in list_landed_files(spark, spec.glob_for(landing_root)) if f.size > 0]
    if not files:
        log.warning("source %s: no files match %s yet", spec.name, spec.glob_for(landing_root))
        return None
    head = _first_readable(spark, spec, files, sampling_ratio)
    if head is None:
        return None
    first, schema = head
    tail = _first_readable(spark, spec, list(reversed(files)), sampling_ratio)
    latest = tail[0] if tail else first
    if tail is not None:
        known = set(schema.fieldNames())
        schema = StructType([*schema.fields, *[f for f in tail[1].fields if f.name not in known]])
    if sampling_ratio is not None and not [n for n in schema.fieldNames() if not n.startswith("_")]:
        # A sample of a small file can hold no rows at all; say so without resolving columns
        # against it, which Spark would log as an analysis error before the full retry.
        raise ConfigError(f"{spec.origin}: the sampled schema holds no columns")
    df = spark.createDataFrame([], schema)
    where = f"the first file {first.uri}" + (
        f" or the latest file {latest.uri}" if latest != first else ""
    )
    for field_name, column in (
        *[("primary_key", c) for c in spec.primary_key],
        ("event_time", spec.event_time),
        ("delete_flag", spec.delete_flag),
    ):
        if column is None:
            continue
        try:
            df.selectExpr(column)
        except AnalysisException:
            raise ConfigError(
                f"{spec.origin}: {field_name}: column {column!r} is not in {where} "
                f"(columns: {[c for c in df.columns if not c.startswith('_')]})"
            ) from None
    for canonical, expr in spec.mapping.items():
        try:
            df.selectExpr(f"{expr} AS `{canonical}`")
        except AnalysisException as exc:
            raise ConfigError(
                f"{spec.origin}: mapping.{canonical}: {expr!r} does not resolve against {where}: "
                f"{_first_line(exc)}"
            ) from None
        except Exception as exc:  # parse errors in the expression
            raise ConfigError(
                f"{spec.origin}: mapping.{canonical}: {expr!r} is not a valid Spark SQL "
                f"expression: {_first_line(exc)}"
            ) from None
    return first


# ---------------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------------


def _already_committed(store: TableStore, table: str, source: str) -> set[tuple[str, int, int]]:
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


def _known_files(store: TableStore, source: str) -> dict[str, tuple[str, int, int]]:
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


def _drop_rows_already_landed(
    store: TableStore, spec: SourceSpec, good: DataFrame, changed_uris: list[str]
) -> DataFrame:
    """For re-delivered (changed) files, land only rows not already in bronze for that path.

    A row's identity within a file is (record hash, occurrence of that hash), so exact
    duplicate rows inside a file are preserved while unchanged rows are not landed twice.
    """
    if not changed_uris or not store.exists(spec.table):
        return good
    from pyspark.sql import Window

    w = Window.partitionBy("_file_path", "_record_hash").orderBy("_file_offset", "_row_number")
    existing = (
        store.read(spec.table)
        .where(F.col("_file_path").isin(changed_uris))
        .select("_file_path", "_record_hash", F.row_number().over(w).alias("_occurrence"))
    )
    is_changed = F.col("_file_path").isin(changed_uris)
    fresh = (
        good.where(is_changed)
        .withColumn("_occurrence", F.row_number().over(w))
        .join(existing, ["_file_path", "_record_hash", "_occurrence"], "left_anti")
        .drop("_occurrence")
    )
    return good.where(~is_changed).unionByName(fresh)


def land_frames(
    ctx: StageContext,
    spec: SourceSpec,
    *,
    frames: Sequence[DataFrame],
    unreadable: Sequence[tuple[LandedFile, str]],
    files: Sequence[LandedFile],
    for_bronze: Sequence[LandedFile],
    for_quarantine: Sequence[LandedFile],
    changed_uris: Sequence[str],
    ingested_at: datetime,
    commit_info: dict[str, Any] | None = None,
) -> tuple[int, int]:
    """Write parsed frames to bronze and quarantine, then record ``files`` as ingested.

    Only rows of ``for_bronze`` files go to bronze and only rows of ``for_quarantine`` files
    to quarantine (after a crash one table may already hold a file). Returns
    (rows landed, rows quarantined).
    """
    spark, store, run_id = ctx.spark, ctx.store, ctx.run.run_id
    schema_so_far = store.schema(spec.table) if store.exists(spec.table) else None
    goods: list[DataFrame] = []
    bads: list[DataFrame] = []
    observations: list[Observation] = []
    for i, frame in enumerate(frames):
        aligned, schema_so_far = align_to_schema(frame, schema_so_far, mode=spec.schema_evolution)
        # Count malformed records while the bronze rows are written, so that a clean batch
        # (the usual case) is read once: the quarantine pass runs only where there is any.
        seen = Observation(f"malformed-{spec.name}-{i}-{id(frame)}")
        aligned = aligned.observe(seen, F.sum(F.col(CORRUPT).isNotNull().cast("int")).alias("bad"))
        observations.append(seen)
        good, bad = split_good_and_quarantined(
            aligned,
            source=spec.name,
            fmt=spec.format,
            run_id=run_id,
            ingested_at=ingested_at,
            raw_max_chars=ctx.config.ingest.quarantine_raw_max_chars,
        )
        goods.append(good)
        bads.append(bad)
    if unreadable:
        bads.append(_unreadable_rows(spark, spec, unreadable, run_id, ingested_at))
    landed = quarantined = 0
    extra = dict(commit_info or {})
    if goods and for_bronze:
        good_all = goods[0]
        for g in goods[1:]:
            good_all = good_all.unionByName(g, allowMissingColumns=True)
        good_all = good_all.where(F.col("_file_path").isin(sorted({f.uri for f in for_bronze})))
        good_all = _drop_rows_already_landed(store, spec, good_all, list(changed_uris))
        result = store.append(
            spec.table,
            good_all,
            commit_info={**extra, "source": spec.name, "files": [list(f.key) for f in for_bronze]},
        )
        landed = result.rows_written
        # The bronze write read every frame, so each observation is available now.
        keep = [i for i, o in enumerate(observations) if int(o.get.get("bad") or 0) > 0]
        bads = [bads[i] for i in keep] + bads[len(observations) :]
    faults.checkpoint("ingest.after_bronze_commit")
    if bads and for_quarantine:
        bad_all = bads[0]
        for b in bads[1:]:
            bad_all = bad_all.unionByName(b)
        bad_all = bad_all.where(F.col("_file_path").isin(sorted({f.uri for f in for_quarantine})))
        result = store.append(
            QUARANTINE_TABLE,
            bad_all,
            commit_info={
                **extra,
                "source": spec.name,
                "files": [list(f.key) for f in for_quarantine],
            },
        )
        quarantined = result.rows_written
    faults.checkpoint("ingest.after_quarantine_commit")
    broken = {f for f, _ in unreadable}
    store.append_rows(
        INGESTED_FILES_TABLE,
        [
            (
                spec.name,
                f.uri,
                f.size,
                f.modified_ms,
                "empty" if f.size == 0 else ("unreadable" if f in broken else "ingested"),
                run_id,
                ingested_at,
            )
            for f in files
        ],
        INGESTED_FILES_SCHEMA,
    )
    ctx.run.read(f"landing/{spec.name}", landed + quarantined)
    ctx.run.wrote(spec.table, landed)
    ctx.run.quarantined(spec.table, quarantined)
    return landed, quarantined


def _unreadable_rows(
    spark: SparkSession,
    spec: SourceSpec,
    unreadable: Sequence[tuple[LandedFile, str]],
    run_id: str,
    ingested_at: datetime,
) -> DataFrame:
    """One quarantine row per file that could not be read at all."""
    return spark.createDataFrame(
        [
            (
                spec.name,
                f.uri,
                f.size,
                datetime.fromtimestamp(f.modified_ms / 1000, tz=timezone.utc),
                0,
                0,
                None,
                reason,
                None,
                run_id,
                ingested_at,
                None,
            )
            for f, reason in unreadable
        ],
        QUARANTINE_SCHEMA,
    )


def ingest_source(ctx: StageContext, spec: SourceSpec, *, ingested_at: datetime) -> SourceOutcome:
    """Land the new and changed files of one source (batch)."""
    spark, store = ctx.spark, ctx.store
    outcome = SourceOutcome(source=spec.name)
    found = list_landed_files(spark, spec.glob_for(ctx.config.landing_uri))
    known = _known_files(store, spec.name)
    pending = [f for f in found if known.get(f.uri) != f.key]
    limit = ctx.config.ingest.max_files_per_run
    if limit:
        pending = pending[:limit]
    if not pending:
        ctx.progress(f"{spec.name}: no new files ({len(found)} known)")
        return outcome
    changed_uris = [f.uri for f in pending if f.uri in known]
    outcome.files_changed = len(changed_uris)
    outcome.files_new = len(pending) - len(changed_uris)

    in_bronze = _already_committed(store, spec.table, spec.name)
    in_quarantine = _already_committed(store, QUARANTINE_TABLE, spec.name)
    for_bronze = [f for f in pending if f.key not in in_bronze]
    for_quarantine = [f for f in pending if f.key not in in_quarantine]
    to_read = sorted(set(for_bronze) | set(for_quarantine))
    if len(to_read) < len(pending):
        ctx.progress(
            f"{spec.name}: {len(pending) - len(to_read)} files were committed by an interrupted "
            "run; not landing them again"
        )
    frames, unreadable = read_source_files(spark, spec, to_read)
    outcome.rows_landed, outcome.rows_quarantined = land_frames(
        ctx,
        spec,
        frames=frames,
        unreadable=unreadable,
        files=pending,
        for_bronze=for_bronze,
        for_quarantine=for_quarantine,
        changed_uris=changed_uris,
        ingested_at=ingested_at,
    )
    ctx.progress(
        f"{spec.name}: {outcome.files_new} new and {outcome.files_changed} changed files -> "
        f"{outcome.rows_landed:,} rows landed, {outcome.rows_quarantined:,} quarantined"
    )
    return outcome


def run_ingest(ctx: StageContext) -> None:
    """The ``ingest`` stage: validate every declaration, then land each source."""
    sources = load_sources(ctx.config, only=ctx.config.ingest.sources)
    if not sources:
        raise ConfigError(
            f"no sources declared in {ctx.config.source_dirs_resolved()} (add conf/sources/*.yaml)"
        )
    for spec in sources:
        validate_source(ctx.spark, spec, ctx.config.landing_uri)
    ingested_at = datetime.now(timezone.utc)
    with one_file_per_partition(ctx.spark, split_mb=ctx.config.ingest.split_mb):
        totals = SourceOutcome(source="*")
        for spec in sources:
            if ctx.config.ingest.mode == "stream":
                from cdp.bronze.stream import ingest_source_stream

                out = ingest_source_stream(ctx, spec, ingested_at=ingested_at)
            else:
                out = ingest_source(ctx, spec, ingested_at=ingested_at)
            totals.rows_landed += out.rows_landed
            totals.rows_quarantined += out.rows_quarantined
            totals.files_new += out.files_new
            totals.files_changed += out.files_changed
        ctx.run.metric("sources", len(sources))
        ctx.run.metric("files_new", totals.files_new)
        ctx.run.metric("files_changed", totals.files_changed)
        ctx.run.metric("mode", ctx.config.ingest.mode)


@contextmanager
def one_file_per_partition(spark: SparkSession, *, split_mb: int = 8) -> Iterator[None]:
    """Read settings that make row positions and malformed-record detection exact.

    Splits are ``split_mb`` long and opening a file costs a whole split, so Spark reads a big
    file as several partitions (both cores busy) but never packs two files into one partition;
    the split size does not depend on the batch, so a rerun after a crash cuts every file at
    the same offsets. CSV column pruning is off, so whether a record is malformed does not
    depend on which columns a query needs.
    """
    conf = spark.conf
    keys = (
        "spark.sql.files.openCostInBytes",
        "spark.sql.files.maxPartitionBytes",
        "spark.sql.csv.parser.columnPruning.enabled",
    )
    previous = {k: conf.get(k, None) for k in keys}
    split = str(split_mb * (1 << 20))
    conf.set("spark.sql.files.openCostInBytes", split)
    conf.set("spark.sql.files.maxPartitionBytes", split)
    conf.set("spark.sql.csv.parser.columnPruning.enabled", "false")
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                conf.unset(key)
            else:
                conf.set(key, value)
