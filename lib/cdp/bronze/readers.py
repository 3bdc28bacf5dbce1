"""Reading landing files with a source's declared format and options, lineage included.

CSV is read as strings with the header of each file (files grouped by header); Parquet and
ORC grouped by file schema, so that a file that cannot be read at all is told apart; the
other formats in one scan. Malformed records stay in the corrupt-record column.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StringType, StructField, StructType

from cdp.bronze.ledger import LandedFile
from cdp.bronze.lineage import CORRUPT, with_lineage
from cdp.sources import SourceFormat, SourceSpec

_BAD_NAME_CHARS = re.compile(r"[ ,;{}()\n\t=]")


def spark_format(fmt: SourceFormat) -> str:
    """Spark's reader name for a declared format (NDJSON is what Spark calls json)."""
    return "json" if fmt is SourceFormat.NDJSON else fmt.value


def source_reader(spark: SparkSession, spec: SourceSpec, schema: StructType | None = None) -> Any:
    """A DataFrameReader with the source's format and options (PERMISSIVE, corrupt column)."""
    fmt = spark_format(spec.format)
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
            frames.append(with_lineage(df))
    elif fmt in (SourceFormat.PARQUET, SourceFormat.ORC):
        by_schema: dict[str, list[LandedFile]] = {}
        for f in readable:
            try:
                schema_json = spark.read.format(fmt.value).load(f.read_path).schema.json()
            except Exception as exc:  # not a Parquet/ORC file, truncated footer …
                unreadable.append((f, f"unreadable {fmt.value} file: {first_line(exc)}"))
                continue
            by_schema.setdefault(schema_json, []).append(f)
        for group in by_schema.values():
            df = source_reader(spark, spec).load([f.read_path for f in group])
            frames.append(with_lineage(df))
    else:
        reader = source_reader(spark, spec)
        if (
            sampling_ratio is not None
            and spark_format(fmt) == "json"
            and "samplingRatio" not in spec.options
        ):
            reader = reader.option("samplingRatio", str(sampling_ratio))
        df = reader.load([f.read_path for f in readable])
        frames.append(with_lineage(df))
    return frames, unreadable


def first_line(exc: BaseException) -> str:
    """The line of an exception worth showing a user: the JVM's root cause, 500 chars at most."""
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
