"""The tables bronze ingestion owns besides ``bronze/<source>``: their names and schemas.

``bronze/_quarantine`` holds what could not be parsed, with the raw text and the reason;
``ops/ingested_files`` is the file ledger, one row per file a run has taken in.
"""

from __future__ import annotations

from pyspark.sql.types import LongType, StringType, StructField, StructType, TimestampType

from cdp import tables as T

QUARANTINE_TABLE = T.BRONZE_QUARANTINE.name
INGESTED_FILES_TABLE = T.INGESTED_FILES.name

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
