"""The export's part of the run report: per audience exported by the latest export run, its
rows, files, model version and whether its manifest and completion mark are in place (by the
metric and file names the export stage writes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cdp.export.stage import EXPORT_METRIC_PREFIX, FILES, MANIFEST, SUCCESS, URI, export_metric
from cdp.report_page import Section
from cdp.report_runs import Runs


def add_exports(sec: Section, runs: Runs) -> None:
    """The latest export run's deliveries, when there is one."""
    export = runs.get("export")
    if export is None:
        return
    run = export[0]
    uri_suffix = "." + URI
    exports: list[tuple[Any, ...]] = []
    for key, uri in sorted(run.metrics.items()):
        if not (key.startswith(EXPORT_METRIC_PREFIX) and key.endswith(uri_suffix)):
            continue
        name = key[len(EXPORT_METRIC_PREFIX) : -len(uri_suffix)]
        manifest = read_manifest(uri)
        exports.append(
            (
                name,
                run.rows_written.get(f"export/{name}", 0),
                int(run.metrics.get(export_metric(name, FILES), "0") or 0),
                manifest.get("model_version"),
                "manifest + _SUCCESS" if manifest else "no manifest read",
                uri,
            )
        )
    sec.table(
        ["audience", "rows", "files", "model version", "completion", "location"],
        exports,
        caption=f"Export run {run.run_id}",
    )


def read_manifest(uri: str) -> dict[str, Any]:
    """The export's manifest when the target is a local path and its completion mark is there
    (object stores: not read)."""
    if "://" in uri and not uri.startswith("file://"):
        return {}
    base = Path(uri.removeprefix("file://"))
    path = base / MANIFEST
    if not (path.exists() and (base / SUCCESS).exists()):
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
