"""Erasure outside the Delta tables: past export files, checkpoints and staging areas.

Export files (Parquet or CSV under a local export target) are rewritten without the person's
rows, and their manifest updated (rows, bytes, checksums). Each destination then gets a
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

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

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


def export_digests(person: Person) -> tuple[set[str], set[str], set[str]]:
    """Customer ids and the SHA-256 digests an export holds for ``person``."""
    emails = {_sha(v.strip().lower()) for v in person.values.get("email", set())}
    phones = {_sha(v) for v in person.values.get("phone", set())}
    return set(person.customers), emails, phones


def _mask(table: pa.Table, person: Person) -> pa.Array:
    ids, emails, phones = export_digests(person)
    hit = pa.array([False] * table.num_rows)
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


def rewrite_exports(target: Path, person: Person, request_ids: list[str]) -> list[FileErasure]:
    """Rewrite every export data file under ``target`` that holds the person; write one
    suppression file per destination (audience) that had any of them."""
    if not target.is_dir():
        return []
    done: list[FileErasure] = []
    removed_by_audience: dict[str, pa.Table] = {}
    for path in sorted(target.rglob("part-*")):
        if SUPPRESSIONS in path.parts or path.suffix not in (".parquet", ".csv"):
            continue
        table = pq.read_table(path) if path.suffix == ".parquet" else _read_csv(path)
        hit = _mask(table, person)
        n = int(pc.sum(hit).as_py() or 0)
        if not n:
            continue
        kept = table.filter(pc.invert(hit))
        gone = table.filter(hit)
        audience = path.relative_to(target).parts[0]
        prev = removed_by_audience.get(audience)
        removed_by_audience[audience] = gone if prev is None else pa.concat_tables([prev, gone])
        if path.suffix == ".parquet":
            pq.write_table(kept, path, compression="snappy")
        else:
            _write_csv(kept, path)
        _update_manifest(path, n)
        done.append(FileErasure(str(path.relative_to(target)), n, "rewritten"))
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for audience, gone in removed_by_audience.items():
        out = (
            target / SUPPRESSIONS / audience / f"{stamp}-{'-'.join(sorted(request_ids))[:80]}.json"
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "audience": audience,
            "requests": sorted(request_ids),
            "created_at": stamp,
            "delete": gone.to_pylist(),
        }
        out.write_text(json.dumps(body, indent=2, sort_keys=True))
    return done


def _read_csv(path: Path) -> pa.Table:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        with path.open(newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), [])
        return pa.table({h: pa.array([], pa.string()) for h in header})
    return pa.Table.from_pylist(rows)


def _write_csv(table: pa.Table, path: Path) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(table.column_names)
    for row in table.to_pylist():
        writer.writerow(["" if row[c] is None else row[c] for c in table.column_names])
    path.write_text(buf.getvalue(), encoding="utf-8")


def _update_manifest(part: Path, removed: int) -> None:
    manifest = part.parent / MANIFEST
    if not manifest.is_file():
        return
    doc = json.loads(manifest.read_text())
    for entry in doc.get("files", []):
        if entry.get("path") == part.name:
            entry["rows"] = int(entry["rows"]) - removed
            entry["bytes"] = part.stat().st_size
            entry["sha256"] = hashlib.sha256(part.read_bytes()).hexdigest()
    doc["row_count"] = int(doc.get("row_count", 0)) - removed
    counts = doc.get("counts") or {}
    if "exported" in counts:
        counts["exported"] = int(counts["exported"]) - removed
        counts["erased"] = int(counts.get("erased", 0)) + removed
    manifest.write_text(json.dumps(doc, indent=2, sort_keys=True))


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
