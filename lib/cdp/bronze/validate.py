"""Checking a source's declaration against its files before anything is landed.

A key column or mapping expression that does not resolve is a ConfigError naming the file
and the field, so a typo stops the run before it writes half the sources.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructField, StructType
from pyspark.sql.utils import AnalysisException

from cdp.bronze.ledger import LandedFile, list_landed_files
from cdp.bronze.readers import DEFAULT_MAX_COLUMNS, first_line, read_source_files
from cdp.config import ConfigError
from cdp.expressions import check_expression, expected_analysis_errors, quote_identifier
from cdp.sources import SourceFormat, SourceSpec

log = logging.getLogger(__name__)


def _first_readable(
    spark: SparkSession,
    spec: SourceSpec,
    files: Sequence[LandedFile],
    sampling_ratio: float | None = None,
    max_columns: int = DEFAULT_MAX_COLUMNS,
) -> tuple[LandedFile, StructType] | None:
    """The first of ``files`` that can be read, with its schema (unreadable files are skipped:
    ingestion quarantines them); None if the files hold no records at all."""
    problems = []
    for candidate in files:
        try:
            got = read_source_files(
                spark, spec, [candidate], sampling_ratio=sampling_ratio, max_columns=max_columns
            )
            frames, unreadable = got.frames, got.unreadable
        except Exception as exc:
            raise ConfigError(
                f"{spec.origin}: format/options: cannot read {candidate.uri} as "
                f"{spec.format.value}: {first_line(exc)}"
            ) from None
        if unreadable:
            problems.append(unreadable[0][1])
            continue
        if frames:
            return candidate, frames[0].schema
    if problems:
        raise ConfigError(f"{spec.origin}: format: no file can be read: {problems[0]}")
    return None


def validate_source(
    spark: SparkSession,
    spec: SourceSpec,
    landing_root: str,
    *,
    max_columns: int = DEFAULT_MAX_COLUMNS,
) -> LandedFile | None:
    """Check the declaration against the files; see :func:`_validate_source`.

    JSON schemas are first inferred from a sample (a full inference reads the whole file);
    only when that finds a problem is the check repeated on the full files, so a rare field
    the sample missed is never reported as an error.
    """
    try:
        return _validate_source(
            spark, spec, landing_root, sampling_ratio=0.05, max_columns=max_columns
        )
    except ConfigError:
        if spec.format not in (SourceFormat.JSON, SourceFormat.NDJSON):
            raise
        return _validate_source(
            spark, spec, landing_root, sampling_ratio=None, max_columns=max_columns
        )


def _validate_source(
    spark: SparkSession,
    spec: SourceSpec,
    landing_root: str,
    *,
    sampling_ratio: float | None,
    max_columns: int = DEFAULT_MAX_COLUMNS,
) -> LandedFile | None:
    """Check key columns and mapping expressions against the files; ConfigError if wrong.

    Columns are looked up in the first file and, so that a mapping may already cover a column
    that a later delivery renamed or added (``coalesce(new_name, old_name)``), in the latest
    file; only when a name is in neither are the columns of every file read (a backfill in
    an old layout between two new ones). A name in no file is a typo or a wrong declaration,
    reported with file and field.
    """
    files = [f for f in list_landed_files(spark, spec.glob_for(landing_root)) if f.size > 0]
    if not files:
        log.warning("source %s: no files match %s yet", spec.name, spec.glob_for(landing_root))
        return None
    head = _first_readable(spark, spec, files, sampling_ratio, max_columns)
    if head is None:
        return None
    first, schema = head
    tail = _first_readable(spark, spec, list(reversed(files)), sampling_ratio, max_columns)
    latest = tail[0] if tail else first
    if tail is not None:
        known = set(schema.fieldNames())
        schema = StructType([*schema.fields, *[f for f in tail[1].fields if f.name not in known]])
    if sampling_ratio is not None and not [n for n in schema.fieldNames() if not n.startswith("_")]:
        # A sample of a small file can hold no rows at all; say so without resolving columns
        # against it, which Spark would log as an analysis error before the full retry.
        raise ConfigError(f"{spec.origin}: the sampled schema holds no columns")
    where = f"the first file {first.uri}" + (
        f" or the latest file {latest.uri}" if latest != first else ""
    )
    try:
        with expected_analysis_errors():
            _check_columns(spark, spec, schema, where)
    except ConfigError:
        # A column only middle files carry (an old name a mapping still coalesces, in a
        # backfill between two deliveries of the new layout) is no declaration error: look at
        # every file's columns before refusing. Only on this path, so the usual check stays
        # two files.
        if len(files) <= 2:
            raise
        wider = _all_columns(spark, spec, files, sampling_ratio, max_columns)
        if wider is None:
            raise
        with expected_analysis_errors():
            _check_columns(spark, spec, wider, f"any of the {len(files)} files")
        log.info(
            "source %s: the declaration resolves against all %d files together, not against "
            "the first and latest alone",
            spec.name,
            len(files),
        )
    return first


def _all_columns(
    spark: SparkSession,
    spec: SourceSpec,
    files: Sequence[LandedFile],
    sampling_ratio: float | None,
    max_columns: int,
) -> StructType | None:
    """Every column any of ``files`` has (the first file's type where names repeat); None
    when no file can be read."""
    got = read_source_files(
        spark, spec, files, sampling_ratio=sampling_ratio, max_columns=max_columns
    )
    fields: dict[str, StructField] = {}
    for frame in got.frames:
        for f in frame.schema.fields:
            fields.setdefault(f.name, f)
    return StructType(list(fields.values())) if fields else None


def _check_columns(spark: SparkSession, spec: SourceSpec, schema: StructType, where: str) -> None:
    """Key columns, event time, delete flag and every mapping expression resolve against
    ``schema``; ConfigError naming the field and ``where`` otherwise."""
    df = spark.createDataFrame([], schema)
    for field_name, column in (
        *[("primary_key", c) for c in spec.primary_key],
        ("event_time", spec.event_time),
        ("delete_flag", spec.delete_flag),
    ):
        if column is None:
            continue
        try:
            try:
                df.selectExpr(column)
            except AnalysisException:
                # A name that is no SQL identifier ("Letzte_Änderung", "Order-No"): silver
                # reads key and time columns quoted (cdp.silver.canonical), so check that too.
                df.select(F.col(quote_identifier(column)))
        except AnalysisException:
            raise ConfigError(
                f"{spec.origin}: {field_name}: column {column!r} is not in {where} "
                f"(columns: {[c for c in df.columns if not c.startswith('_')]})"
            ) from None
    for canonical, expr in spec.mapping.items():
        # The allow-list before analysis: resolving a subquery would already read its files.
        check_expression(expr, where=spec.origin, key=f"mapping.{canonical}", spark=spark)
        try:
            df.selectExpr(f"{expr} AS {quote_identifier(canonical)}")
        except AnalysisException as exc:
            raise ConfigError(
                f"{spec.origin}: mapping.{canonical}: {expr!r} does not resolve against {where}: "
                f"{first_line(exc)}"
            ) from None
        except Exception as exc:  # parse errors in the expression
            raise ConfigError(
                f"{spec.origin}: mapping.{canonical}: {expr!r} is not a valid Spark SQL "
                f"expression: {first_line(exc)}"
            ) from None
