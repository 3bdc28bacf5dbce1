"""Exactly-once delivery: an audience is delivered once per date and content.

A run killed after an audience's upload was sealed (``_SUCCESS`` written) but before the
stage finished would otherwise deliver the same audience again on rerun, under the rerun's
id: two deliveries for a consumer to load, two audit rows. Before it stages anything, the
export therefore looks in the destination for a sealed delivery of the same audience and
date whose manifest carries the same *fingerprint*: a digest of everything that decides the
delivered content (the audience's evaluation, the versions of the tables it reads, the export
settings, the customer-id key's digest when ids are delivered, the platform version). Found:
the delivery stands, nothing is uploaded again, and only its audit row is written if the
killed run died before writing it. A changed input (a re-evaluation, a profile rebuild, a
consent or suppression change) makes a new fingerprint and so a new delivery, as it should.

Unsealed prefixes that earlier runs left for the same audience and date (a run killed
mid-upload: data files without a manifest, which readers ignore) are removed, so a rerun
leaves what one uninterrupted run leaves. The pipeline lock keeps a second exporter from
running meanwhile; a notebook exporting a segment under an audience's own name at the same
time is not protected (it does not take the lock).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from typing import Any

from pyspark.sql import functions as F

from cdp import __version__
from cdp.storage import TableStore

MANIFEST = "manifest.json"
SUCCESS = "_SUCCESS"


@dataclass(frozen=True)
class Delivered:
    """A sealed delivery found in the destination."""

    prefix: str
    manifest: dict[str, Any]


def delivery_prefix(audience: str, as_of: date, run_id: str) -> str:
    """``<audience>/dt=<as_of>/run=<run_id>``: where one run delivers one audience."""
    return f"{date_prefix(audience, as_of)}run={run_id}"


def date_prefix(audience: str, as_of: date) -> str:
    return f"{audience}/dt={as_of.isoformat()}/"


def fingerprint(parts: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``parts`` (and the platform version, whose code
    decides the file layout too)."""
    body = json.dumps({**parts, "cdp_version": __version__}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def input_versions(store: TableStore, tables: list[str]) -> dict[str, int | None]:
    """Each table's current version (None where it does not exist)."""
    return {name: store.version(name) for name in tables}


def _runs_under(keys: list[str], base: str) -> dict[str, list[str]]:
    runs: dict[str, list[str]] = defaultdict(list)
    for key in keys:
        run_part = key[len(base) :].split("/", 1)[0]
        if run_part.startswith("run="):
            runs[base + run_part].append(key)
    return runs


def find_delivered(sink: Any, audience: str, as_of: date, digest: str) -> Delivered | None:
    """The sealed delivery of ``audience`` at ``as_of`` whose manifest has ``digest``."""
    base = date_prefix(audience, as_of)
    for prefix, keys in sorted(_runs_under(sink.list_keys(base), base).items()):
        if f"{prefix}/{SUCCESS}" not in keys or f"{prefix}/{MANIFEST}" not in keys:
            continue
        manifest = json.loads(sink.get_bytes(f"{prefix}/{MANIFEST}"))
        if manifest.get("fingerprint") == digest:
            return Delivered(prefix=prefix, manifest=manifest)
    return None


def remove_unsealed(sink: Any, audience: str, as_of: date, current_run: str) -> int:
    """Delete what earlier runs uploaded for ``audience`` at ``as_of`` without sealing it;
    returns how many objects went."""
    base = date_prefix(audience, as_of)
    own = delivery_prefix(audience, as_of, current_run)
    stale = [
        key
        for prefix, keys in _runs_under(sink.list_keys(base), base).items()
        if prefix != own and f"{prefix}/{SUCCESS}" not in keys
        for key in keys
    ]
    if stale:
        sink.delete(stale)
    return len(stale)


def audit_recorded(store: TableStore, audit_table: str, destination: str) -> bool:
    """Whether the audit log already holds the export row of ``destination``."""
    if not store.exists(audit_table):
        return False
    rows = store.read(audit_table).where(
        (F.col("action") == "export") & (F.col("destination") == destination)
    )
    return bool(rows.limit(1).count())
