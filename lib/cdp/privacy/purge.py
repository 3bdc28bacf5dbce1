"""After an erasure: vacuum what it touched, then drop the Delta log entries before it.

Vacuum (through the storage layer) removes the data files the deletes replaced. The log still
holds the old commits, and their ``add`` actions carry per-file statistics: the minimum and
maximum of short text columns, which can be a person's e-mail. So, after a checkpoint at the
current version, the commit files before it are removed; the table's history then starts at
the erasure (time travel to before it is what erasure must end).

Retention: the erasure's own tables are vacuumed with ``privacy.erase_vacuum_retention_hours``
(0 by default), which needs the retention check off (delta-rs ``enforce_retention_duration``,
Spark's ``retentionDurationCheck``) and ``force=True`` past the storage layer's floor. A
reader holding a snapshot older than the erasure fails on a missing file, which is the
intended outcome. Other tables keep their usual retention (``cdp run maintenance``).

Both go through the storage layer (``vacuum``, ``truncate_history``); a backend without log
truncation (delta-spark) reports it skipped, and the table's log retention applies.
"""

from __future__ import annotations

from typing import Any


def vacuum(store: Any, table: str, retention_hours: float) -> int:
    """Vacuum ``table``; the number of files removed. Forced: the erasure's retention (0 by
    default) is below the storage layer's floor on purpose, and the privacy stage holds the
    data root's lock, so no other run writes files this could delete."""
    return len(store.vacuum(table, retention_hours=retention_hours, force=True))


def purge_log(store: Any, table: str, *, keep_from: int | None = None) -> str:
    """Checkpoint at the current version and remove log files of earlier versions (those
    below ``keep_from`` when given: a reader that still needs them, see the stage). Returns
    ``done``, ``partial`` or why it was skipped."""
    return str(store.truncate_history(table, keep_from=keep_from))
