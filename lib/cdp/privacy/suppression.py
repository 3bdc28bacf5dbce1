"""The suppression list (``ops/suppression_list``) and where it is applied.

An erased or suppressed person's identifiers are kept only as keyed pseudonyms (HMAC-SHA256
under the ``subject`` sub-key), one row per ``(id_type, pseudonym)``. Ingestion drops landed
rows that carry any listed identifier before bronze is written (counted in the run log as
suppressed, not quarantined), and export leaves listed customers out, so a re-delivered file,
late data or a rebuild from landing never brings the person back.

``canonical_identifiers`` maps a source's bronze rows through silver's own mapping and
standardizers, so a pseudonym computed here is the one computed from silver's values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType, TimestampType

from cdp import tables as T
from cdp.privacy.columns import hmac_sha256
from cdp.sources import SourceSpec

SUPPRESSION_TABLE = T.SUPPRESSION_LIST.name
SUPPRESSION_SCHEMA = StructType(
    [
        StructField("id_type", StringType()),
        StructField("pseudonym", StringType()),
        StructField("request_id", StringType()),
        StructField("added_at", TimestampType()),
    ]
)
# Identifier fields of the canonical model that name a person (any of them suppresses a row).
ID_FIELDS = ("email", "phone", "crm_id", "loyalty_id", "customer_id", "anonymous_id", "device_id")
RECORD = "record"  # id_type of "<source>|<source_record_id>"
# Lineage of a bronze row in the canonical frame (what deletion and landing match on).
LINEAGE = ("_bronze_file_path", "_bronze_record_hash")


def record_value(source: Column, record_id: Column) -> Column:
    return F.concat_ws("|", source, record_id)


def canonical_identifiers(spec: SourceSpec, bronze: DataFrame) -> DataFrame:
    """``_bronze_file_path, _bronze_record_hash, source, source_record_id`` and the
    standardized identifier fields (null where the source has none) of bronze rows."""
    from cdp.silver.canonical import TABLE_FOR_KIND, map_to_canonical
    from cdp.silver.stage import standardize

    table = TABLE_FOR_KIND[spec.kind]
    canon = bronze.transform(map_to_canonical(spec)).transform(standardize(spec, table))
    ids = [
        (F.col(f) if f in canon.columns else F.lit(None).cast("string")).alias(f) for f in ID_FIELDS
    ]
    return canon.select(*LINEAGE, "source", "source_record_id", *ids)


def identifier_pairs(frame: DataFrame, key: bytes) -> DataFrame:
    """``(_bronze_file_path, _bronze_record_hash, id_type, pseudonym)`` of every identifier of
    every row of a :func:`canonical_identifiers` frame."""
    pairs = [
        F.struct(F.lit(f).alias("id_type"), hmac_sha256(F.col(f), key).alias("pseudonym"))
        for f in ID_FIELDS
    ] + [
        F.struct(
            F.lit(RECORD).alias("id_type"),
            hmac_sha256(record_value(F.col("source"), F.col("source_record_id")), key).alias(
                "pseudonym"
            ),
        )
    ]
    return (
        frame.select(*LINEAGE, F.explode(F.array(*pairs)).alias("p"))
        .select(*LINEAGE, "p.id_type", "p.pseudonym")
        .where(F.col("pseudonym").isNotNull())
    )


def read_list(store: Any) -> DataFrame | None:
    """The suppression list, or None when it is empty or missing."""
    if not store.exists(SUPPRESSION_TABLE):
        return None
    listed = store.read(SUPPRESSION_TABLE).select("id_type", "pseudonym").distinct()
    return listed if listed.limit(1).count() else None


def drop_suppressed(
    spec: SourceSpec, good: DataFrame, listed: DataFrame, key: bytes
) -> tuple[DataFrame, int]:
    """``good`` (landed rows of ``spec``, lineage columns included) without the rows that carry
    a listed identifier, and how many were dropped."""
    hits = (
        identifier_pairs(canonical_identifiers(spec, good), key)
        .join(F.broadcast(listed), ["id_type", "pseudonym"])
        .select(
            F.col("_bronze_file_path").alias("_file_path"),
            F.col("_bronze_record_hash").alias("_record_hash"),
        )
        .distinct()
        .collect()
    )
    if not hits:
        return good, 0
    drop = good.sparkSession.createDataFrame(
        [(h["_file_path"], h["_record_hash"]) for h in hits],
        "_file_path string, _record_hash string",
    )
    kept = good.join(F.broadcast(drop), ["_file_path", "_record_hash"], "left_anti")
    suppressed = good.join(F.broadcast(drop), ["_file_path", "_record_hash"], "left_semi").count()
    return kept, suppressed


def add_to_list(
    store: Any, entries: Iterable[tuple[str, str]], request_id: str, *, at: datetime | None = None
) -> int:
    """Add ``(id_type, pseudonym)`` entries (merge: listed once)."""
    return add_requests_to_list(store, [(request_id, entries)], at=at)


def add_requests_to_list(
    store: Any,
    requests: Sequence[tuple[str, Iterable[tuple[str, str]]]],
    *,
    at: datetime | None = None,
) -> int:
    """Add the ``(id_type, pseudonym)`` entries of several requests in one commit (merge:
    listed once; an entry two requests share is listed under the first, as one call per
    request in that order would list it). One commit, so that a batch of erasures is
    suppressed all at once or not at all."""
    at = at or datetime.now(timezone.utc)
    first_request: dict[tuple[str, str], str] = {}
    for request_id, entries in requests:
        for t, p in entries:
            if p:
                first_request.setdefault((t, p), request_id)
    if not first_request:
        return 0
    frame = store.spark.createDataFrame(
        [(t, p, rid, at) for (t, p), rid in sorted(first_request.items())], SUPPRESSION_SCHEMA
    )
    store.merge(SUPPRESSION_TABLE, frame, keys=["id_type", "pseudonym"], update=False)
    return len(first_request)


def remove_from_list(store: Any, pseudonyms: Iterable[str]) -> int:
    """Drop every entry whose pseudonym is one of ``pseudonyms`` (an ``unsuppress``)."""
    values = sorted({p for p in pseudonyms if p})
    if not values or not store.exists(SUPPRESSION_TABLE):
        return 0
    listed = ", ".join(f"'{v}'" for v in values if all(c in "0123456789abcdef" for c in v))
    return int(store.delete(SUPPRESSION_TABLE, f"pseudonym IN ({listed})").metrics["num_deleted"])


def suppressed_customers(profile: DataFrame, listed: DataFrame, key: bytes) -> DataFrame:
    """``customer_id`` of profiles whose id, e-mail or phone is on the list (for export)."""
    hashed = profile.select(
        "customer_id",
        F.explode(
            F.array(
                F.struct(
                    F.lit("customer_id").alias("id_type"),
                    hmac_sha256(F.col("customer_id"), key).alias("pseudonym"),
                ),
                F.struct(
                    F.lit("email").alias("id_type"),
                    hmac_sha256(F.col("email"), key).alias("pseudonym"),
                ),
                F.struct(
                    F.lit("phone").alias("id_type"),
                    hmac_sha256(F.col("phone"), key).alias("pseudonym"),
                ),
            )
        ).alias("p"),
    ).select("customer_id", "p.id_type", "p.pseudonym")
    return (
        hashed.join(F.broadcast(listed), ["id_type", "pseudonym"], "left_semi")
        .select("customer_id")
        .distinct()
    )


def apply_at_landing(ctx: Any, spec: SourceSpec, good: DataFrame) -> DataFrame:
    """Ingest's hook: ``good`` without suppressed rows, counted in the run log as
    ``suppressed.<table>`` (not as quarantined). No list, no cost beyond one lookup; the key
    is loaded only when there is a list (an environment without a key and without requests
    ingests as before)."""
    listed = read_list(ctx.store)
    if listed is None:
        return good
    from cdp.privacy.requests import subject_key

    key = subject_key(ctx.config.privacy_key())
    kept, n = drop_suppressed(spec, good, listed, key)
    if n:
        ctx.run.metric(f"suppressed.{spec.table}", n)
        ctx.progress(f"{spec.name}: {n} row(s) suppressed (privacy suppression list)")
    return kept


def drop_suppressed_raw(bad: DataFrame, listed: DataFrame, key: bytes) -> DataFrame:
    """Quarantine rows (raw text) without those whose text holds a suppressed e-mail."""
    emails = bad.select(
        "_file_path",
        "_row_number",
        F.explode(
            F.expr(
                r"regexp_extract_all(lower(coalesce(raw_record, '')), "
                r"'[a-z0-9._%+-]+@[a-z0-9.-]+\\.[a-z]{2,}', 0)"
            )
        ).alias("e"),
    ).select("_file_path", "_row_number", hmac_sha256(F.col("e"), key).alias("pseudonym"))
    hit = emails.join(
        F.broadcast(listed.where("id_type = 'email'").select("pseudonym")), "pseudonym", "left_semi"
    ).select("_file_path", "_row_number")
    return bad.join(hit, ["_file_path", "_row_number"], "left_anti")


def apply_raw_at_landing(ctx: Any, bad: DataFrame) -> DataFrame:
    """Ingest's hook for quarantine rows: those whose raw text holds a suppressed e-mail are
    dropped (a suppressed person's malformed row is suppressed, not quarantined)."""
    listed = read_list(ctx.store)
    if listed is None:
        return bad
    from cdp.privacy.requests import subject_key

    return drop_suppressed_raw(bad, listed, subject_key(ctx.config.privacy_key()))


def exclude_suppressed(ctx: Any, members: DataFrame, profile: DataFrame) -> DataFrame:
    """Export's hook: ``members`` (a ``customer_id`` column) less the customers whose id,
    e-mail or phone is on the suppression list; unchanged (and no key needed) without one."""
    listed = read_list(ctx.store)
    if listed is None:
        return members
    from cdp.privacy.requests import subject_key

    key = subject_key(ctx.config.privacy_key())
    gone = suppressed_customers(profile, listed, key)
    return members.join(F.broadcast(gone), "customer_id", "left_anti")
