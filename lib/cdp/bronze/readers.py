"""Reading landing files with a source's declared format and options, lineage included.

CSV is read as strings with the header of each file (files grouped by header); Parquet and
ORC grouped by file schema, so that a file that cannot be read at all is told apart; the
other formats in one scan; Excel workbooks as bytes that Python parses on the executors
(:mod:`cdp.bronze.spreadsheet`), grouped by each sheet's header. Malformed records stay in the corrupt-record column. Column names
of every format, nested struct fields included, are made safe for Delta and unique regardless
of case among their siblings (:func:`unique_names`, :func:`safe_type`); a file that fails
while its header or schema is read is set aside with a redacted reason, the others are read.

A file with more columns than ``ingest.max_columns`` (leaf fields, nested ones counted) is
set aside whole with a reason: a 30,000-column export is a wrong file, and each column costs
Spark's analyser, the Delta log's schema string and every later stage. CSV is checked on its
header line before any parsing, Parquet and ORC on their footer; JSON and XML after schema
inference (which reads the file, record by record, without holding it).
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    DataType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
)

from cdp.bronze import spreadsheet
from cdp.bronze.ledger import LandedFile
from cdp.bronze.lineage import CORRUPT, with_lineage
from cdp.expressions import quote_identifier
from cdp.privacy.redact import redact
from cdp.sources import SourceFormat, SourceSpec

_BAD_NAME_CHARS = re.compile(r"[ ,;{}()\n\t=]")
# Formats whose files are not text (no encoding to check).
BINARY_FORMATS = (SourceFormat.PARQUET, SourceFormat.ORC, SourceFormat.XLSX)
# The default of ``ingest.max_columns`` (cdp.config.IngestConfig), for callers without one.
DEFAULT_MAX_COLUMNS = 10_000


def spark_format(fmt: SourceFormat) -> str:
    """Spark's reader name for a declared format (NDJSON is what Spark calls json)."""
    return "json" if fmt is SourceFormat.NDJSON else fmt.value


def wide_encoding_options(spec: SourceSpec) -> dict[str, str]:
    """Options a CSV source declared as UTF-16 or UTF-32 also needs: Spark splits CSV lines on
    the byte ``\n`` before decoding, which cuts a UTF-16 line in the middle of a character
    (every value of the last column got a stray U+FFFD, and a trailing NUL line became a
    malformed record) and decodes lines after the first without the file's byte-order mark.
    ``multiLine`` decodes each file as one stream, as declared. A source that sets it keeps
    its own value."""
    declared = _declared_encoding(spec).lower().replace("_", "-")
    wide = declared.startswith(("utf-16", "utf-32", "utf16", "utf32"))
    if spec.format is not SourceFormat.CSV or not wide:
        return {}
    if any(k.lower() == "multiline" for k in spec.options):
        return {}
    return {"multiLine": "true"}


def source_reader(spark: SparkSession, spec: SourceSpec, schema: StructType | None = None) -> Any:
    """A DataFrameReader with the source's format and options (PERMISSIVE, corrupt column)."""
    fmt = spark_format(spec.format)
    reader = spark.read.format(fmt).options(**spec.options).options(**wide_encoding_options(spec))
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
    encoding = _declared_encoding(spec)
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


def leaf_count(dtype: DataType) -> int:
    """Leaf fields of ``dtype``: a struct counts its fields, recursively (inside arrays and
    maps too); anything else is one column."""
    if isinstance(dtype, StructType):
        return sum(leaf_count(f.dataType) for f in dtype.fields)
    if isinstance(dtype, ArrayType):
        return leaf_count(dtype.elementType)
    if isinstance(dtype, MapType):
        return leaf_count(dtype.keyType) + leaf_count(dtype.valueType) - 1
    return 1


def safe_type(
    dtype: DataType, renamed: dict[str, str], path: tuple[str, str] | None = None
) -> DataType:
    """``dtype`` with every nested struct field name made safe and unique among its siblings
    (:func:`unique_names`); each change goes to ``renamed`` as ``original.path`` ->
    ``new.path`` (``path``: the column's original and new names)."""
    if isinstance(dtype, StructType):
        names = [f.name for f in dtype.fields]
        safe = unique_names(names)
        fields = []
        for f, new in zip(dtype.fields, safe, strict=True):
            inner = (f.name, new) if path is None else (f"{path[0]}.{f.name}", f"{path[1]}.{new}")
            if new != f.name and path is not None:
                renamed[inner[0]] = inner[1]
            fields.append(StructField(new, safe_type(f.dataType, renamed, inner), f.nullable))
        return StructType(fields)
    if isinstance(dtype, ArrayType):
        return ArrayType(safe_type(dtype.elementType, renamed, path), dtype.containsNull)
    if isinstance(dtype, MapType):
        value = safe_type(dtype.valueType, renamed, path)
        return MapType(dtype.keyType, value, dtype.valueContainsNull)
    return dtype


def too_many_columns(count: int, max_columns: int) -> str | None:
    """The quarantine reason for a file of ``count`` columns, or None when within the cap."""
    if count <= max_columns:
        return None
    return f"{count:,} columns, more than ingest.max_columns ({max_columns:,}); not parsed"


@dataclass
class SourceRead:
    """What reading a batch of one source's files gave."""

    frames: list[DataFrame] = field(default_factory=list)
    # Files that could not be read at all, with a value-free reason: quarantined whole.
    unreadable: list[tuple[LandedFile, str]] = field(default_factory=list)
    # Original -> safe column name, for the names that had to change (kept in lineage).
    renamed: dict[str, str] = field(default_factory=dict)
    # Two source columns differ only by case: landing must run case-sensitively.
    case_collision: bool = False


def unreadable_reason(what: str, exc: BaseException) -> str:
    """``unreadable <what>: <root cause>``, redacted: readers quote the bytes they choke on."""
    return f"unreadable {what}: {redact(first_line(exc))}"


def encoding_problem(spec: SourceSpec, f: LandedFile) -> str | None:
    """Why a text file cannot be read with the declared encoding (UTF-16/32 bytes read as an
    ASCII-compatible encoding give NUL-riddled columns that would land as if fine), or None.

    Only local files are sniffed (a few bytes); object-store files are read as declared.
    """
    if spec.format in BINARY_FORMATS or f.size == 0:
        return None
    local = _local_path(f.uri)
    if local is None:
        return None
    declared = _declared_encoding(spec).lower().replace("_", "-")
    if declared.startswith(("utf-16", "utf-32", "utf16", "utf32")):
        return None
    opener = gzip.open if local.endswith(".gz") else bz2.open if local.endswith(".bz2") else open
    try:
        with opener(local, "rb") as fh:
            head = fh.read(4096)
    except Exception as exc:
        return unreadable_reason("file", exc)
    # A BOM, or NUL bytes in bulk (every other byte of ASCII text in UTF-16).
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or head.count(b"\x00") > len(head) // 8:
        return (
            f"file looks UTF-16 or UTF-32 encoded (byte-order mark or NUL bytes) but the source "
            f"reads it as {declared}: re-export it as UTF-8"
        )
    return None


def _declared_encoding(spec: SourceSpec) -> str:
    opts = {k.lower(): v for k, v in spec.options.items()}
    return opts.get("encoding", opts.get("charset", "utf-8"))


@contextmanager
def case_sensitive(spark: SparkSession, enabled: bool = True) -> Iterator[None]:
    """Resolve column names case-sensitively while inside (``Email`` and ``email`` are two
    columns of a JSON or Parquet file; Spark's default refuses such a file)."""
    if not enabled:
        yield
        return
    key = "spark.sql.caseSensitive"
    previous = spark.conf.get(key, None)
    spark.conf.set(key, "true")
    try:
        yield
    finally:
        if previous is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, previous)


def _with_safe_names(df: DataFrame, out: SourceRead) -> DataFrame:
    """``df`` with column names Delta accepts and unique regardless of case, nested struct
    fields included; what changed goes to ``out.renamed`` (nested ones as dotted paths)."""
    names = [c for c in df.columns if c != CORRUPT]
    safe = unique_names(names)
    for original, new in zip(names, safe, strict=True):
        if original != new:
            out.renamed[original] = new
    if len({n.lower() for n in names}) < len(names):
        out.case_collision = True
    if safe != names:
        it = iter(safe)
        df = df.toDF(*[c if c == CORRUPT else next(it) for c in df.columns])
    nested: dict[str, DataType] = {}
    for f, original in zip([f for f in df.schema.fields if f.name != CORRUPT], names, strict=True):
        before = len(out.renamed)
        cleaned = safe_type(f.dataType, out.renamed, (original, f.name))
        if len(out.renamed) > before:
            nested[f.name] = cleaned
    if not nested:
        return df
    # Siblings that differ only by case are two fields until renamed apart: resolve them so.
    out.case_collision = True
    # A struct cast to a struct of the same shape renames its fields by position.
    return df.select(
        *[
            F.col(quote_identifier(c)).cast(nested[c]).alias(c)
            if c in nested
            else F.col(quote_identifier(c))
            for c in df.columns
        ]
    )


def read_source_files(
    spark: SparkSession,
    spec: SourceSpec,
    files: Sequence[LandedFile],
    *,
    sampling_ratio: float | None = None,
    max_columns: int = DEFAULT_MAX_COLUMNS,
) -> SourceRead:
    """Frames of parsed rows (grouped by file schema where the format needs it) and the
    files that could not be read at all, with the reason. ``sampling_ratio`` makes JSON schema
    inference look at a sample only (declaration checks use it); a file of more than
    ``max_columns`` columns is set aside (see the module docstring).

    Names are resolved case-sensitively while reading, so that a file whose columns differ
    only by case can be read and its columns renamed apart.
    """
    out = SourceRead()
    readable = []
    for f in files:
        if f.size == 0:
            continue
        problem = encoding_problem(spec, f)
        if problem is not None:
            out.unreadable.append((f, problem))
        else:
            readable.append(f)
    if not readable:
        return out
    with case_sensitive(spark):
        _read(spark, spec, readable, sampling_ratio, max_columns, out)
    return out


class _TooWide(Exception):
    """A JSON or XML batch whose inferred schema is over the column cap."""


def _read(
    spark: SparkSession,
    spec: SourceSpec,
    readable: Sequence[LandedFile],
    sampling_ratio: float | None,
    max_columns: int,
    out: SourceRead,
) -> None:
    fmt = spec.format
    if fmt is SourceFormat.XLSX:
        _read_workbooks(spark, spec, readable, max_columns, out)
    elif fmt is SourceFormat.CSV:
        groups: dict[tuple[str, ...], list[LandedFile]] = {}
        for f in readable:
            try:
                header = csv_header(spark, spec, f)
            except Exception as exc:  # truncated bzip2 block, unreadable first line …
                out.unreadable.append((f, unreadable_reason("csv header", exc)))
                continue
            wide = too_many_columns(len(header or ()), max_columns)
            if wide:
                out.unreadable.append((f, wide))
                continue
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
            out.frames.append(with_lineage(df))
    elif fmt in (SourceFormat.PARQUET, SourceFormat.ORC):
        by_schema: dict[str, list[LandedFile]] = {}
        for f in readable:
            try:
                schema = spark.read.format(fmt.value).load(f.read_path).schema
            except Exception as exc:  # not a Parquet/ORC file, truncated footer …
                out.unreadable.append((f, unreadable_reason(f"{fmt.value} file", exc)))
                continue
            wide = too_many_columns(leaf_count(schema), max_columns)
            if wide:
                out.unreadable.append((f, wide))
                continue
            by_schema.setdefault(schema.json(), []).append(f)
        for group in by_schema.values():
            df = source_reader(spark, spec).load([f.read_path for f in group])
            out.frames.append(with_lineage(_with_safe_names(df, out)))
    else:
        reader = source_reader(spark, spec)
        if (
            sampling_ratio is not None
            and spark_format(fmt) == "json"
            and "samplingRatio" not in spec.options
        ):
            reader = reader.option("samplingRatio", str(sampling_ratio))

        def frame(paths: list[str]) -> DataFrame:
            df = reader.load(paths)
            wide = too_many_columns(leaf_count(df.schema) - (CORRUPT in df.columns), max_columns)
            if wide:
                raise _TooWide(wide)
            return with_lineage(_with_safe_names(df, out))

        try:
            # JSON and XML infer their schema here, reading the files: one that breaks
            # mid-read (or a batch over the column cap) fails the whole batch, so only then
            # is each file tried on its own.
            out.frames.append(frame([f.read_path for f in readable]))
        except Exception:
            good = []
            for f in readable:
                try:
                    frame([f.read_path])
                    good.append(f)
                except _TooWide as exc:
                    out.unreadable.append((f, str(exc)))
                except Exception as exc:
                    out.unreadable.append((f, unreadable_reason(f"{fmt.value} file", exc)))
            if good:
                out.frames.append(frame([f.read_path for f in good]))


def _binary_files(spark: SparkSession, paths: list[str]) -> DataFrame:
    """``content, _p, _s, _m``: each file's bytes and its path, size and modification time
    (microseconds) as the other formats' ``_metadata`` gives them."""
    return (
        spark.read.format("binaryFile")
        .load(paths)
        .select(
            "content",
            F.col("_metadata.file_path").alias("_p"),
            F.col("_metadata.file_size").alias("_s"),
            F.unix_micros(F.col("_metadata.file_modification_time")).alias("_m"),
        )
    )


def _workbook_layouts(
    spark: SparkSession, options: dict[str, str], f: LandedFile
) -> list[spreadsheet.Sheet] | str:
    """The selected sheets of one workbook (read on an executor), or why it is unreadable."""

    def layouts(batches: Iterable[Any]) -> Iterator[Any]:
        import pyarrow as pa

        for batch in batches:
            for content in batch.column("content").to_pylist():
                try:
                    found = [
                        [s.index, s.name, list(s.columns), s.header_row]
                        for s in spreadsheet.sheets(content, options)
                    ]
                    row = {"layout": json.dumps(found), "error": None}
                except Exception as exc:  # not a workbook, a sheet that is not there ...
                    row = {"layout": None, "error": f"{type(exc).__name__}: {first_line(exc)}"}
                yield pa.RecordBatch.from_pylist([row])

    rows = (
        _binary_files(spark, [f.read_path])
        .mapInArrow(layouts, "layout string, error string")
        .collect()
    )
    if not rows or rows[0]["error"]:
        why = rows[0]["error"] if rows else "no content"
        return unreadable_reason("xlsx workbook", RuntimeError(why))
    return [spreadsheet.Sheet(i, n, tuple(c), h) for i, n, c, h in json.loads(rows[0]["layout"])]


def _workbook_parser(
    options: dict[str, str], columns: tuple[str, ...], fields: tuple[str, ...]
) -> Callable[[Iterable[Any]], Iterator[Any]]:
    """The ``mapInArrow`` function turning workbooks' bytes into rows of ``fields``: the
    sheet's columns as text, ``_corrupt_record``, ``_file_path``, then four numbers
    (``_file_size``, ``_m``, ``_file_offset``, ``_row_number``)."""

    def parse(batches: Iterable[Any]) -> Iterator[Any]:
        import pyarrow as pa

        arrow = pa.schema(
            [(n, pa.string()) for n in fields[:-4]] + [(n, pa.int64()) for n in fields[-4:]]
        )

        def emit(rows: list[list[Any]]) -> Any:
            arrays = [
                pa.array(col, type=t.type)
                for col, t in zip(zip(*rows, strict=True), arrow, strict=True)
            ]
            return pa.RecordBatch.from_arrays(arrays, schema=arrow)

        for batch in batches:
            cols = [batch.column(c).to_pylist() for c in ("content", "_p", "_s", "_m")]
            for content, path, size, modified in zip(*cols, strict=True):
                rows: list[list[Any]] = []
                for sheet, number, values, corrupt in spreadsheet.sheet_rows(
                    content, options, columns
                ):
                    rows.append([*values, corrupt, path, size, modified, sheet, number])
                    if len(rows) == 10_000:
                        yield emit(rows)
                        rows = []
                if rows:
                    yield emit(rows)

    return parse


def _read_workbooks(
    spark: SparkSession,
    spec: SourceSpec,
    readable: Sequence[LandedFile],
    max_columns: int,
    out: SourceRead,
) -> None:
    """Excel workbooks: each selected sheet's rows under its header, sheets grouped by header
    (as CSV files are); ``_file_offset`` is the sheet's position, ``_row_number`` the row's
    number in Excel."""
    options = {k.lower(): v for k, v in spec.options.items()}
    groups: dict[tuple[str, ...], list[LandedFile]] = {}
    for f in readable:
        found = _workbook_layouts(spark, options, f)
        if isinstance(found, str):
            out.unreadable.append((f, found))
            continue
        wide = too_many_columns(max((len(s.columns) for s in found), default=0), max_columns)
        if wide:
            out.unreadable.append((f, wide))
            continue
        for sheet in found:
            if sheet.columns and f not in groups.setdefault(sheet.columns, []):
                groups[sheet.columns].append(f)
    for columns, group in groups.items():
        names = unique_names(list(columns))
        schema = StructType(
            [StructField(n, StringType()) for n in names]
            + [
                StructField(CORRUPT, StringType()),
                StructField("_file_path", StringType()),
                StructField("_file_size", LongType()),
                StructField("_m", LongType()),
                StructField("_file_offset", LongType()),
                StructField("_row_number", LongType()),
            ]
        )

        parse = _workbook_parser(options, columns, tuple(schema.fieldNames()))
        df = _binary_files(spark, [f.read_path for f in group]).mapInArrow(parse, schema)
        out.frames.append(
            df.select(
                *[F.col(quote_identifier(n)) for n in names],
                CORRUPT,
                "_file_path",
                "_file_size",
                F.timestamp_micros("_m").alias("_file_modified_at"),
                "_file_offset",
                "_row_number",
            )
        )


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
