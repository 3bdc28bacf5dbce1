"""Writing a source's drops into the landing root and tidying what Spark leaves behind.

Layout: ``<root>/<source>/drop=<YYYY-MM-DD>/part-00000.<ext>``. Spark's ``_SUCCESS`` and
``.crc`` files are removed and part files get short, stable names, so a landing root looks
like a vendor's delivery rather than a Spark output folder. The tidying works on a local
filesystem (the generator's purpose is local demos and tests).
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cdp.generate._frame import SourceFrame

ROWS_PER_FILE = 250_000
SINGLE_JOB_MAX_ROWS = 2_000_000


def local_path(path: str) -> Path:
    """A plain local path from ``/x`` or ``file:///x``; other schemes are refused."""
    if path.startswith("file://"):
        path = path[len("file://") :]
    elif "://" in path:
        raise ValueError(f"out_dir must be a local directory, got {path!r}")
    return Path(path).expanduser().resolve()


def files_for(rows: int) -> int:
    """How many files a drop of ``rows`` rows is written as."""
    return max(1, math.ceil(rows / ROWS_PER_FILE))


def _save(df: DataFrame, sf: SourceFrame, path: Path) -> None:
    df.write.mode("overwrite").format(sf.writer).options(**sf.options).save(str(path))


def tidy(directory: Path, extension: str) -> list[Path]:
    """Remove Spark's marker/checksum files and rename parts to ``part-NNNNN.<ext>``."""
    for child in list(directory.iterdir()):
        if child.name.startswith(("_", ".")) or child.name.endswith(".crc"):
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
    parts = sorted(p for p in directory.iterdir() if p.name.startswith("part-"))
    out = []
    for i, part in enumerate(parts):
        target = directory / f"part-{i:05d}.{extension}"
        if part != target:
            os.replace(part, target)
        out.append(target)
    return out


def write_source(
    sf: SourceFrame, root: Path, drops: tuple[str, ...], expected_rows: dict[str, int]
) -> list[str]:
    """Write every drop of ``sf`` under ``root``; return file paths relative to ``root``.

    ``expected_rows`` (an estimate per drop) sets how many files each drop is written as.
    """
    base = root / sf.name
    if base.exists():
        shutil.rmtree(base)
    if sf.same_payload and sum(expected_rows.values()) <= SINGLE_JOB_MAX_ROWS:
        # Small outputs: one job writes both drops (Spark sorts rows by drop within each
        # task, cheap at this size; per-job overhead dominates small runs).
        n = files_for(max(expected_rows.values(), default=0))
        df = sf.frame.select(*sf.payload(0), F.col("_drop").alias("drop"))
        df.coalesce(n).write.mode("overwrite").format(sf.writer).options(**sf.options).partitionBy(
            "drop"
        ).save(str(base))
    else:
        # One write per drop: the filter is pushed below the serialisation, so only row
        # generation runs twice, and no task has to sort millions of rows by drop.
        for i, drop in enumerate(drops):
            df = sf.frame.filter(F.col("_drop") == drop).select(*sf.payload(i))
            _save(df.coalesce(files_for(expected_rows.get(drop, 0))), sf, base / f"drop={drop}")
    marker = base / "_SUCCESS"
    if marker.exists():
        marker.unlink()
    written: list[Path] = []
    for drop in drops:
        directory = base / f"drop={drop}"
        directory.mkdir(parents=True, exist_ok=True)
        written.extend(tidy(directory, sf.extension))
    for empty in sf.empty_files:
        path = base / f"drop={drops[empty.drop_index]}" / empty.name
        path.write_bytes(empty.content)
        written.append(path)
    return sorted(str(p.relative_to(root)) for p in written)
