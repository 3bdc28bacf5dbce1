"""``generate_landing``: write a complete synthetic landing root plus its ground truth."""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp.generate._frame import META_COLUMNS, SourceFrame
from cdp.generate.events import email_engagement, web_events
from cdp.generate.persons import MAX_PERSONS, GenContext, ground_truth_persons, persons_frame
from cdp.generate.profiles import consents, crm_contacts, loyalty_members, support_tickets
from cdp.generate.register import person_register
from cdp.generate.timeline import Timeline
from cdp.generate.transactions import (
    ecommerce_orders,
    ground_truth_purchases,
    pos_transactions,
    purchases_frame,
)
from cdp.generate.truth import identity_frame, labels_frame
from cdp.generate.writer import ROWS_PER_FILE, local_path, tidy, write_source

log = logging.getLogger(__name__)

GROUND_TRUTH_DIR = "_ground_truth"
SOURCE_NAMES: tuple[str, ...] = (
    "crm_contacts",
    "ecommerce_orders",
    "web_events",
    "pos_transactions",
    "email_engagement",
    "loyalty_members",
    "consents",
    "support_tickets",
    "person_register",
)
_PERSONS_PER_PARTITION = 25_000
_PURCHASES_PER_PERSON = 2.0  # sizing hint for the purchases ground truth files


@dataclass(frozen=True)
class GenerateReport:
    """What :func:`generate_landing` wrote. Paths in ``files`` are relative to ``out_dir``."""

    out_dir: str
    persons: int
    seed: int
    start_date: str
    end_date: str
    drops: tuple[str, ...]
    train_cutoff: str
    scoring_cutoff: str
    horizon_days: int
    files: Mapping[str, list[str]]
    rows: Mapping[str, int]
    rows_per_drop: Mapping[str, Mapping[str, int]]
    bad_records: Mapping[str, Mapping[str, int]]
    ground_truth: Mapping[str, str]
    manifest_path: str
    elapsed_seconds: float
    timings: Mapping[str, float] = field(default_factory=dict)


@contextmanager
def _session_conf(spark: SparkSession, settings: Mapping[str, str]) -> Iterator[None]:
    """Set runtime SQL settings for the duration of a block, then restore the caller's."""
    previous = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, old in previous.items():
            if old is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, old)


# All timestamps are generated and formatted in UTC whatever the caller's session zone is.
_UTC = {"spark.sql.session.timeZone": "UTC"}
# The person table's (and the POS line's) expressions exceed the JVM's 64 KB method limit
# when fused into one whole-stage-codegen method; Spark would compile, fail, log a stack
# trace and fall back on every run.
_NO_WHOLE_STAGE = {"spark.sql.codegen.wholeStage": "false"}


def _write_truth(df: DataFrame, path: Path, rows: int) -> None:
    files = max(1, math.ceil(rows / (4 * ROWS_PER_FILE)))
    df.coalesce(files).write.mode("overwrite").parquet(str(path))
    tidy(path, "parquet")


def _stats(metas: Mapping[str, DataFrame]) -> dict[str, tuple[dict[str, int], dict[str, int], int]]:
    """Per source: (rows per drop, defects per kind, duplicate rows), in one Spark job."""
    parts = [
        meta.groupBy("_drop", "_bad", "_dup").count().withColumn("source", F.lit(name))
        for name, meta in metas.items()
    ]
    union = parts[0]
    for part in parts[1:]:
        union = union.unionByName(part)
    out: dict[str, tuple[dict[str, int], dict[str, int], int]] = {
        name: ({}, {}, 0) for name in metas
    }
    for r in union.collect():
        rows, bad, dups = out[r["source"]]
        rows[r["_drop"]] = rows.get(r["_drop"], 0) + r["count"]
        if r["_bad"] is not None:
            bad[r["_bad"]] = bad.get(r["_bad"], 0) + r["count"]
        if r["_dup"]:
            dups += r["count"]
        out[r["source"]] = (rows, bad, dups)
    return out


def generate_landing(
    spark: SparkSession,
    *,
    out_dir: str,
    persons: int,
    seed: int = 42,
    start_date: str = "2024-01-01",
    end_date: str = "2025-12-31",
    sources: Sequence[str] | None = None,
) -> GenerateReport:
    """Generate every source's drops under ``out_dir`` and the ground truth beside them.

    Deterministic: the same ``persons``, ``seed`` and dates give the same rows in each
    source's drops and in the ground truth (compare rows, not bytes: row order inside a
    file is not part of the contract). Existing source folders and ``_ground_truth``
    under ``out_dir`` are replaced; anything else there is left alone.

    ``sources`` restricts generation to some of :data:`SOURCE_NAMES` (default: all); the
    rows of a source do not depend on which other sources are generated.
    """
    selected = list(SOURCE_NAMES) if sources is None else list(dict.fromkeys(sources))
    unknown = sorted(set(selected) - set(SOURCE_NAMES))
    if unknown or not selected:
        raise ValueError(f"unknown or no sources {unknown}; choose from {list(SOURCE_NAMES)}")
    if not 1 <= persons <= MAX_PERSONS:
        raise ValueError(f"persons must be between 1 and {MAX_PERSONS:,}, got {persons}")
    started = time.monotonic()
    timeline = Timeline.build(start_date, end_date)
    root = local_path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    truth_dir = root / GROUND_TRUTH_DIR
    if truth_dir.exists():
        shutil.rmtree(truth_dir)
    partitions = min(400, max(2, math.ceil(persons / _PERSONS_PER_PARTITION)))
    ctx = GenContext(
        spark=spark, seed=seed, persons=persons, timeline=timeline, partitions=partitions
    )
    timings: dict[str, float] = {}
    files: dict[str, list[str]] = {}
    rows_per_drop: dict[str, dict[str, int]] = {}
    bad_records: dict[str, dict[str, int]] = {}
    duplicates: dict[str, int] = {}

    staging = truth_dir / "_staging"
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, staging, True)
        stack.enter_context(_session_conf(spark, _UTC))
        t0 = time.monotonic()
        # The person table is written once and read back: rebuilding its (large) expressions
        # inside every source's plan would push Spark's generated code past the JVM's 64 KB
        # method limit. Reading it back with splits of about one file each keeps the
        # parallelism of the generation and a reproducible row order without a shuffle.
        staged = staging / "persons"
        with _session_conf(spark, _NO_WHOLE_STAGE):
            persons_frame(ctx).write.mode("overwrite").parquet(str(staged))
        size = sum(f.stat().st_size for f in staged.glob("*.parquet"))
        split = {"spark.sql.files.maxPartitionBytes": str(max(1 << 20, size // partitions))}
        stack.enter_context(_session_conf(spark, split))
        people = spark.read.parquet(str(staged))
        purchases = purchases_frame(ctx, people)
        _write_truth(ground_truth_persons(people), truth_dir / "persons", persons)
        _write_truth(
            ground_truth_purchases(purchases),
            truth_dir / "purchases",
            int(_PURCHASES_PER_PERSON * persons),
        )
        n_purchases = spark.read.parquet(str(truth_dir / "purchases")).count()
        timings["persons_and_purchases"] = time.monotonic() - t0

        builders = {
            "crm_contacts": lambda: crm_contacts(ctx, people),
            "ecommerce_orders": lambda: ecommerce_orders(ctx, purchases),
            "web_events": lambda: web_events(ctx, people),
            "pos_transactions": lambda: pos_transactions(ctx, purchases),
            "email_engagement": lambda: email_engagement(ctx, people),
            "loyalty_members": lambda: loyalty_members(ctx, people),
            "consents": lambda: consents(ctx, people),
            "support_tickets": lambda: support_tickets(ctx, people),
            "person_register": lambda: person_register(ctx, people),
        }
        frames: list[SourceFrame] = []
        metas: dict[str, DataFrame] = {}
        drift: dict[str, Any] = {}
        empty_files: dict[str, list[str]] = {}
        # Share of rows in each drop, for sizing files before the exact counts are known.
        span = timeline.end_ts - timeline.start_ts
        shares = (
            (timeline.drop1_ts - timeline.start_ts) / span,
            (timeline.end_ts - timeline.drop1_ts) / span,
        )
        for name in (n for n in SOURCE_NAMES if n in selected):
            t0 = time.monotonic()
            sf = builders[name]()
            frames.append(sf)
            # Bookkeeping columns are staged once: statistics and the identity ground truth
            # then read them instead of re-running the source's generation.
            meta_path = str(staging / "meta" / name)
            expected = {
                d: round(sf.rows_per_person * persons * share)
                for d, share in zip(timeline.drops, shares, strict=True)
            }
            with _session_conf(spark, {} if sf.whole_stage_codegen else _NO_WHOLE_STAGE):
                sf.frame.select(*META_COLUMNS).write.mode("overwrite").parquet(meta_path)
                metas[name] = spark.read.parquet(meta_path)
                files[name] = write_source(sf, root, timeline.drops, expected)
            drift[name] = sf.drift
            empty_files[name] = [
                f"{name}/drop={timeline.drops[e.drop_index]}/{e.name}" for e in sf.empty_files
            ]
            timings[name] = time.monotonic() - t0
            log.info("generated %s in %.1fs", name, timings[name])
        for name, (per_drop, bad, dups) in _stats(metas).items():
            rows_per_drop[name] = {d: per_drop.get(d, 0) for d in timeline.drops}
            bad_records[name] = dict(sorted(bad.items()))
            duplicates[name] = dups

        t0 = time.monotonic()
        identity_rows = sum(
            sum(rows_per_drop[sf.name].values()) - duplicates[sf.name] for sf in frames
        )
        multi_version = {sf.name for sf in frames if sf.multi_version}
        _write_truth(identity_frame(metas, multi_version), truth_dir / "identity", identity_rows)
        labels = labels_frame(people.select("person_id"), purchases, timeline)
        _write_truth(labels, truth_dir / "labels", 2 * persons)
        timings["ground_truth"] = time.monotonic() - t0

    rows = {name: sum(per.values()) for name, per in rows_per_drop.items()}
    ground_truth = {
        name: str(truth_dir / name) for name in ("persons", "purchases", "identity", "labels")
    }
    manifest_path = truth_dir / "manifest.json"
    manifest = {
        "generator": "cdp.generate",
        "seed": seed,
        "persons": persons,
        "start_date": timeline.start.isoformat(),
        "end_date": timeline.end.isoformat(),
        "drops": list(timeline.drops),
        "train_cutoff": timeline.train_cutoff.isoformat(),
        "scoring_cutoff": timeline.scoring_cutoff.isoformat(),
        "horizon_days": timeline.horizon_days,
        "label_window": "purchase in [cutoff, cutoff + horizon_days); churned = purchase in "
        "[cutoff - 365 days, cutoff) and none in the horizon",
        "rows": rows,
        "rows_per_drop": rows_per_drop,
        # Physical rows/lines carrying each injected defect; duplicates are extra copies.
        "bad_records": bad_records,
        "duplicate_rows": duplicates,
        "empty_files": {k: v for k, v in empty_files.items() if v},
        "drift": {k: v for k, v in drift.items() if v},
        "files": files,
        "ground_truth": {
            name: f"{GROUND_TRUTH_DIR}/{name}"
            for name in ("persons", "purchases", "identity", "labels")
        },
        "purchases": n_purchases,
    }
    manifest_path.write_text(
        json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8"
    )
    elapsed = time.monotonic() - started
    return GenerateReport(
        out_dir=str(root),
        persons=persons,
        seed=seed,
        start_date=timeline.start.isoformat(),
        end_date=timeline.end.isoformat(),
        drops=timeline.drops,
        train_cutoff=timeline.train_cutoff.isoformat(),
        scoring_cutoff=timeline.scoring_cutoff.isoformat(),
        horizon_days=timeline.horizon_days,
        files=files,
        rows=rows,
        rows_per_drop=rows_per_drop,
        bad_records=bad_records,
        ground_truth=ground_truth,
        manifest_path=str(manifest_path),
        elapsed_seconds=round(elapsed, 2),
        timings={k: round(v, 2) for k, v in timings.items()},
    )


__all__ = ["GROUND_TRUTH_DIR", "SOURCE_NAMES", "GenerateReport", "generate_landing"]
