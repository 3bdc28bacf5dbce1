"""``ops/audit_log``: who exported, erased or looked up what, when, from which table versions.

One row per action, appended by the code that acts (the export stage per delivered audience,
the privacy stage per request, the notebook helpers per look-up). Rows name tables, versions,
counts and destinations, never a person's identifiers: a subject appears only as its keyed
pseudonym.
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from pyspark.sql.types import LongType, StringType, StructField, StructType, TimestampType

from cdp import tables as T
from cdp.storage import TableStore

AUDIT_TABLE = T.AUDIT_LOG.name
AUDIT_SCHEMA = StructType(
    [
        StructField("at", TimestampType()),
        StructField("actor", StringType()),
        StructField("action", StringType()),  # export | erase | suppress | lookup ...
        StructField("run_id", StringType()),
        StructField("tables", StringType()),  # JSON: table -> Delta version read or written
        StructField("rows", LongType()),
        StructField("destination", StringType()),
        StructField("detail", StringType()),  # JSON, no personal data
    ]
)


def actor(environ: Mapping[str, str] | None = None) -> str:
    """``CDP_ACTOR`` (a scheduler's service identity, a notebook user) or the OS user."""
    environ = os.environ if environ is None else environ
    if environ.get("CDP_ACTOR"):
        return environ["CDP_ACTOR"]
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return f"uid:{os.getuid()}"


def record_audit(
    store: TableStore,
    *,
    action: str,
    run_id: str | None,
    tables: Mapping[str, int | None],
    rows: int | None = None,
    destination: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Append one audit row (a driver-side append of one row)."""
    row = {
        "at": datetime.now(timezone.utc),
        "actor": actor(),
        "action": action,
        "run_id": run_id,
        "tables": json.dumps(dict(tables), sort_keys=True),
        "rows": rows,
        "destination": destination,
        "detail": json.dumps(dict(detail or {}), sort_keys=True, default=str),
    }
    store.append_rows(AUDIT_TABLE, [row], AUDIT_SCHEMA)
