"""The common shape every source builder returns.

A builder returns one DataFrame holding every physical row of every drop of its source,
with bookkeeping columns next to the payload:

``_drop``  drop label (``YYYY-MM-DD``) the row is delivered in
``_pid``   ground-truth person id (null for anonymous visitors)
``_rid``   the record id as the source declaration's ``source_record_id`` will read it
``_bad``   kind of injected defect (``malformed_json``, ``unparsable_date``, ...) or null
``_dup``   true on the extra copy of an exactly duplicated row

The frame stays lazy. ``generate_landing`` writes its bookkeeping columns once (column
pruning skips the payload), derives statistics and the identity ground truth from that
copy, and writes the payload of each drop from the same plan.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdp.generate.timeline import Timeline

META_COLUMNS = ("_drop", "_pid", "_rid", "_bad", "_dup")


@dataclass(frozen=True)
class EmptyFile:
    """A file written as-is into a drop to exercise empty-input handling."""

    drop_index: int
    name: str
    content: bytes = b""


@dataclass(frozen=True)
class SourceFrame:
    """One source: its rows, how to write them and what was done to them."""

    name: str
    frame: DataFrame
    # Spark data source used to write ("csv", "parquet", "text", "xml") and its options.
    writer: str
    options: dict[str, str]
    # File extension after renaming, e.g. "csv", "json.gz", "snappy.parquet".
    extension: str
    # Payload columns for drop 0 / drop 1 (they differ where a source drifts).
    payload: Callable[[int], list[Column]]
    # False where drop 2 is written with other columns than drop 1 (schema drift).
    same_payload: bool = True
    # Expected rows per person over both drops: sizes the output files before counting.
    rows_per_person: float = 1.0
    # Whether one record id can appear on several rows (versions of a record across drops).
    multi_version: bool = False
    drift: dict[str, dict[str, Any]] = field(default_factory=dict)
    empty_files: tuple[EmptyFile, ...] = ()
    # False where the plan is too large for one generated method (Spark would fail to
    # compile it, log the failure and fall back anyway).
    whole_stage_codegen: bool = True


def drop_label(timeline: Timeline, ts: Column) -> Column:
    """The drop a row with epoch-seconds time ``ts`` is delivered in."""
    d1, d2 = timeline.drops
    return F.when(ts < timeline.drop1_ts, F.lit(d1)).otherwise(F.lit(d2))


def with_duplicates(df: DataFrame, u: Column, rate: float) -> DataFrame:
    """Deliver a fraction ``rate`` of the clean rows twice (exact duplicates, same file)."""
    twice = (u < rate) & F.col("_bad").isNull()
    copies = F.when(twice, F.array(F.lit(False), F.lit(True))).otherwise(F.array(F.lit(False)))
    return df.withColumn("_dup", F.explode(copies))


def touched_after(start: Column, u: Column, max_seconds: int, limit: Column) -> Column:
    """A time after ``start``, at most ``max_seconds`` later and never after ``limit``.

    Scaling (rather than clipping) keeps records near a drop boundary from piling up on
    the boundary's last second.
    """
    room = F.greatest(F.least(F.lit(max_seconds), limit - start), F.lit(0))
    return (start + F.floor(u * room)).cast("long")


def fmt_ts(ts: Column, pattern: str) -> Column:
    """Format epoch seconds (the generator works in UTC; see ``generate_landing``)."""
    return F.date_format(F.timestamp_seconds(ts), pattern)


ISO_Z = "yyyy-MM-dd'T'HH:mm:ss'Z'"
ISO_MS_Z = "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"
SQL_TS = "yyyy-MM-dd HH:mm:ss"
