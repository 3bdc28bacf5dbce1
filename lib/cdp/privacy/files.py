"""Erasure outside the Delta tables: past export files, checkpoints and staging areas.

Export files (Parquet or CSV, in a local folder or an S3 bucket: the export's own sink) are
rewritten without the person's rows, and their manifest updated (rows, bytes, checksums). Each destination then gets a
suppression file under ``<target>/_suppressions/``: what was delivered for the person
(customer id and the identifier digests as exported), so the destination can delete its copy;
it is meant for the destination, like the export itself.

Checkpoint and staging files (``_checkpoints``, ``_staging`` under the data root) hold no
state a rerun needs; a file there that holds one of the person's values is removed.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cdp.export.sink import Sink
from cdp.privacy.keys import pseudonym
from cdp.privacy.resolve import Person

MANIFEST = "manifest.json"
SUPPRESSIONS = "_suppressions"
_TEXT_SUFFIXES = (".json", ".csv", ".txt", ".log", ".crc", "")


@dataclass(frozen=True)
class FileErasure:
    path: str  # relative to its root
    rows_deleted: int
    action: str  # rewritten | removed


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def export_digests(
    person: Person, id_key: bytes | None = None
) -> tuple[set[str], set[str], set[str]]:
    """Customer ids and the SHA-256 digests an export holds for ``person``: the delivered
    customer id is the destination's pseudonym (HMAC under ``id_key``), never the internal
    id, which is kept in the set too for deliveries made before pseudonyms existed."""
    ids = set(person.customers)
    if id_key is not None:
        ids |= {pseudonym(id_key, c) for c in person.customers}
    emails = {_sha(v.strip().lower()) for v in person.values.get("email", set())}
    phones = {_sha(v) for v in person.values.get("phone", set())}
    return ids, emails, phones


def _mask(table: pa.Table, person: Person, id_key: bytes | None) -> pa.Array:
    ids, emails, phones = export_digests(person, id_key)
    # Typed: an audience delivered with no members has a zero-row file, and an untyped empty
    # array is of Arrow's null type, which `or` refuses.
    hit = pa.array([False] * table.num_rows, type=pa.bool_())
    for col, values in (
        ("customer_id", ids),
        ("email_sha256", emails),
        ("phone_sha256", phones),
        ("email", person.values.get("email", set())),  # plaintext exports (local targets)
        ("phone", person.values.get("phone", set())),
    ):
        if col in table.column_names and values:
            isin = pc.fill_null(pc.is_in(table[col], value_set=pa.array(sorted(values))), False)
            hit = pc.or_(hit, isin)
    return hit


def rewrite_exports(
    sink: Sink, person: Person, request_ids: list[str], id_key: bytes | None = None
) -> list[FileErasure]:
    """Rewrite every export data file in ``sink`` (a local folder or an object store) that
    holds the person, and its manifest; write one suppression file per destination (audience)
    that had any of them. A rewritten object replaces the old one whole (S3 PUT; a local
    file by rename), with the sink's encryption settings. ``id_key``: the destination's
    customer-id pseudonym key (:func:`cdp.export.identifiers.destination_key`)."""
    done: list[FileErasure] = []
    removed_by_audience: dict[str, pa.Table] = {}
    manifests: dict[str, dict[str, Any]] = {}
    for key in sink.list_keys():
        name = key.rsplit("/", 1)[-1]
        if key.startswith(SUPPRESSIONS + "/") or not name.startswith("part-"):
            continue
        if not key.endswith((".parquet", ".csv")):
            continue
        data = sink.get_bytes(key)
        parquet = key.endswith(".parquet")
        table = pq.read_table(io.BytesIO(data)) if parquet else _read_csv(data)
        hit = _mask(table, person, id_key)
        n = int(pc.sum(hit).as_py() or 0)
        if not n:
            continue
        kept = table.filter(pc.invert(hit))
        gone = table.filter(hit)
        audience = key.split("/", 1)[0]
        prev = removed_by_audience.get(audience)
        removed_by_audience[audience] = (
            gone if prev is None else pa.concat_tables([prev, gone], promote_options="permissive")
        )
        body = _parquet_bytes(kept) if parquet else _csv_bytes(kept)
        sink.put_bytes(body, key, "application/octet-stream")
        folder = key.rsplit("/", 1)[0]
        if folder not in manifests:
            manifests[folder] = _read_manifest(sink, f"{folder}/{MANIFEST}")
        _update_manifest(manifests[folder], name, n, body)
        done.append(FileErasure(key, n, "rewritten"))
    for folder, doc in manifests.items():
        if doc:
            body = json.dumps(doc, indent=2, sort_keys=True).encode()
            sink.put_bytes(body, f"{folder}/{MANIFEST}", "application/json")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for audience, gone in removed_by_audience.items():
        out = f"{SUPPRESSIONS}/{audience}/{stamp}-{'-'.join(sorted(request_ids))[:80]}.json"
        notice = {
            "audience": audience,
            "requests": sorted(request_ids),
            "created_at": stamp,
            "delete": gone.to_pylist(),
        }
        text = json.dumps(notice, indent=2, sort_keys=True).encode()
        sink.put_bytes(text, out, "application/json")
    return done


def _read_csv(data: bytes) -> pa.Table:
    text = data.decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    if not rows:
        header = next(csv.reader(io.StringIO(text, newline="")), [])
        return pa.table({h: pa.array([], pa.string()) for h in header})
    return pa.Table.from_pylist(rows)


def _csv_bytes(table: pa.Table) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(table.column_names)
    for row in table.to_pylist():
        writer.writerow(["" if row[c] is None else row[c] for c in table.column_names])
    return buf.getvalue().encode("utf-8")


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="snappy")
    return buf.getvalue()


def _read_manifest(sink: Sink, key: str) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads(sink.get_bytes(key))
    except Exception:  # no manifest: a delivery that never sealed, nothing to update
        return {}
    return doc


def _update_manifest(doc: dict[str, Any], part: str, removed: int, body: bytes) -> None:
    if not doc:
        return
    for entry in doc.get("files", []):
        if entry.get("path") == part:
            entry["rows"] = int(entry["rows"]) - removed
            entry["bytes"] = len(body)
            entry["sha256"] = hashlib.sha256(body).hexdigest()
    doc["row_count"] = int(doc.get("row_count", 0)) - removed
    counts = doc.get("counts") or {}
    if "exported" in counts:
        counts["exported"] = int(counts["exported"]) - removed
        counts["erased"] = int(counts.get("erased", 0)) + removed


def tokens_of(person: Person) -> set[str]:
    """Values whose presence in a file means the file holds the person (case-folded)."""
    out = {v.lower() for v in person.all_values() | person.raw_values if len(v) >= 5}
    out |= {r.split("|", 1)[1].lower() for r in person.records if len(r.split("|", 1)[1]) >= 6}
    return out


def file_holds(path: Path, tokens: set[str]) -> bool:
    """True when a Parquet file's string values or a text file's content hold a token."""
    if not tokens:
        return False
    try:
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            text = " ".join(
                str(v)
                for col in table.columns
                if pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
                for v in col.to_pylist()
                if v is not None
            ).lower()
        else:
            text = path.read_bytes().decode("utf-8", errors="ignore").lower()
    except Exception:
        return False
    return any(t in text for t in tokens)


def scrub_directories(roots: list[Path], person: Person) -> list[FileErasure]:
    """Remove files under ``roots`` (checkpoints, staging) that hold one of the tokens."""
    tokens = tokens_of(person)
    done: list[FileErasure] = []
    for root in roots:
        if not root.is_dir():
            continue
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            if file_holds(path, tokens):
                path.unlink()
                done.append(FileErasure(str(path), 0, "removed"))
    return done
