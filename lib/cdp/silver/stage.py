"""The ``silver`` stage: map, standardize, validate, de-duplicate and upsert every source.

Incremental: for each source, only bronze rows committed after the bronze version recorded in
``ops/silver_progress`` are read (the run ids of those commits select them; bronze rows keep
their ingest run id through compaction). Reruns with nothing new write nothing.

Per canonical table, one MERGE on (source, source_record_id) applies the batch: a record
replaces its stored version only when its version key (record time, then bronze file time,
then row) is newer, so older late-arriving data never overwrites newer. A deletion signalled
by the source is applied as a tombstone (``is_deleted = true``, kept so that an older copy
arriving later cannot bring the record back); consumers filter on ``is_deleted``.

Every row read is accounted for: bronze rows = rows merged + exact duplicates collapsed +
older versions superseded in the batch + rows quarantined (``silver/_quarantine``).

The two side tables are written before the merge and the progress mark, each as one
replace-where slice keyed by what it describes, so a crash and rerun (or a second run; the
runner's lock serialises them) leaves each row once:

- ``silver/_quarantine``: the slice is the batch's input, the bronze ingest runs it read per
  source (``source`` and ``_bronze_run_id``; the whole source on a first, full read). A rerun
  after a crash reads the same runs again (and perhaps newer ones) and replaces the slice.
- ``silver/_changes``: the slice is ``base_version``, the canonical table's version the
  changes were computed against. Only this table's merge moves it past that version, so rows
  of that version were left by a run that crashed before its merge: they are replaced. After
  a crash between the merge and the progress mark the rerun computes against the merged
  version and finds those keys unchanged, so the crashed run's rows stand, once.

Longer than the ~500 lines a module should hold: the order of its writes (side tables,
merge, progress mark) is the stage's crash-safety protocol, kept readable in one place;
the next split is the side-table slices into their own module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType, TimestampType

from cdp import faults
from cdp import tables as T
from cdp.silver import standardize as S
from cdp.silver.canonical import (
    CONSENTS,
    TABLE_FOR_KIND,
    TABLES,
    CanonicalTable,
    map_to_canonical,
)
from cdp.silver.consent_rules import fail_closed
from cdp.silver.field_limits import length_rules, limit_field_lengths
from cdp.silver.rules import (
    BLOCKED,
    VIOLATIONS,
    Rule,
    RuleType,
    apply_rules,
    load_rules,
    rule_count_columns,
)
from cdp.sources import SourceSpec, event_time_formats, load_sources
from cdp.stage import StageContext
from cdp.storage import TableStore

PROGRESS_TABLE = T.SILVER_PROGRESS.name
QUARANTINE_TABLE = T.SILVER_QUARANTINE.name
CHANGES_TABLE = T.SILVER_CHANGES.name
KEYS = ["source", "source_record_id"]
VERSION_KEY = "_version_key"
# In silver/_changes: the canonical table's version the change was computed against.
BASE_VERSION = "base_version"
# Run-log metrics the report reads back: rule.<table>.<rule> (rows failing each rule) and
# <table>.<outcome> for each de-duplication and upsert outcome below.
RULE_METRIC_PREFIX = "rule."
COLLAPSED, SUPERSEDED = "exact_duplicates_collapsed", "older_versions_superseded"
INSERTED, UPDATED, STALE = "inserted", "updated", "stale_not_applied"
DEDUP_OUTCOMES = (COLLAPSED, SUPERSEDED, INSERTED, UPDATED, STALE)

DEFAULT_DATE_FORMATS = ["yyyy-MM-dd", "dd/MM/yyyy", "yyyy/MM/dd", "dd.MM.yyyy", "yyyyMMdd"]
DEFAULT_TS_FORMATS = [
    "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX",
    "yyyy-MM-dd'T'HH:mm:ss.SSSX",
    "yyyy-MM-dd'T'HH:mm:ssX",
    "yyyy-MM-dd'T'HH:mm:ss",
    "yyyy-MM-dd HH:mm:ss",
    "yyyy-MM-dd",
]

BUILTIN_RULES = [
    Rule(
        name="source_record_id_present",
        type=RuleType.NOT_NULL,
        column="source_record_id",
        blocking=True,
    ),
]

PROGRESS_SCHEMA = StructType(
    [
        StructField("source", StringType()),
        StructField("bronze_table", StringType()),
        StructField("bronze_version", LongType()),
        StructField("silver_table", StringType()),
        StructField("silver_run_id", StringType()),
        StructField("processed_at", TimestampType()),
    ]
)


# System-issued ids and order ids: compared as text, exactly (see S.clean_id).
ID_FIELDS = ("crm_id", "loyalty_id", "customer_id", "order_id", "store_id")


def standardize(spec: SourceSpec, table: CanonicalTable) -> Callable[[DataFrame], DataFrame]:
    """The standardizers that apply to ``table``'s fields, configured from the source."""
    fields = set(table.fields)
    defaults = spec.defaults
    ts_formats = event_time_formats(spec) + DEFAULT_TS_FORMATS

    def transform(df: DataFrame) -> DataFrame:
        out = df
        if "email" in fields:
            out = out.transform(
                S.standardize_email(
                    "email",
                    gmail_dots=defaults.gmail_dots,
                    plus_addressing=defaults.plus_addressing,
                )
            )
        if "country" in fields:
            out = out.transform(S.standardize_country("country"))
        if "phone" in fields and "phone" not in spec.mapping:
            # What the standardizer makes of a missing value, without sending every row of an
            # event source through the Python UDF.
            out = out.transform(S.no_value("phone"))
        elif "phone" in fields:
            out = out.transform(
                S.standardize_phone(
                    "phone",
                    default_region=defaults.phone_region,
                    region_col="country" if "country" in fields else None,
                )
            )
        if "full_name" in fields:
            out = out.transform(
                S.split_full_name("full_name", first="_split_first", last="_split_last")
            )
            out = out.withColumn("first_name", F.coalesce("first_name", "_split_first"))
            out = out.withColumn("last_name", F.coalesce("last_name", "_split_last"))
            out = out.drop("_split_first", "_split_last")
        for name_field in ("first_name", "last_name"):
            if name_field in fields:
                out = out.transform(S.standardize_name(name_field))
        if "birth_date" in fields:
            formats = list(defaults.date_formats or DEFAULT_DATE_FORMATS)
            out = out.transform(
                S.parse_date("birth_date", formats=formats, min_date=defaults.birth_date_min)
            )
        if "birth_year" in fields:
            out = out.transform(S.parse_year("birth_year", min_year=defaults.birth_date_min.year))
        out = out.transform(
            S.parse_timestamp(table.time_field, formats=ts_formats, source_tz=defaults.timezone)
        )
        if "postcode" in fields:
            out = out.transform(S.standardize_postcode("postcode", country_col="country"))
        if "amount" in fields:
            out = out.transform(
                S.standardize_amount("amount", decimal_comma=defaults.decimal_comma)
            )
        if "currency" in fields:
            out = out.transform(S.standardize_currency("currency"))
        if "gender" in fields:
            out = out.transform(S.standardize_gender("gender"))
        for id_field in ID_FIELDS:
            if id_field in fields:
                out = out.transform(S.clean_id(id_field))
        for code in ("event_type", "channel", "purpose", "status"):
            if code in fields:  # small vocabularies: compare case- and blank-insensitively
                out = out.withColumn(code, F.nullif(F.lower(F.trim(F.col(code))), F.lit("")))
        return out

    return transform


def with_version_key(time_field: str) -> Callable[[DataFrame], DataFrame]:
    """A sortable text key: record time, then bronze file time, then position in the file
    (split offset, then row within the split)."""

    def padded(col: str, width: int) -> Any:
        return F.lpad(F.coalesce(F.col(col).cast("long"), F.lit(0)).cast("string"), width, "0")

    def micros(col: str) -> Any:
        return F.lpad(
            F.greatest(F.coalesce(F.unix_micros(F.col(col)), F.lit(0)), F.lit(0)).cast("string"),
            20,
            "0",
        )

    def transform(df: DataFrame) -> DataFrame:
        return df.withColumn(
            VERSION_KEY,
            F.concat(
                micros(time_field),
                micros("_bronze_file_modified_at"),
                padded("_bronze_file_offset", 20),
                padded("_bronze_row_number", 12),
            ),
        )

    return transform


def latest_per_key(df: DataFrame, *, distinct_col: str | None = None) -> DataFrame:
    """Collapse exact duplicates, then keep the newest version of each key.

    With ``distinct_col``, each kept row also carries the number of distinct records (record
    hashes) its key had in ``df``, computed in the same window, so that duplicates collapsed
    and versions superseded can be counted without another shuffle.
    """
    w = Window.partitionBy(*KEYS).orderBy(F.col(VERSION_KEY).desc(), F.col("_bronze_record_hash"))
    out = df.withColumn("_rank", F.row_number().over(w))
    if distinct_col:
        whole = w.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
        out = out.withColumn(distinct_col, F.size(F.collect_set("_bronze_record_hash").over(whole)))
    return out.where("_rank = 1").drop("_rank")


DISTINCT_RECORDS = "_distinct_records"
# Rows per partition of the ranking shuffle (silver rows are wide: raw, status and lineage
# columns); about 100-200 MB per partition at the generated data's row size.
RANKING_ROWS_PER_PARTITION = 200_000


def ranking_partitions(rows: int, configured: str | None) -> int:
    """Partitions for ranking ``rows`` rows: the session's shuffle partitions, or more when
    the batch would make partitions larger than :data:`RANKING_ROWS_PER_PARTITION`."""
    base = int(configured or 1)
    return max(base, -(-rows // RANKING_ROWS_PER_PARTITION))


@dataclass
class TableBatch:
    table: CanonicalTable
    frames: list[DataFrame] = field(default_factory=list)
    sources: list[tuple[SourceSpec, int]] = field(default_factory=list)  # (source, bronze version)
    # Per source name: the bronze ingest run ids read, or None when every bronze row was read.
    runs: dict[str, list[str] | None] = field(default_factory=dict)

    def input_slice(self) -> str:
        """Spark SQL predicate on ``silver/_quarantine`` selecting the rows of this batch's
        input: deterministic, so a rerun of the same input selects what a crashed run wrote."""
        per_source = []
        for spec, _version in self.sources:
            runs = self.runs.get(spec.name)
            cond = f"source = {_sql_text(spec.name)}"
            if runs is not None:
                cond += f" AND _bronze_run_id IN ({', '.join(_sql_text(r) for r in runs)})"
            per_source.append(f"({cond})")
        return f"table = {_sql_text(self.table.name)} AND ({' OR '.join(per_source)})"


def _sql_text(value: str) -> str:
    """A Spark SQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _progress(store: TableStore) -> dict[str, int]:
    if not store.exists(PROGRESS_TABLE):
        return {}
    rows = (
        store.read(PROGRESS_TABLE)
        .groupBy("source")
        .agg(F.max("bronze_version").alias("v"))
        .collect()
    )
    return {r.source: int(r.v) for r in rows}


def _new_run_ids(store: TableStore, table: str, after: int, upto: int) -> list[str]:
    """Run ids of the commits that added rows to ``table`` in versions (after, upto]."""
    runs = set()
    for entry in store.history(table):
        if (
            after < entry.version <= upto
            and entry.operation in ("APPEND", "WRITE")
            and entry.run_id
        ):
            runs.add(entry.run_id)
    return sorted(runs)


def read_new_bronze(
    store: TableStore, spec: SourceSpec, last: int | None
) -> tuple[DataFrame | None, int]:
    """Bronze rows of ``spec`` committed after version ``last`` (all rows when None)."""
    bronze, current, _runs = read_new_bronze_runs(store, spec, last)
    return bronze, current


def read_new_bronze_runs(
    store: TableStore, spec: SourceSpec, last: int | None
) -> tuple[DataFrame | None, int, list[str] | None]:
    """:func:`read_new_bronze`, and the ingest run ids it selected (None: every row)."""
    current = store.version(spec.table)
    if current is None or current == last:
        return None, current if current is not None else -1, []
    bronze = store.read(spec.table, version=current)
    if last is None:
        return bronze, current, None
    runs = _new_run_ids(store, spec.table, last, current)
    if not runs:
        return None, current, []
    return bronze.where(F.col("_ingest_run_id").isin(runs)), current, runs


def load_silver_rules(ctx: StageContext) -> dict[str, list[Rule]]:
    """``silver.rules_file`` (none when the key is null)."""
    name = ctx.config.silver.rules_file
    return load_rules(ctx.config.conf_path(name), tables=set(TABLES)) if name else {}


def run_silver(ctx: StageContext) -> None:
    """The ``silver`` stage."""
    store, run_id = ctx.store, ctx.run.run_id
    sources = load_sources(ctx.config)
    rules = load_silver_rules(ctx)
    progress = _progress(store)
    batches: dict[str, TableBatch] = {}
    for spec in sources:
        if not store.exists(spec.table):
            ctx.progress(f"{spec.name}: no bronze table yet")
            continue
        bronze, version, runs = read_new_bronze_runs(store, spec, progress.get(spec.name))
        if bronze is None:
            ctx.progress(f"{spec.name}: nothing new in {spec.table} (version {version})")
            continue
        table = TABLE_FOR_KIND[spec.kind]
        frame = bronze.transform(map_to_canonical(spec)).transform(standardize(spec, table))
        batch = batches.setdefault(table.name, TableBatch(table))
        batch.frames.append(frame)
        batch.sources.append((spec, version))
        batch.runs[spec.name] = runs
    now = datetime.now(timezone.utc)
    for batch in batches.values():
        _apply_batch(ctx, batch, rules.get(batch.table.name, []), now)
        faults.checkpoint("silver.before_progress")
        store.append_rows(
            PROGRESS_TABLE,
            [
                (spec.name, spec.table, version, batch.table.table, run_id, now)
                for spec, version in batch.sources
            ],
            PROGRESS_SCHEMA,
        )


def _union(frames: Sequence[DataFrame]) -> DataFrame:
    out = frames[0]
    for f in frames[1:]:
        out = out.unionByName(f, allowMissingColumns=True)
    return out


def _apply_batch(ctx: StageContext, batch: TableBatch, rules: list[Rule], now: datetime) -> None:
    store, run_id = ctx.store, ctx.run.run_id
    table = batch.table
    batch_frame = _union(batch.frames).transform(limit_field_lengths(ctx.config.silver))
    all_rules = [*BUILTIN_RULES, *length_rules(ctx.config.silver, batch_frame.columns), *rules]
    refs = {
        r.ref_table: store.read(r.ref_table)
        for r in all_rules
        if r.type is RuleType.REFERENTIAL and r.ref_table and store.exists(r.ref_table)
    }
    checked = batch_frame.transform(apply_rules(all_rules, refs=refs))
    if table.name == CONSENTS.name:
        # Before the version key: a statement whose time did not parse is ordered by the
        # processing time it gets here (consents fail closed, see cdp.silver.consent_rules).
        checked = checked.transform(fail_closed(all_rules, now))
    checked = (
        checked.transform(with_version_key(table.time_field))
        .withColumn("_silver_run_id", F.lit(run_id))
        .withColumn("_silver_updated_at", F.lit(now).cast("timestamp"))
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    try:
        # One pass over the cached batch gives rows per source, blocked rows and violations
        # per rule; distinct records and keys come from the ranking window below (a distinct
        # count here would cost two more shuffles of the whole batch).
        stats = (
            checked.agg(
                F.count(F.lit(1)).alias("_read"),
                F.sum(F.col(BLOCKED).cast("int")).alias("_blocked"),
                *[
                    F.sum((F.col("source") == spec.name).cast("int")).alias(f"_src.{spec.name}")
                    for spec, _v in batch.sources
                ],
                *rule_count_columns(table.name, all_rules),
            )
            .collect()[0]
            .asDict()
        )
        read_rows = int(stats.pop("_read") or 0)
        blocked = int(stats.pop("_blocked") or 0)
        per_source = {
            spec.name: int(stats.pop(f"_src.{spec.name}") or 0) for spec, _v in batch.sources
        }
        for spec, _v in batch.sources:
            ctx.run.read(spec.table, per_source.get(spec.name, 0))
        for key, value in stats.items():
            ctx.run.metric(f"{RULE_METRIC_PREFIX}{key}", int(value or 0))

        quarantined = None
        if blocked:
            quarantined = checked.where(F.col(BLOCKED)).select(
                F.lit(table.name).alias("table"),
                "source",
                "source_record_id",
                F.transform(F.col(VIOLATIONS), lambda v: v["rule"]).alias("rules"),
                F.transform(F.col(VIOLATIONS), lambda v: v["reason"]).alias("reasons"),
                F.to_json(F.struct(*[F.col(f) for f in table.fields])).alias("record"),
                "_bronze_file_path",
                "_bronze_file_offset",
                "_bronze_row_number",
                "_bronze_run_id",
                F.lit(run_id).alias("_silver_run_id"),
                F.lit(now).cast("timestamp").alias("quarantined_at"),
            )
        _write_quarantine(ctx, batch, quarantined)
        if blocked:
            ctx.run.quarantined(table.table, blocked)

        good = (
            checked.where(~F.col(BLOCKED))
            .withColumn("_dq_warnings", F.transform(F.col(VIOLATIONS), lambda v: v["rule"]))
            .drop(VIOLATIONS, BLOCKED)
        )
        good_n = read_rows - blocked
        # The newest version per key; exact duplicates fall out with the older versions.
        # The ranking's shuffle is sized to the batch: the ranked frame is cached, and Spark
        # reads a cached partition back from disk as one buffer, so a handful of huge
        # partitions (13M events in 4 at 1M persons) exhausted an 8 GB heap.
        parts = ranking_partitions(good_n, ctx.spark.conf.get("spark.sql.shuffle.partitions"))
        ranked = latest_per_key(good.repartition(parts, *KEYS), distinct_col=DISTINCT_RECORDS)
        ranked = ranked.persist(StorageLevel.MEMORY_AND_DISK)
        kept = ranked.agg(
            F.count(F.lit(1)).alias("keys"), F.sum(DISTINCT_RECORDS).alias("distinct")
        ).collect()[0]
        latest_n, distinct_n = int(kept["keys"] or 0), int(kept["distinct"] or 0)
        latest = ranked.drop(DISTINCT_RECORDS)
        ctx.run.metric(f"{table.name}.{COLLAPSED}", good_n - distinct_n)
        ctx.run.metric(f"{table.name}.{SUPERSEDED}", distinct_n - latest_n)

        base = store.version(table.table)
        changes = _changes(store, table, latest, run_id, now, base)
        _write_changes(store, table, changes, -1 if base is None else base)
        faults.checkpoint("silver.before_merge")
        result = store.merge(
            table.table,
            latest,
            keys=KEYS,
            update_condition=f"s.{VERSION_KEY} > t.{VERSION_KEY}",
            merge_schema=True,
            source_keys_unique=True,  # latest_per_key kept one row per key
        )
        applied = int(result.metrics.get("num_inserted", 0)) + int(
            result.metrics.get("num_updated", 0)
        )
        ctx.run.wrote(table.table, applied)
        ctx.run.metric(f"{table.name}.{INSERTED}", result.metrics.get("num_inserted", 0))
        ctx.run.metric(f"{table.name}.{UPDATED}", result.metrics.get("num_updated", 0))
        ctx.run.metric(f"{table.name}.{STALE}", latest_n - applied)
        ctx.progress(
            f"{table.name}: read {read_rows:,}, quarantined {blocked:,}, collapsed "
            f"{good_n - distinct_n:,} duplicates and {distinct_n - latest_n:,} older versions, "
            f"inserted {result.metrics.get('num_inserted', 0):,}, updated {result.metrics.get('num_updated', 0):,}"
        )
        ranked.unpersist()
    finally:
        checked.unpersist()


def _write_quarantine(ctx: StageContext, batch: TableBatch, rows: DataFrame | None) -> None:
    """The batch's quarantined rows as the whole slice of its input (see the module
    docstring): replaced, or removed when this run quarantines none of that input."""
    store = ctx.store
    slice_ = batch.input_slice()
    if rows is not None:
        store.replace_where(QUARANTINE_TABLE, rows, slice_)
    elif store.exists(QUARANTINE_TABLE) and store.read(QUARANTINE_TABLE).where(slice_).take(1):
        store.delete(QUARANTINE_TABLE, slice_)
        ctx.progress(f"{QUARANTINE_TABLE}: removed rows of a crashed run no longer quarantined")


def _write_changes(store: TableStore, table: CanonicalTable, changes: DataFrame, base: int) -> None:
    """The batch's changes as the whole slice of (table, base version); see the module
    docstring. A table from before ``base_version`` existed gets the column by this append."""
    exists = store.exists(CHANGES_TABLE)
    if exists and BASE_VERSION not in store.schema(CHANGES_TABLE).fieldNames():
        store.append(CHANGES_TABLE, changes)
        return
    store.replace_where(
        CHANGES_TABLE, changes, f"table = {_sql_text(table.name)} AND {BASE_VERSION} = {base}"
    )


def _changes(
    store: TableStore,
    table: CanonicalTable,
    latest: DataFrame,
    run_id: str,
    now: datetime,
    base: int | None,
) -> DataFrame:
    """Keys this batch will insert, update or delete (tombstone) in ``table``, compared with
    its version ``base`` (None: the table does not exist yet)."""
    incoming = latest.select(*KEYS, VERSION_KEY, "is_deleted")
    if base is not None:
        current = store.read(table.table, version=base).select(
            *KEYS,
            F.col(VERSION_KEY).alias("_current_key"),
            F.col("is_deleted").alias("_was_deleted"),
        )
        joined = incoming.join(current, KEYS, "left")
    else:
        joined = incoming.withColumn("_current_key", F.lit(None).cast("string")).withColumn(
            "_was_deleted", F.lit(None).cast("boolean")
        )
    change = (
        F.when(F.col("_current_key").isNull() & ~F.col("is_deleted"), "insert")
        .when(F.col("_current_key").isNull(), None)
        .when(F.col(VERSION_KEY) <= F.col("_current_key"), None)
        .when(F.col("is_deleted") & ~F.coalesce(F.col("_was_deleted"), F.lit(False)), "delete")
        .otherwise("update")
    )
    return joined.select(
        F.lit(table.name).alias("table"),
        *KEYS,
        change.alias("change"),
        F.lit(run_id).alias("silver_run_id"),
        F.lit(now).cast("timestamp").alias("changed_at"),
        F.lit(-1 if base is None else base).cast("long").alias(BASE_VERSION),
    ).where(F.col("change").isNotNull())
