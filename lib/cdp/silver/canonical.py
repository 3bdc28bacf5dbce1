"""The canonical silver model and the mapping of a source's bronze rows onto it.

Every source maps, through the ``mapping`` of its YAML declaration, onto one canonical table
chosen by its ``kind``. Canonical fields the source does not map are null; source columns the
mapping does not use are kept, as text, in the ``attributes`` map, so nothing is lost.

Mapping expressions become columns only through :func:`cdp.expressions.checked_expr` (the
allow-list), and source column names only through :func:`cdp.expressions.quote_identifier`.
"""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, MapType, StructType

from cdp.bronze.lineage import LINEAGE_COLUMNS as BRONZE_LINEAGE
from cdp.expressions import checked_expr, quote_identifier
from cdp.silver.model import (
    CONSENTS,
    EVENTS,
    PERSON_RECORDS,
    TABLE_FOR_KIND_NAME,
    TABLES,
    TRANSACTIONS,
    CanonicalTable,
)
from cdp.sources import SourceKind, SourceSpec

__all__ = [
    "CONSENTS",
    "EVENTS",
    "PERSON_RECORDS",
    "TABLES",
    "TABLE_FOR_KIND",
    "TRANSACTIONS",
    "CanonicalTable",
    "map_to_canonical",
]


TABLE_FOR_KIND: dict[SourceKind, CanonicalTable] = {
    SourceKind(kind): table for kind, table in TABLE_FOR_KIND_NAME.items()
}

TRUE_WORDS = ("true", "t", "1", "yes", "y", "deleted", "d")


def _as_text(df: DataFrame, col: Column) -> Column:
    """A column as text; structs, arrays and maps become JSON."""
    dtype = df.select(col.alias("x")).schema["x"].dataType
    if isinstance(dtype, (StructType, ArrayType, MapType)):
        return F.to_json(col)
    return col.cast("string")


def map_to_canonical(spec: SourceSpec) -> Callable[[DataFrame], DataFrame]:
    """Bronze rows of ``spec`` -> rows of its canonical table, every field as raw text.

    Adds ``source``, ``is_deleted``, ``attributes`` and the bronze lineage (``_bronze_*``).
    """
    table = TABLE_FOR_KIND[spec.kind]

    def transform(bronze: DataFrame) -> DataFrame:
        def mapped(field: str) -> Column:
            where = spec.origin or f"source {spec.name}"
            return checked_expr(
                spec.mapping[field], where=where, key=f"mapping.{field}", spark=bronze.sparkSession
            )

        cols: list[Column] = [F.lit(spec.name).alias("source")]
        for field in table.fields:
            if field in spec.mapping:
                cols.append(_as_text(bronze, mapped(field)).alias(field))
            elif field == table.time_field and spec.event_time:
                cols.append(F.col(quote_identifier(spec.event_time)).cast("string").alias(field))
            elif field == "event_type" and spec.kind is SourceKind.OTHER:
                cols.append(F.lit(spec.name).alias(field))
            elif field == "source_record_id" and spec.primary_key:
                cols.append(
                    F.concat_ws(
                        ":", *[F.col(quote_identifier(k)).cast("string") for k in spec.primary_key]
                    ).alias(field)
                )
            else:
                cols.append(F.lit(None).cast("string").alias(field))
        if spec.delete_flag:
            flag = F.lower(F.trim(F.col(quote_identifier(spec.delete_flag)).cast("string")))
            cols.append(F.coalesce(flag.isin(*TRUE_WORDS), F.lit(False)).alias("is_deleted"))
        else:
            cols.append(F.lit(False).alias("is_deleted"))
        used = set(spec.mapping.values()) | set(spec.primary_key)
        extra_fields = {k: v for k, v in spec.mapping.items() if k not in table.fields}
        attribute_pairs: list[Column] = []
        for name in sorted(extra_fields):
            attribute_pairs += [F.lit(name), _as_text(bronze, mapped(name))]
        for name in bronze.columns:
            if name in BRONZE_LINEAGE or name in used or name == spec.delete_flag:
                continue
            attribute_pairs += [F.lit(name), _as_text(bronze, F.col(quote_identifier(name)))]
        attribute_pairs += [F.lit("_rescued_data"), F.col("_rescued_data")]
        attributes = F.map_filter(F.create_map(*attribute_pairs), lambda k, v: v.isNotNull())
        cols += [
            attributes.alias("attributes"),
            F.col("_file_path").alias("_bronze_file_path"),
            F.col("_file_modified_at").alias("_bronze_file_modified_at"),
            F.col("_file_offset").alias("_bronze_file_offset"),
            F.col("_row_number").alias("_bronze_row_number"),
            F.col("_ingest_run_id").alias("_bronze_run_id"),
            F.col("_record_hash").alias("_bronze_record_hash"),
        ]
        return bronze.select(*cols)

    return transform
