"""Pure transformations of parsed rows: fitting them to the table, splitting off the bad ones.

Schema drift never fails a run: new columns are added to the table (or rescued, per source),
and a value whose type no longer fits its column is kept, as JSON, in ``_rescued_data``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, MapType, StringType, StructField, StructType

from cdp.bronze.lineage import CORRUPT, LINEAGE_COLUMNS, RESCUED, record_hash
from cdp.expressions import quote_identifier
from cdp.sources import SchemaEvolution, SourceFormat
from cdp.storage.base import widen_struct


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
        col = F.col(quote_identifier(field.name))
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
            cast = F.expr(f"try_cast({quote_identifier(field.name)} AS {want.simpleString()})")
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


# Internal column: why a parsed record goes to the quarantine (None: it goes to bronze).
REJECT = "_reject_reason"


def _malformed_reason(fmt: SourceFormat) -> str:
    if fmt is SourceFormat.CSV:
        return "malformed CSV record: wrong number of fields or broken quoting"
    if fmt in (SourceFormat.JSON, SourceFormat.NDJSON):
        return "malformed JSON record"
    if fmt is SourceFormat.XML:
        return "malformed XML record"
    if fmt is SourceFormat.XLSX:
        return "malformed spreadsheet row: a value beyond the header's last column"
    return f"malformed {fmt.value} record"


def record_chars(df: DataFrame) -> Any:
    """Characters of a record's text: its string values, and nested values as JSON.

    Numbers and dates are short by nature and skipped, so a flat numeric file pays nothing.
    """
    parts = []
    for f in df.schema.fields:
        if f.name in (CORRUPT, REJECT, *LINEAGE_COLUMNS):
            continue
        col = F.col(quote_identifier(f.name))
        if isinstance(f.dataType, StringType):
            parts.append(F.coalesce(F.length(col), F.lit(0)))
        elif isinstance(f.dataType, (StructType, ArrayType, MapType)):
            parts.append(F.coalesce(F.length(F.to_json(col)), F.lit(0)))
    total = F.lit(0)
    for part in parts:
        total = total + part
    return total


def mark_rejects(df: DataFrame, *, fmt: SourceFormat, max_record_chars: int) -> DataFrame:
    """``df`` with :data:`REJECT`: why each record is quarantined, None for a good one.

    A record longer than ``max_record_chars`` is rejected whole rather than cut short: a cut
    value would travel on as if it were complete.
    """
    reason = F.when(F.col(CORRUPT).isNotNull(), F.lit(_malformed_reason(fmt))).when(
        record_chars(df) > F.lit(max_record_chars),
        F.lit(f"record longer than ingest.max_record_chars ({max_record_chars:,} characters)"),
    )
    return df.withColumn(REJECT, reason)


def split_good_and_quarantined(
    df: DataFrame,
    *,
    source: str,
    fmt: SourceFormat,
    run_id: str,
    ingested_at: datetime,
    raw_max_chars: int,
) -> tuple[DataFrame, DataFrame]:
    """Parsed rows -> (bronze rows with lineage, quarantine rows with raw text and reason).

    Rows are judged by :data:`REJECT` where :func:`mark_rejects` added it, else by the
    corrupt-record column alone.
    """
    if REJECT not in df.columns:
        df = df.withColumn(
            REJECT, F.when(F.col(CORRUPT).isNotNull(), F.lit(_malformed_reason(fmt)))
        )
    source_cols = [c for c in df.columns if c not in (CORRUPT, REJECT, *LINEAGE_COLUMNS)]
    # Both tables lead with where the record came from and end with the run that read it.
    file_lineage = [
        F.lit(source).alias("_source"),
        F.col("_file_path"),
        F.col("_file_size").cast("long").alias("_file_size"),
        F.col("_file_modified_at"),
        F.col("_file_offset").cast("long").alias("_file_offset"),
        F.col("_row_number").cast("long").alias("_row_number"),
    ]
    run_lineage = [
        F.lit(run_id).alias("_ingest_run_id"),
        F.lit(ingested_at).cast("timestamp").alias("_ingested_at"),
    ]
    is_bad = F.col(REJECT).isNotNull()
    good = df.where(~is_bad).select(
        *[F.col(quote_identifier(c)) for c in source_cols],
        *file_lineage,
        *run_lineage,
        record_hash(df.schema, source_cols).alias("_record_hash"),
        (F.col(RESCUED) if RESCUED in df.columns else F.lit(None).cast("string")).alias(RESCUED),
    )
    # Whatever the reader made of the record; it also makes the scan parse every column,
    # so a record is judged malformed by the same rules here as on the bronze side.
    parsed = F.to_json(F.struct(*[F.col(quote_identifier(c)) for c in source_cols]))
    # A record parsed fine but over the size cap has no raw text: its parsed text stands in.
    raw = F.coalesce(F.col(CORRUPT), parsed)
    bad = df.where(is_bad).select(
        *file_lineage,
        F.substring(raw, 1, raw_max_chars).alias("raw_record"),
        F.col(REJECT).alias("reason"),
        F.when(F.col(CORRUPT).isNotNull(), parsed)
        .otherwise(F.substring(parsed, 1, raw_max_chars))
        .alias("parsed_record"),
        *run_lineage,
        F.sha2(raw, 256).alias("_record_hash"),
    )
    return good, bad
