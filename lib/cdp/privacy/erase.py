"""The ``privacy`` stage: carry out open erasure and suppression requests, with a proof.

Runs after ingest and before silver. For the open requests of ``ops/privacy_requests`` (and
the ``privacy_requests`` landing files, turned into requests first):

* ``suppress``: the subject's identifiers go on the suppression list (ingest drops their
  rows, export leaves them out); ``unsuppress`` takes them off;
* ``erase``: the subject is resolved through the identity and silver tables to every record
  and identifier value of the person (:mod:`cdp.privacy.resolve`); their rows are deleted from
  every bronze, silver and gold table of the catalog (bronze by content hash of the rows that
  silver's own mapping ties to the person, the quarantines by the person's values in the raw
  text), past export files are rewritten with a suppression file per destination, checkpoint
  and staging files holding them are removed, the touched tables are vacuumed and their log
  truncated (:mod:`cdp.privacy.purge`), and the person's identifiers are suppressed.

Every erased table gets a row in ``ops/erasure_proof`` per request: version before and after,
rows deleted, files vacuumed, log truncation, and a post-check count of the same predicate
(zero). Requests are processed as one batch (one delete per table for all of them), so the
row counts of a proof row are those of the batch (``requests_in_batch``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from cdp import tables as T
from cdp.pipeline import ERASABLE_TABLES
from cdp.privacy import purge
from cdp.privacy.audit import AUDIT_TABLE, record_audit
from cdp.privacy.files import FileErasure, rewrite_exports, scrub_directories
from cdp.privacy.requests import (
    deadline_days_of,
    open_requests,
    read_landing_requests,
    subject_key,
    submit_requests,
    update_requests,
)
from cdp.privacy.resolve import Person, customers_frame, resolve, sql_list, table_predicate
from cdp.privacy.suppression import (
    SUPPRESSION_TABLE,
    add_requests_to_list,
    add_to_list,
    canonical_identifiers,
    identifier_pairs,
    remove_from_list,
)
from cdp.stage import StageContext
from cdp.storage import TableStore

# A bronze row of the person: (table, hash, source, record id, matched id_type or None,
# matched value or None).
FoundRow = tuple[str, str, str | None, str | None, str | None, str | None]


PROOF_TABLE = T.ERASURE_PROOF.name
PROOF_SCHEMA = StructType(
    [
        StructField("request_id", StringType()),
        StructField("table", StringType()),  # a table name, or "file:<path>"
        StructField("version_before", LongType()),
        StructField("version_after", LongType()),
        StructField("rows_deleted", LongType()),
        StructField("files_vacuumed", LongType()),
        StructField("vacuumed", BooleanType()),
        StructField("log_truncated", StringType()),
        StructField("post_check_rows", LongType()),
        StructField("requests_in_batch", IntegerType()),
        StructField("run_id", StringType()),
        StructField("at", TimestampType()),
    ]
)
# The tables an erasure sweeps: bronze, silver and gold (ops tables hold no personal data by
# design); the stage graph declares the same tuple as the stage's writes.


@dataclass
class TableErasure:
    table: str
    version_before: int | None
    version_after: int | None
    rows_deleted: int
    files_vacuumed: int = 0
    log_truncated: str = "no"
    post_check_rows: int = 0


def _bronze_hashes(
    ctx: StageContext, key: bytes, person: Person, subject_emails: set[str]
) -> dict[str, set[str]]:
    """Per bronze table, the ``_record_hash`` of the rows that belong to the person: rows
    whose record key is the person's, or that carry one of their exclusive values (through
    silver's mapping and standardizers), or the subject's own e-mail pseudonym.

    Exclusivity was judged on silver, which holds one version of each record, with invalid
    values removed. Bronze holds every version as landed: a value found there on a record
    that identity gives to someone who stays (an older version, a value silver set aside) is
    shared after all. It is taken out of the person's values, and those rows stay: erasing
    them, and listing their record keys, would take a record of someone else out of every
    layer and keep it out of every rebuild.
    """
    from cdp.sources import load_sources

    spark = ctx.spark
    wanted: list[tuple[str, str]] = [(t, v) for t, vs in person.values.items() for v in vs]
    wanted_df = spark.createDataFrame(wanted or [("none", "")], "id_type string, value string")
    records = spark.createDataFrame([(r,) for r in sorted(person.records)] or [("",)], "_rk string")
    pseud = spark.createDataFrame(
        [("email", p) for p in subject_emails] or [("none", "")], "id_type string, pseudonym string"
    )
    found: list[FoundRow] = []
    for spec in load_sources(ctx.config):
        if not ctx.store.exists(spec.table):
            continue
        # Read four times below (record keys, values, the subject's pseudonyms, the rows
        # found): standardized once. The standardizers (phone parsing above all) cost more
        # than the table's scan.
        canon = canonical_identifiers(spec, ctx.store.read(spec.table)).persist(
            StorageLevel.MEMORY_AND_DISK
        )
        try:
            found += _bronze_rows_of(
                spec.table, canon, key, records, wanted_df, pseud, emails=bool(subject_emails)
            )
        finally:
            canon.unpersist()
    shared = _values_on_records_of_others(ctx, person, found)
    if shared:
        person.values = {
            t: {v for v in vs if (t, v) not in shared} for t, vs in person.values.items()
        }
        person.values = {t: vs for t, vs in person.values.items() if vs}
        ctx.progress(f"erase: {len(shared)} value(s) also on others' records in bronze: kept")
    out: dict[str, set[str]] = {}
    for table, row_hash, source, record_id, id_type, value in found:
        if id_type is not None and (id_type, value) in shared:
            continue
        if row_hash:
            out.setdefault(table, set()).add(row_hash)
        # Their record keys too: a record silver quarantined (never in silver's tables nor
        # the identity map) is then found in silver/_quarantine and silver/_changes.
        if record_id:
            person.records.add(f"{source}|{record_id}")
    return out


def _bronze_rows_of(
    table: str,
    canon: DataFrame,
    key: bytes,
    records: DataFrame,
    wanted_df: DataFrame,
    pseud: DataFrame,
    *,
    emails: bool,
) -> list[FoundRow]:
    """One bronze table's rows of the person (see :func:`_bronze_hashes`): ``(table, hash,
    source, record id, matched id_type or None, matched value or None)``."""
    by_record = canon.join(
        F.broadcast(records),
        F.concat_ws("|", "source", "source_record_id") == F.col("_rk"),
        "left_semi",
    )
    ids = [
        c
        for c in canon.columns
        if c not in ("_bronze_file_path", "_bronze_record_hash", "source", "source_record_id")
    ]
    by_value = (
        canon.select(
            "_bronze_record_hash",
            "source",
            "source_record_id",
            F.explode(
                F.array(
                    *[
                        F.struct(F.lit(c).alias("id_type"), F.col(c).cast("string").alias("value"))
                        for c in ids
                    ]
                )
            ).alias("p"),
        )
        .select("_bronze_record_hash", "source", "source_record_id", "p.id_type", "p.value")
        .join(F.broadcast(wanted_df), ["id_type", "value"], "left_semi")
    )
    plain = by_record.select("_bronze_record_hash")
    if emails:
        # Keyed hashes of every identifier on every row: only when a request names an e-mail.
        by_subject = (
            identifier_pairs(canon, key)
            .join(F.broadcast(pseud), ["id_type", "pseudonym"], "left_semi")
            .select("_bronze_record_hash")
        )
        plain = plain.unionByName(by_subject)
    plain = plain.distinct()
    fixed = canon.join(F.broadcast(plain), "_bronze_record_hash", "left_semi").select(
        "_bronze_record_hash",
        "source",
        "source_record_id",
        F.lit(None).cast("string").alias("id_type"),
        F.lit(None).cast("string").alias("value"),
    )
    return [(table, r[0], r[1], r[2], r[3], r[4]) for r in fixed.unionByName(by_value).collect()]


def _values_on_records_of_others(
    ctx: StageContext,
    person: Person,
    found: list[FoundRow],
) -> set[tuple[str, str]]:
    """``(id_type, value)`` matched on bronze rows whose record identity gives to a customer
    who is not being erased (and that are not among the person's own records)."""
    # Records already the person's (found by key: a household's records that carry the
    # subject's own address) are not someone else's here.
    by_value = {
        (src, rid)
        for _, _, src, rid, t, _ in found
        if t is not None and rid and f"{src}|{rid}" not in person.records
    }
    if not by_value or not ctx.store.exists(T.IDENTITY_MAP.name):
        return set()
    keys = ctx.spark.createDataFrame(sorted(by_value), "source string, source_record_id string")
    others = {
        (r[0], r[1])
        for r in ctx.store.read(T.IDENTITY_MAP.name)
        .join(F.broadcast(keys), ["source", "source_record_id"], "left_semi")
        .join(customers_frame(ctx.spark, person.customers), "customer_id", "left_anti")
        .select("source", "source_record_id")
        .distinct()
        .collect()
    }
    return {
        (t, v)
        for _, _, src, rid, t, v in found
        if t is not None and v is not None and (src, rid) in others
    }


# Phone numbers in quarantined text are matched on their last nine digits, whatever the
# prefix, spacing or punctuation they were written with.
PHONE_TAIL = 9


def _quarantine_hashes(ctx: StageContext, person: Person) -> set[str]:
    """``_record_hash`` of bronze quarantine rows whose raw or parsed text holds one of the
    person's exclusive values (e-mails, record ids, phone digits)."""
    from cdp.privacy.files import tokens_of

    table = T.BRONZE_QUARANTINE.name
    tokens = tokens_of(person)
    if not ctx.store.exists(table) or not tokens:
        return set()
    phones = {
        "".join(ch for ch in v if ch.isdigit())
        for v in person.values.get("phone", set()) | person.raw_values
    }
    phones = {p[-PHONE_TAIL:] for p in phones if len(p) >= PHONE_TAIL}
    q = ctx.store.read(table)
    text = F.lower(F.concat_ws(" ", F.col("raw_record"), F.col("parsed_record")))
    tok = q.select(
        "_record_hash",
        F.explode(F.split(text, r"""[\s,;"'<>{}\[\]()|=\\]+""")).alias("token"),
    )
    token_df = ctx.spark.createDataFrame([(t,) for t in sorted(tokens)], "token string")
    hits = {
        r[0]
        for r in tok.join(F.broadcast(token_df), "token", "left_semi")
        .select("_record_hash")
        .distinct()
        .collect()
    }
    if phones:
        digits = q.select(
            "_record_hash",
            F.explode(
                F.expr(
                    r"regexp_extract_all(concat_ws(' ', raw_record, parsed_record), '\\+?[0-9][0-9 ().-]{7,}[0-9]', 0)"
                )
            ).alias("cand"),
        ).select("_record_hash", F.regexp_replace("cand", "[^0-9]", "").alias("d"))
        # A candidate ends with one of the person's 9-digit phone tails: one semi-join for
        # every phone at once (a scan per phone cost a minute and a half for 1,000 people at
        # 100k persons).
        tails = ctx.spark.createDataFrame([(p,) for p in sorted(phones)], "tail string")
        hits |= {
            r[0]
            for r in digits.where(F.length("d") >= PHONE_TAIL)
            .select("_record_hash", F.substring("d", -PHONE_TAIL, PHONE_TAIL).alias("tail"))
            .join(F.broadcast(tails), "tail", "left_semi")
            .select("_record_hash")
            .distinct()
            .collect()
        }
    return {h for h in hits if h}


def _erase_table(ctx: StageContext, table: str, predicate: str) -> TableErasure:
    store = ctx.store
    before = store.version(table)
    result = store.delete(table, predicate)
    deleted = int(result.metrics.get("num_deleted", 0) or 0)
    return TableErasure(table, before, store.version(table), deleted)


def _erase(
    ctx: StageContext, key: bytes, batch: list[dict[str, Any]]
) -> tuple[list[TableErasure], Person, dict[str, str]]:
    store = ctx.store
    emails = {r["subject_email"] for r in batch if r["subject_email"]}
    started = time.perf_counter()
    person = resolve(
        store,
        key,
        emails=emails,
        phones={r["subject_phone"] for r in batch if r["subject_phone"]},
        customer_ids={r["subject_customer_id"] for r in batch if r["subject_customer_id"]},
    )
    ctx.progress(
        f"erase: {len(batch)} request(s) -> {len(person.customers)} customer(s), "
        f"{len(person.records)} record(s) ({time.perf_counter() - started:.1f}s)"
    )
    layers: dict[str, str] = {}
    started = time.perf_counter()
    bronze = _bronze_hashes(ctx, key, person, emails)
    ctx.progress(
        f"erase: {sum(map(len, bronze.values()))} bronze row(s) found in {len(bronze)} "
        f"table(s) ({time.perf_counter() - started:.1f}s)"
    )
    started = time.perf_counter()
    quarantine = _quarantine_hashes(ctx, person)
    ctx.progress(
        f"erase: {len(quarantine)} bronze quarantine row(s) found "
        f"({time.perf_counter() - started:.1f}s)"
    )
    extra_by_table: dict[str, dict[str, set[str]]] = {
        t: {"_record_hash": h} for t, h in bronze.items()
    }
    if quarantine:
        extra_by_table[T.BRONZE_QUARANTINE.name] = {"_record_hash": quarantine}
    # One table after another: two at a time on driver threads took as long at 100k persons
    # on 2 cores (144 s vs 143 s): the deletes are rewrites, bound by the executors' CPU.
    erased: list[TableErasure] = []
    for table in store.list_tables():
        try:
            entry = T.lookup(table)
        except KeyError:
            continue
        if entry not in ERASABLE_TABLES:
            continue
        cols = store.schema(table).fieldNames()
        extra = extra_by_table.get(table, {})
        if entry is T.BRONZE_SOURCE:
            # Bronze rows are found through silver's mapping (content hashes), not by name.
            predicate = f"_record_hash IN ({sql_list(extra['_record_hash'])})" if extra else None
        else:
            predicate = table_predicate(cols, person, extra)
        if predicate is None:
            continue
        started = time.perf_counter()
        result = _erase_table(ctx, table, predicate)
        if result.rows_deleted:
            ctx.run.metric(f"erased.{table}", result.rows_deleted)
        deleted_at = time.perf_counter()
        result.post_check_rows = store.read(table).where(predicate).count()
        ctx.progress(
            f"erase: {table}: {result.rows_deleted} row(s) deleted "
            f"({deleted_at - started:.1f}s), post-check {result.post_check_rows} "
            f"({time.perf_counter() - deleted_at:.1f}s)"
        )
        erased.append(result)
    for e in erased:
        layers[T.layer_of(e.table)] = "done" if e.post_check_rows == 0 else "failed"
    return erased, person, layers


def _finish_tables(ctx: StageContext, erased: list[TableErasure]) -> None:
    """Vacuum and truncate the log of every table the erasure changed."""
    hours = ctx.config.privacy.erase_vacuum_retention_hours
    progress = _silver_progress(ctx)
    for e in erased:
        if not e.rows_deleted:
            continue
        e.files_vacuumed = purge.vacuum(ctx.store, e.table, hours)
        keep_from = None
        if T.BRONZE_SOURCE.matches(e.table) and e.table in progress:
            # Silver finds new bronze rows by the run ids of commits after its mark: keep those.
            keep_from = progress[e.table] + 1
        e.log_truncated = purge.purge_log(ctx.store, e.table, keep_from=keep_from)
        e.version_after = ctx.store.version(e.table)


def _silver_progress(ctx: StageContext) -> dict[str, int]:
    table = T.SILVER_PROGRESS.name
    if not ctx.store.exists(table):
        return {}
    rows = (
        ctx.store.read(table)
        .groupBy("bronze_table")
        .agg(F.max("bronze_version").alias("v"))
        .collect()
    )
    return {r["bronze_table"]: int(r["v"]) for r in rows}


def run_privacy(ctx: StageContext) -> None:
    """The ``privacy`` stage (see the module docstring)."""
    store, run_id = ctx.store, ctx.run.run_id
    landed = read_landing_requests(ctx.config.landing_uri)
    if landed:
        submit_requests(
            store,
            ctx.config.privacy_key(),
            landed,
            origin="landing",
            deadline_days=deadline_days_of(ctx.config),
        )
    requests = open_requests(store)
    ctx.run.read(T.PRIVACY_REQUESTS.name, len(requests))
    if not requests:
        ctx.progress("no open privacy requests")
        return
    # The key only when there is work: a pipeline without requests needs none.
    key = subject_key(ctx.config.privacy_key())
    now = datetime.now(timezone.utc)
    done: list[dict[str, Any]] = []
    for r in [r for r in requests if r["type"] == "unsuppress"]:
        n = remove_from_list(
            store, [r["subject_email"], r["subject_phone"], r["subject_customer_id"]]
        )
        done.append(
            {
                **r,
                "status": "done",
                "layers": {"suppression_list": f"removed {n}"},
                "completed_at": now,
                "run_id": run_id,
            }
        )
    for r in [r for r in requests if r["type"] == "suppress"]:
        entries = [
            ("email", r["subject_email"]),
            ("phone", r["subject_phone"]),
            ("customer_id", r["subject_customer_id"]),
        ]
        add_to_list(store, entries, r["request_id"], at=now)
        person = resolve(
            store,
            key,
            emails=[r["subject_email"]] if r["subject_email"] else [],
            phones=[r["subject_phone"]] if r["subject_phone"] else [],
            customer_ids=[r["subject_customer_id"]] if r["subject_customer_id"] else [],
        )
        add_to_list(store, person.pseudonyms(key), r["request_id"], at=now)
        record_audit(
            store,
            action="suppress",
            run_id=run_id,
            tables={SUPPRESSION_TABLE: store.version(SUPPRESSION_TABLE)},
            rows=None,
            detail={"request_id": r["request_id"]},
        )
        done.append(
            {
                **r,
                "status": "done",
                "layers": {"suppression_list": "done", "export": "suppressed"},
                "completed_at": now,
                "run_id": run_id,
            }
        )
    batch = [r for r in requests if r["type"] == "erase"]
    if batch:
        done += _run_erasure(ctx, key, batch, now)
    update_requests(store, done)
    ctx.run.wrote(T.PRIVACY_REQUESTS.name, len(done))


def _rewrite_deliveries(ctx: StageContext, person: Person, ids: list[str]) -> list[FileErasure]:
    """Rewrite the past files that hold the person, wherever this platform delivered them: the
    export stage's target, through its own sink (so an S3 target is rewritten with its
    encryption and bucket-owner settings), the folder notebooks export segments to by default
    (:func:`cdp.notebook.export_segment`), and every other target an export's audit row names
    (a notebook's own folder or bucket)."""
    from cdp.export.identifiers import destination_key
    from cdp.export.sink import NOTEBOOK_EXPORTS, open_sink

    root = ctx.config.data_root_uri
    cfg = ctx.config.activation.export
    targets = [cfg.target or f"{root}/exports", f"{root}/{NOTEBOOK_EXPORTS}"]
    targets += [t for t in audited_targets(ctx.store) if t not in targets]
    done: list[FileErasure] = []
    seen: set[str] = set()
    for target in targets:
        # Another target than the configured one is written with the configured sink's
        # settings, as export_segment writes it (an endpoint only for an object store).
        sink_cfg = cfg.model_copy(
            update={
                "target": target,
                "endpoint_url": cfg.endpoint_url if target.startswith("s3://") else None,
            }
        )
        local = "://" not in target or target.startswith("file://")
        if local and not Path(target.removeprefix("file://")).is_dir():
            continue  # nothing was ever delivered there (or it was removed since)
        sink = open_sink(sink_cfg, default_target=f"{root}/exports")
        if sink.root in seen:
            continue  # the configured target, as the audit log spells it: rewritten once
        seen.add(sink.root)
        id_key = destination_key(ctx.config.privacy_key(), sink.root)
        done += rewrite_exports(sink, person, ids, id_key)
    return done


def audited_targets(store: TableStore) -> list[str]:
    """The distinct export targets (sink roots) that ``ops/audit_log`` records, sorted.
    Audit rows written before the target was recorded name none: their deliveries are found
    only where the configuration still points."""
    if not store.exists(AUDIT_TABLE):
        return []
    rows = (
        store.read(AUDIT_TABLE)
        .where(F.col("action") == "export")
        .select(F.get_json_object("detail", "$.target").alias("target"))
        .where(F.col("target").isNotNull())
        .distinct()
        .orderBy("target")
        .collect()
    )
    return [str(r["target"]) for r in rows]


def _run_erasure(
    ctx: StageContext, key: bytes, batch: list[dict[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    store, run_id = ctx.store, ctx.run.run_id
    erased, person, layers = _erase(ctx, key, batch)
    ids = [r["request_id"] for r in batch]
    # Suppress first: a crash after this point never lets the person back in. The batch's
    # pseudonyms are listed under its first request (where a list per request, each holding
    # them all, put them too), computed once: once per request cost 30 s for 1,000 requests.
    pseudonyms = person.pseudonyms(key)
    add_requests_to_list(
        store,
        [
            (
                r["request_id"],
                [
                    ("email", r["subject_email"]),
                    ("phone", r["subject_phone"]),
                    ("customer_id", r["subject_customer_id"]),
                    *(pseudonyms if i == 0 else []),
                ],
            )
            for i, r in enumerate(batch)
        ],
        at=now,
    )
    data_root = ctx.config.data_root_uri
    started = time.perf_counter()
    # Past deliveries, wherever the export wrote them (a local folder or an S3 bucket).
    files = _rewrite_deliveries(ctx, person, ids)
    layers["exports"] = "done"
    if "://" not in data_root or data_root.startswith("file://"):
        root = Path(data_root.removeprefix("file://"))
        files += scrub_directories([root / "_checkpoints", root / "_staging"], person)
        layers["files"] = "done"
    ctx.progress(f"erase: {len(files)} file(s) rewritten ({time.perf_counter() - started:.1f}s)")
    started = time.perf_counter()
    _finish_tables(ctx, erased)
    layers["vacuum"] = "done"
    ctx.progress(f"erase: tables vacuumed ({time.perf_counter() - started:.1f}s)")
    truncated = {e.log_truncated for e in erased if e.rows_deleted}
    layers["delta_log"] = (
        "done" if truncated <= {"done"} else "pending: " + "; ".join(sorted(truncated - {"done"}))
    )
    rows = []
    for rid in ids:
        for e in erased:
            rows.append(
                (
                    rid,
                    e.table,
                    e.version_before,
                    e.version_after,
                    e.rows_deleted,
                    e.files_vacuumed,
                    e.rows_deleted > 0,
                    e.log_truncated,
                    e.post_check_rows,
                    len(batch),
                    run_id,
                    now,
                )
            )
        for f in files:
            rows.append(
                (
                    rid,
                    f"file:{f.path}",
                    None,
                    None,
                    f.rows_deleted,
                    0,
                    False,
                    f.action,
                    0,
                    len(batch),
                    run_id,
                    now,
                )
            )
    if rows:
        store.append_rows(PROOF_TABLE, rows, PROOF_SCHEMA)
    total = sum(e.rows_deleted for e in erased)
    ctx.run.metric("erased.rows", total)
    ctx.run.metric("erased.requests", len(batch))
    record_audit(
        store,
        action="erase",
        run_id=run_id,
        tables={e.table: e.version_after for e in erased if e.rows_deleted},
        rows=total,
        detail={
            "requests": ids,
            "customers": len(person.customers),
            "records": len(person.records),
            "files": len(files),
            "layers": layers,
        },
    )
    failed = any(e.post_check_rows for e in erased)
    # A request whose log truncation waits on silver stays open: the next run finishes it.
    status = "open" if failed or layers["delta_log"] != "done" else "done"
    return [
        {
            **r,
            "status": status,
            "layers": dict(layers),
            "completed_at": now if status == "done" else None,
            "run_id": run_id,
        }
        for r in batch
    ]


def proof_summary(store: Any, request_id: str) -> list[dict[str, Any]]:
    """The proof rows of one request (for the CLI and tests)."""
    rows = store.read(PROOF_TABLE).where(F.col("request_id") == request_id).collect()
    return [json.loads(json.dumps(r.asDict(), default=str)) for r in rows]
