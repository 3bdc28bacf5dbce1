"""Benchmark: erasing a batch of people from a filled data root (issue 23's 1,000 subjects).

    python benchmarks/bench_erasure.py --data-root /tmp/cdp-bench/pipeline-p100000/data \\
        --subjects 1000 --copy-to /tmp/cdp-bench-erase

Runs on a data root that the whole chain filled (``bench_pipeline.py`` leaves one under
``<work>/pipeline-p<N>/data``; landing at ``<N>/landing``). With ``--copy-to`` the root is
copied first (not timed), so the original stays for a rerun. Picks ``--subjects`` customers
of ``gold/identity_map`` by a seeded hash of their id (not by the driver's choice), records
one erasure request per customer as ``cdp forget --customer-id`` would, runs the ``privacy``
stage on one session and prints: its seconds, the rows it deleted per table, the files it
rewrote, the requests' status, the post-check (rows of the erased records still readable:
must be 0), the sizes of the tables it read, and the peak RSS (VmHWM) of the driver JVM and
of Python.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from pyspark.sql import functions as F

from cdp import tables as T
from cdp.privacy.requests import Subject, record_forget
from cdp.runner import run_stage
from cdp.session import build_session
from cdp.storage import TableStore, open_store

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import bench_config, jvm_pid, peak_rss_mb  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--landing", help="landing zone (default: <data root>/../landing)")
    parser.add_argument("--copy-to", help="copy the data root here first and work on the copy")
    parser.add_argument("--subjects", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--driver-memory", default="6g")
    args = parser.parse_args()

    root = Path(args.data_root)
    landing = Path(args.landing) if args.landing else root.parent / "landing"
    if args.copy_to:
        t0 = time.perf_counter()
        work = Path(args.copy_to)
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(root, work / "data", symlinks=True)
        print(f"copied the data root in {time.perf_counter() - t0:.1f}s (untimed)")
    else:
        work = root.parent
    config = bench_config(work, args.driver_memory, {"landing_root": str(landing)})
    spark = build_session(config)
    store = open_store(spark, config)
    if args.copy_to:
        repoint_audited_targets(store, root, work / "data")

    sizes = {
        t: store.info(t).num_rows
        for t in (
            T.silver_table("person_records"),
            T.silver_table("transactions"),
            T.EVENTS.name,
            T.IDENTITY_MAP.name,
            T.CUSTOMER_PROFILE.name,
        )
        if store.exists(t)
    }
    print("tables: " + ", ".join(f"{t} {n:,}" for t, n in sizes.items()))
    chosen = [
        r["customer_id"]
        for r in store.read(T.IDENTITY_MAP.name)
        .select("customer_id")
        .distinct()
        .orderBy(F.xxhash64(F.lit(args.seed), "customer_id"))
        .limit(args.subjects)
        .collect()
    ]
    now = datetime.now(timezone.utc)
    ids = record_forget(
        config,
        store,
        [Subject(customer_id=c, type="erase", received_at=now) for c in chosen],
    )
    print(f"{len(ids):,} erasure requests recorded for {len(chosen):,} customers")

    jvm = jvm_pid(spark)
    t0 = time.perf_counter()
    # The stage's progress lines time each step (resolve, bronze lookups, each table's delete
    # and post-check, files, vacuum).
    result = run_stage("privacy", spark=spark, config=config, progress=print)
    seconds = time.perf_counter() - t0
    print(f"privacy stage: {result.status} in {seconds:.1f}s ({seconds / 60:.1f} min)")
    if result.error:
        print(f"error: {result.error}")
    proof = (
        store.read(T.ERASURE_PROOF.name)
        .where(F.col("request_id") == ids[0])
        .select(F.col("table").alias("layer"), "rows_deleted", "post_check_rows", "log_truncated")
        .orderBy("layer")
        .collect()
        if ids
        else []
    )
    tables = [r for r in proof if not str(r["layer"]).startswith("file:")]
    files = [r for r in proof if str(r["layer"]).startswith("file:")]
    for r in tables:
        print(
            f"  {r['layer']}: {r['rows_deleted']:,} rows deleted, post-check "
            f"{r['post_check_rows']} rows left, log {r['log_truncated']}"
        )
    print(f"  {len(files)} delivered files rewritten")
    status = (
        store.read(T.PRIVACY_REQUESTS.name)
        .where(F.col("request_id").isin(ids))
        .groupBy("status")
        .count()
        .collect()
    )
    print("requests: " + ", ".join(f"{r['status']} {r['count']:,}" for r in status))
    print(
        f"peak RSS: driver JVM {peak_rss_mb(jvm):,.0f} MB, Python {peak_rss_mb(os.getpid()):,.0f} MB"
    )
    spark.stop()
    return 0 if result.status == "success" else 1


def repoint_audited_targets(store: TableStore, original: Path, copy: Path) -> None:
    """Make the copy's ``ops/audit_log`` name the copy's export folders, not the original's.

    The privacy stage rewrites past deliveries wherever the audit log says an export went (as
    it must on a real site: the files left the platform), and the log names targets by their
    absolute path. On a copy that would rewrite the original root's delivered files, so a
    second run of this benchmark found them already without the people. A benchmark's own
    fixture, not something a site should do.
    """
    if not store.exists(T.AUDIT_LOG.name):
        return
    audit = store.read(T.AUDIT_LOG.name)
    old, new = str(original.resolve()), str(copy.resolve())
    repointed = audit.withColumn("detail", F.replace("detail", F.lit(old), F.lit(new)))
    store.overwrite(T.AUDIT_LOG.name, repointed.localCheckpoint())


if __name__ == "__main__":
    raise SystemExit(main())
