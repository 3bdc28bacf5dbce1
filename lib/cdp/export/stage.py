"""The ``export`` stage: deliver each audience's consented members to the export target.

For every declared audience (or those in ``activation.export.audiences``):

1. members at the date (``ctx.as_of``, else the audience's latest evaluation) are joined to
   the addresses of ``gold/customer_profile``, and each address is delivered only when it
   holds the consent for the audience's purpose and channel *now*, read from
   ``silver/consents`` at export time (:mod:`cdp.export.consent`: per address, fail closed,
   so a withdrawal since the profile or audience run is honoured; without that table nobody
   holds a consent, and each audience is delivered as an empty, sealed export);
2. Spark writes the rows (identifiers normalized and SHA-256 hashed by default; the customer
   id only when asked, as a per-destination HMAC) into a local staging directory,
   range-partitioned and sorted, ``rows_per_file`` at most per file;
3. the files are uploaded to ``<target>/<audience>/dt=<as_of>/run=<run_id>/part-NNNNN.<ext>``,
   then ``manifest.json`` (files, row counts, SHA-256 checksums, schema, model versions,
   run id), then an empty ``_SUCCESS``, in that order.

Consumers read a prefix only once its ``_SUCCESS`` exists. An export that fails part-way
removes what it uploaded for that audience (best effort) and never writes the manifest or the
mark; one killed outright leaves data files without a manifest, which readers ignore and the
next export of that audience and date removes.

Exactly once (:mod:`cdp.export.delivery`): the manifest carries a fingerprint of the inputs;
a rerun that finds a sealed delivery of the same audience, date and fingerprint (a run killed
after the upload) leaves it standing, uploads nothing and only completes its audit row.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cdp import __version__, faults
from cdp.audiences.members import members_at
from cdp.audiences.spec import AudienceError, AudienceSpec, load_audiences
from cdp.audiences.stage import MEMBERSHIP_TABLE, PROFILE_TABLE, RUNS_TABLE
from cdp.export.consent import CONSENTED, consented_contacts, read_consent_inputs
from cdp.export.delivery import (
    MANIFEST,
    SUCCESS,
    audit_recorded,
    delivery_prefix,
    find_delivered,
    fingerprint,
    input_versions,
    remove_unsealed,
)
from cdp.export.identifiers import EXPORT_ID, destination_key, export_rows, with_export_id
from cdp.export.settings import ExportConfig
from cdp.export.sink import ExportError, Sink, open_sink
from cdp.optional_inputs import record_missing
from cdp.privacy.audit import AUDIT_TABLE, record_audit
from cdp.privacy.suppression import SUPPRESSION_TABLE
from cdp.stage import StageContext
from cdp.tables import CONSENTS as CONSENTS_TABLE

# Fault point passed after each data file is uploaded (crash-safety tests).
FAULT_AFTER_UPLOAD = "export.after_upload"
MIB = 1024 * 1024
# Run-log metrics per export, export.<audience>.<measure> (the report reads uri and files).
EXPORT_METRIC_PREFIX = "export."
URI, FILES, WITHOUT_CONSENT = "uri", "files", "without_consent"


def export_metric(audience: str, measure: str) -> str:
    """The run-log key of one export measure."""
    return f"{EXPORT_METRIC_PREFIX}{audience}.{measure}"


@dataclass(frozen=True)
class Evaluation:
    """The audience's latest evaluation, as ``gold/audience_runs`` recorded it."""

    as_of: date
    run_id: str
    models: list[dict[str, Any]]


def local_staging_root(cfg: ExportConfig, data_root: str, name: str) -> Path:
    """Where part files are written before upload: ``staging_dir``, else
    ``<data root>/_staging/<name>`` for a local data root."""
    if cfg.staging_dir:
        return Path(cfg.staging_dir)
    if "://" in data_root:
        raise ExportError("activation.export.staging_dir is needed when data_root is not local")
    return Path(data_root) / "_staging" / name


def _evaluations(ctx: StageContext, names: list[str]) -> dict[str, Evaluation]:
    """Each audience's latest evaluation (on or before ``ctx.as_of`` when given)."""
    if not ctx.store.exists(RUNS_TABLE):
        return {}
    runs = ctx.store.read(RUNS_TABLE).where(F.col("audience").isin(*names))
    if ctx.as_of is not None:
        runs = runs.where(F.col("as_of") <= F.lit(ctx.as_of))
    latest = (
        runs.groupBy("audience")
        .agg(
            F.max_by(
                F.struct("as_of", "run_id", "models"), F.struct("as_of", "evaluated_at")
            ).alias("e")
        )
        .collect()
    )
    return {
        r["audience"]: Evaluation(
            as_of=r["e"]["as_of"],
            run_id=r["e"]["run_id"],
            models=[
                {
                    "name": m["model_name"],
                    "version": m["model_version"],
                    "scores_as_of": str(m["scores_as_of"]),
                }
                for m in (r["e"]["models"] or [])
            ],
        )
        for r in latest
    }


def _selected(specs: list[AudienceSpec], cfg: ExportConfig) -> list[AudienceSpec]:
    if cfg.audiences is None:
        return specs
    known = {s.name for s in specs}
    unknown = [a for a in cfg.audiences if a not in known]
    if unknown:
        raise AudienceError(
            f"activation.export.audiences: unknown audience(s) {', '.join(unknown)} "
            f"(declared: {', '.join(sorted(known)) or 'none'})"
        )
    return [s for s in specs if s.name in cfg.audiences]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(MIB), b""):
            digest.update(block)
    return digest.hexdigest()


def _rows_in(path: Path, fmt: str) -> int:
    if fmt == "parquet":
        return int(pq.read_metadata(path).num_rows)
    import csv

    with path.open(newline="", encoding="utf-8") as fh:
        return max(0, sum(1 for _ in csv.reader(fh)) - 1)  # minus the header


def stage_files(df: DataFrame, directory: Path, *, fmt: str, rows_per_file: int) -> list[Path]:
    """Spark writes ``df`` (partitioned and projected by the caller) into ``directory``, at
    most ``rows_per_file`` rows per file; the part files come back renamed
    ``part-00000.<ext>`` ... in partition order."""
    writer = df.write.mode("errorifexists").option("maxRecordsPerFile", rows_per_file)
    if fmt == "csv":
        writer.option("header", "true").csv(str(directory))
    else:
        writer.option("compression", "snappy").parquet(str(directory))
    ext = "csv" if fmt == "csv" else "parquet"
    # Spark names parts after their partition (part-00003-<uuid>-c000...): sorting the names
    # keeps the range order, and renaming drops the random part.
    parts = sorted(
        p for p in directory.iterdir() if p.name.startswith("part-") and not p.name.endswith(".crc")
    )
    out = []
    for i, part in enumerate(parts):
        target = directory / f"part-{i:05d}.{ext}"
        part.rename(target)
        out.append(target)
    return out


def _schema_doc(df: DataFrame) -> list[dict[str, Any]]:
    return [
        {"name": f.name, "type": f.dataType.simpleString(), "nullable": f.nullable}
        for f in df.schema.fields
    ]


def export_audience(
    ctx: StageContext,
    spec: AudienceSpec,
    evaluation: Evaluation,
    as_of: date,
    sink: Sink,
    staging: Path,
) -> dict[str, Any]:
    """Stage, upload and seal one audience, once: a sealed delivery of the same audience, date
    and inputs already in the destination (a rerun after a crash past the upload) stands and
    is not delivered again (:mod:`cdp.export.delivery`). Returns the manifest."""
    cfg = ctx.config.activation.export
    digest = fingerprint(
        {
            "audience": spec.name,
            "purpose": spec.purpose,
            "channel": spec.channel,
            "as_of": as_of,
            "membership": [evaluation.as_of, evaluation.run_id],
            "tables": input_versions(
                ctx.store,
                [MEMBERSHIP_TABLE, PROFILE_TABLE, CONSENTS_TABLE.name, SUPPRESSION_TABLE],
            ),
            "format": [cfg.format, cfg.rows_per_file, cfg.hash_identifiers],
            # The delivered ids depend on the key: a rotated key is a new delivery.
            "customer_id_key": hashlib.sha256(
                destination_key(ctx.config.privacy_key(), sink.root)
            ).hexdigest()
            if cfg.include_customer_id
            else None,
        }
    )
    removed = remove_unsealed(sink, spec.name, as_of, ctx.run.run_id)
    if removed:
        ctx.progress(
            f"{spec.name}: removed {removed} object(s) an interrupted run left unsealed "
            f"for dt={as_of}"
        )
    done = find_delivered(sink, spec.name, as_of, digest)
    if done is not None:
        return _already_delivered(ctx, spec, done.prefix, done.manifest, sink)
    membership = ctx.store.read(MEMBERSHIP_TABLE).where(F.col("audience") == spec.name)
    members = members_at(membership, as_of).select("customer_id")
    return export_members(ctx, spec, members, evaluation, as_of, sink, staging, digest)


def _already_delivered(
    ctx: StageContext, spec: AudienceSpec, prefix: str, manifest: dict[str, Any], sink: Sink
) -> dict[str, Any]:
    """Leave an earlier run's identical delivery as it is; write its audit row if that run
    died before writing it."""
    destination = sink.uri(prefix)
    if not audit_recorded(ctx.store, AUDIT_TABLE, destination):
        _audit(ctx, spec, manifest, destination, int(manifest["row_count"]), sink.root)
    ctx.run.wrote(f"export/{spec.name}", 0)
    ctx.run.metric(export_metric(spec.name, URI), destination)
    ctx.run.metric(export_metric(spec.name, FILES), len(manifest["files"]))
    ctx.run.metric(
        export_metric(spec.name, WITHOUT_CONSENT), int(manifest["counts"]["without_consent"])
    )
    ctx.progress(
        f"{spec.name}: already delivered to {destination} by run {manifest['run_id']} from "
        "the same inputs; not delivered again"
    )
    return manifest


def _audit(
    ctx: StageContext,
    spec: AudienceSpec,
    manifest: dict[str, Any],
    destination: str,
    rows: int,
    target: str,
) -> None:
    """Who delivered what from which profile version: the audit trail of every export.
    ``target``: the sink's root, where the privacy stage finds the delivery again (a notebook
    may export to a folder or bucket the configuration does not name)."""
    record_audit(
        ctx.store,
        action="export",
        run_id=ctx.run.run_id,
        tables={
            PROFILE_TABLE: ctx.store.version(PROFILE_TABLE),
            CONSENTS_TABLE.name: ctx.store.version(CONSENTS_TABLE.name),
        },
        rows=rows,
        destination=destination,
        detail={
            "audience": spec.name,
            "purpose": spec.purpose,
            "channel": spec.channel,
            "membership_run_id": manifest["membership_run_id"],
            "hashed": manifest["identifiers"]["hashed"],
            "target": target,
        },
    )


def export_members(
    ctx: StageContext,
    spec: AudienceSpec,
    members: DataFrame,
    evaluation: Evaluation,
    as_of: date,
    sink: Sink,
    staging: Path,
    digest: str | None = None,
) -> dict[str, Any]:
    """Stage, upload and seal the ``members`` (a ``customer_id`` column, one row per
    customer) of ``spec``; returns the manifest. :func:`export_audience` passes the members of
    ``gold/audience_membership``; a notebook passes a segment it evaluated itself. ``digest``: the
    delivery's fingerprint, kept in the manifest (:mod:`cdp.export.delivery`)."""
    cfg = ctx.config.activation.export
    run_id = ctx.run.run_id
    profile = ctx.store.read(PROFILE_TABLE).select("customer_id", "email", "phone")
    members = without_suppressed(ctx, members, profile)
    # Consent per address, from the statements as they are now (not the profile's last run).
    # A member whose customer left the profile (merged away) has no address: not exported.
    joined = members.join(profile, on="customer_id", how="left").transform(
        consented_contacts(read_consent_inputs(ctx.store), spec.purpose, spec.channel)
    )
    counts = joined.agg(
        F.count(F.lit(1)).alias("members"),
        F.sum(F.when(F.col(CONSENTED), 1).otherwise(0)).alias("consented"),
    ).collect()[0]
    n_members, n_rows = int(counts["members"]), int(counts["consented"] or 0)
    keep = joined.where(F.col(CONSENTED))
    order = "customer_id"
    if cfg.include_customer_id:
        # The delivered id is the destination's pseudonym; files are sorted by it, so their
        # order says nothing about the internal ids either.
        id_key = destination_key(ctx.config.privacy_key(), sink.root)
        keep, order = keep.transform(with_export_id(id_key)), EXPORT_ID
    files = max(1, math.ceil(n_rows / cfg.rows_per_file))
    out = (
        keep.repartitionByRange(files, order)
        .sortWithinPartitions(order)
        .transform(
            export_rows(
                hash_identifiers=cfg.hash_identifiers,
                include_customer_id=cfg.include_customer_id,
            )
        )
    )
    prefix = delivery_prefix(spec.name, as_of, run_id)
    local = staging / spec.name
    parts = stage_files(out, local, fmt=cfg.format, rows_per_file=cfg.rows_per_file)

    uploaded: list[str] = []
    entries: list[dict[str, Any]] = []
    try:
        for part in parts:
            key = f"{prefix}/{part.name}"
            entries.append(
                {
                    "path": part.name,
                    "uri": sink.uri(key),
                    "rows": _rows_in(part, cfg.format),
                    "bytes": part.stat().st_size,
                    "sha256": _sha256(part),
                }
            )
            sink.put_file(part, key)
            uploaded.append(key)
            faults.checkpoint(FAULT_AFTER_UPLOAD)
        total = sum(int(e["rows"]) for e in entries)
        if total != n_rows:
            raise ExportError(
                f"audience {spec.name}: the staged files hold {total} rows, expected {n_rows}"
            )
        manifest = {
            "manifest_version": 1,
            "audience": spec.name,
            "description": spec.description,
            "purpose": spec.purpose,
            "channel": spec.channel,
            "as_of": as_of.isoformat(),
            "run_id": run_id,
            "fingerprint": digest,
            "membership_as_of": evaluation.as_of.isoformat(),
            "membership_run_id": evaluation.run_id,
            "models": evaluation.models,
            "model_version": ",".join(f"{m['name']}={m['version']}" for m in evaluation.models)
            or None,
            "format": cfg.format,
            "compression": "snappy" if cfg.format == "parquet" else None,
            "identifiers": {
                "hashed": cfg.hash_identifiers,
                "algorithm": "sha256" if cfg.hash_identifiers else None,
                "email": "trimmed, lower-cased",
                "phone": "E.164",
                # Plain SHA-256 is what ad platforms match on; it is not a keyed hash, so the
                # files remain personal data (a list of addresses can be hashed and compared).
                "note": "unkeyed SHA-256 as ad platforms require; still personal data"
                if cfg.hash_identifiers
                else "plaintext",
                "customer_id": "HMAC-SHA256, keyed per destination"
                if cfg.include_customer_id
                else None,
            },
            "consent": "per address, from silver/consents at export time",
            "row_count": total,
            "counts": {
                "members": n_members,
                "without_consent": n_members - n_rows,
                "exported": total,
            },
            "files": entries,
            "schema": _schema_doc(out),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "cdp_version": __version__,
        }
        # The manifest only after every data file, and the mark only after the manifest: a
        # reader that sees _SUCCESS finds a manifest listing complete files.
        body = json.dumps(manifest, indent=2, sort_keys=True).encode()
        sink.put_bytes(body, f"{prefix}/{MANIFEST}", "application/json")
        uploaded.append(f"{prefix}/{MANIFEST}")
        sink.put_bytes(b"", f"{prefix}/{SUCCESS}", "application/octet-stream")
    except BaseException:
        try:
            sink.delete(uploaded)
        except Exception:
            ctx.log.exception("could not remove the partial export of %s", spec.name)
        raise
    _audit(ctx, spec, manifest, sink.uri(prefix), total, sink.root)
    ctx.run.wrote(f"export/{spec.name}", total)
    ctx.run.metric(export_metric(spec.name, URI), sink.uri(prefix))
    ctx.run.metric(export_metric(spec.name, FILES), len(entries))
    ctx.run.metric(export_metric(spec.name, WITHOUT_CONSENT), n_members - n_rows)
    ctx.progress(
        f"{spec.name}: {total} row(s) in {len(entries)} file(s) to {sink.uri(prefix)} "
        f"({n_members - n_rows} member(s) without consent left out)"
    )
    return manifest


def without_suppressed(ctx: StageContext, members: DataFrame, profile: DataFrame) -> DataFrame:
    """Members less the people on the privacy suppression list (erased or suppressed)."""
    from cdp.privacy.suppression import exclude_suppressed

    return exclude_suppressed(ctx, members, profile)


def run_export(ctx: StageContext) -> None:
    """Export every selected audience; the date is ``ctx.as_of`` or each audience's latest
    evaluation (members are those whose spell covers the date)."""
    cfg = ctx.config.activation.export
    specs = _selected(load_audiences(ctx.config), cfg)
    if not specs:
        ctx.progress("no audiences to export")
        return
    if not ctx.store.exists(MEMBERSHIP_TABLE):
        raise ExportError(f"{MEMBERSHIP_TABLE} does not exist (run the audiences stage first)")
    evaluations = _evaluations(ctx, [s.name for s in specs])
    never = [s.name for s in specs if s.name not in evaluations]
    if never:
        raise ExportError(
            f"audience(s) {', '.join(never)} never evaluated"
            + (f" on or before {ctx.as_of}" if ctx.as_of else "")
            + " (run the audiences stage first)"
        )
    if not ctx.store.exists(CONSENTS_TABLE.name):
        # Consent fails closed: no statement, no consent. The export still runs and seals
        # an empty delivery per audience, so a consumer sees "nobody", not a missing run.
        record_missing(
            ctx,
            CONSENTS_TABLE.name,
            "no consent records exist, so no address holds a consent: every audience "
            "exports 0 rows",
        )
    data_root = ctx.config.data_root_uri
    staging_root = local_staging_root(cfg, data_root, "export")
    sink = open_sink(cfg, default_target=f"{data_root}/exports")
    staging = staging_root / ctx.run.run_id
    try:
        for spec in specs:
            evaluation = evaluations[spec.name]
            as_of = ctx.as_of or evaluation.as_of
            if as_of > evaluation.as_of:
                ctx.progress(
                    f"{spec.name}: last evaluated at {evaluation.as_of}, exporting its members "
                    f"as of then under dt={as_of}"
                )
            export_audience(ctx, spec, evaluation, as_of, sink, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
