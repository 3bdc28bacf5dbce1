"""After an erasure: vacuum what it touched, then drop the Delta log entries before it.

Vacuum (through the storage layer) removes the data files the deletes replaced. The log still
holds the old commits, and their ``add`` actions carry per-file statistics: the minimum and
maximum of short text columns, which can be a person's e-mail. So, after a checkpoint at the
current version, the commit files before it are removed; the table's history then starts at
the erasure (time travel to before it is what erasure must end).

Retention: the erasure's own tables are vacuumed with ``privacy.erase_vacuum_retention_hours``
(0 by default), which needs the retention check off (delta-rs ``enforce_retention_duration``,
Spark's ``retentionDurationCheck``); the storage layer's vacuum already runs that way. A
reader holding a snapshot older than the erasure fails on a missing file, which is the
intended outcome. Other tables keep their usual retention (``cdp run maintenance``).

The checkpoint and the log clean-up use ``deltalake`` directly: the storage interface has no
"truncate history" operation yet (it belongs there; on the delta-spark backend this step is
skipped and reported, and the log retention of the table applies).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_LOG_FILE = re.compile(r"^(\d{20})\.(json|crc|checkpoint\.parquet|checkpoint\.\d+\.\d+\.parquet)$")


def vacuum(store: Any, table: str, retention_hours: float) -> int:
    """Vacuum ``table``; the number of files removed."""
    return len(store.vacuum(table, retention_hours=retention_hours))


def purge_log(store: Any, table: str, *, keep_from: int | None = None) -> str:
    """Checkpoint at the current version and remove log files of earlier versions (those
    below ``keep_from`` when given: a reader that still needs them, see the stage). Returns
    ``done``, ``partial`` or why it was skipped."""
    if getattr(store, "backend_name", "") != "delta-rs":
        return "skipped: backend has no log truncation"
    uri = store.table_uri(table)
    if "://" in uri and not uri.startswith("file://"):
        return "skipped: not a local table"
    from deltalake import DeltaTable

    dt = DeltaTable(uri)
    dt.create_checkpoint()
    current = int(dt.version())
    limit = current if keep_from is None else min(current, keep_from)
    log_dir = Path(uri.removeprefix("file://")) / "_delta_log"
    for path in log_dir.iterdir():
        m = _LOG_FILE.match(path.name)
        if m and int(m.group(1)) < limit:
            path.unlink()
    return "done" if limit == current else f"partial: kept from version {limit}"
