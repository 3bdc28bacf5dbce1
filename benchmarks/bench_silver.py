"""Benchmark: the silver stage per canonical table, and the phone standardizer.

    python benchmarks/bench_silver.py --work /tmp/cdp-bench/p100000 [--resume]

Runs on a data root that ``bench_ingest.py`` filled (bronze tables present). Prints, per silver
table, bronze rows read per second and the ratio to a floor measured in the same run (plain
Spark reading the same bronze rows and writing Parquet), then the phone standardizer's
throughput (vectorized pandas UDF through Spark) beside a plain Python loop over the same values.
Peak RSS (VmHWM) of the driver JVM and of Python is printed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from pyspark.sql import functions as F

from cdp import tables as T
from cdp.runner import run_stage
from cdp.session import build_session
from cdp.silver.canonical import TABLE_FOR_KIND
from cdp.silver.standardize import phone_to_e164, standardize_phone
from cdp.sources import load_sources
from cdp.storage import open_store

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import bench_config, jvm_pid, peak_rss_mb  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", required=True, help="a bench_ingest.py work directory (p<N>)")
    parser.add_argument("--phones", type=int, default=300_000)
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep silver as it is (after a failed run) and measure only the sources it has "
        "not processed yet",
    )
    args = parser.parse_args()
    work = Path(args.work)
    config = bench_config(work, args.driver_memory)
    if not args.resume:  # start from bronze only, so the stage processes every bronze row
        for leftover in (
            work / "data" / "silver",
            work / "data" / "ops" / "silver_progress",
            work / "floor-silver",
        ):
            shutil.rmtree(leftover, ignore_errors=True)
    spark = build_session(config)
    store = open_store(spark, config)
    sources = [s for s in load_sources(config) if store.exists(s.table)]
    if args.resume and store.exists(T.SILVER_PROGRESS.name):
        done = {r[0] for r in store.read(T.SILVER_PROGRESS.name).select("source").collect()}
        sources = [s for s in sources if s.name not in done]
        print("resuming; sources still to process:", ", ".join(s.name for s in sources))

    # Floor: plain Spark reads the same bronze rows and writes Parquet, per silver table.
    floor: dict[str, tuple[int, float]] = {}
    for spec in sources:
        table = TABLE_FOR_KIND[spec.kind].name
        t0 = time.perf_counter()
        df = store.read(spec.table)
        df.write.mode("overwrite").parquet(str(work / "floor-silver" / spec.name))
        seconds = time.perf_counter() - t0
        rows = spark.read.parquet(str(work / "floor-silver" / spec.name)).count()
        n, s = floor.get(table, (0, 0.0))
        floor[table] = (n + rows, s + seconds)

    t0 = time.perf_counter()
    result = run_stage("silver", spark=spark, config=config)
    total_s = time.perf_counter() - t0
    log = store.read(T.RUN_LOG.name).where(f"run_id = '{result.run_id}'").collect()[0]
    print(f"\n## silver over {work.name} (stage {total_s:.1f}s)")
    print(
        f"{'table':16} {'bronze rows':>12} {'floor r/s':>10} {'share s':>8} {'silver r/s':>10} {'ratio':>6}"
    )
    read_total = sum(result.rows_read.values())
    for table, (rows, seconds) in sorted(floor.items()):
        # The stage processes tables one after another; a table's share of the stage time is
        # estimated by its share of rows read (the run log has the per-source counts).
        read = sum(
            result.rows_read.get(s.table, 0)
            for s in sources
            if TABLE_FOR_KIND[s.kind].name == table
        )
        share = total_s * read / read_total if read_total else float("nan")
        print(
            f"{table:16} {read:>12,} {rows / seconds:>10,.0f} {share:>8.1f} "
            f"{read / share:>10,.0f} {(read / share) / (rows / seconds):>6.2f}"
        )
    all_floor = sum(r for r, _ in floor.values()) / sum(s for _, s in floor.values())
    print(
        f"{'ALL':16} {read_total:>12,} {all_floor:>10,.0f} {total_s:>8.1f} {read_total / total_s:>10,.0f} "
        f"{(read_total / total_s) / all_floor:>6.2f}"
    )
    print(
        "quarantined:",
        result.rows_quarantined,
        "| metrics:",
        {k: v for k, v in log.metrics.items() if "." in k and "rule" not in k},
    )

    # Phone standardizer: pandas UDF through Spark vs a plain Python loop on the same values.
    phones = (
        store.read(T.BRONZE_SOURCE.named(source="crm_contacts"))
        .select(F.col("phone").alias("phone"), F.col("country"))
        .unionByName(
            store.read(T.BRONZE_SOURCE.named(source="pos_transactions")).select(
                "phone", F.lit("GB").alias("country")
            )
        )
        .where("phone IS NOT NULL")
        .limit(args.phones)
        .cache()
    )
    n = phones.count()
    t0 = time.perf_counter()
    ok = (
        phones.transform(standardize_phone("phone", region_col="country"))
        .where("phone_status = 'ok'")
        .count()
    )
    udf_s = time.perf_counter() - t0
    values = [(r.phone, r.country) for r in phones.toLocalIterator()]
    t0 = time.perf_counter()
    ok_py = sum(
        1 for v, c in values if phone_to_e164(v, c if c and len(c) == 2 else "GB") is not None
    )
    py_s = time.perf_counter() - t0
    print(
        f"\nphone standardizer on {n:,} values: pandas UDF {n / udf_s:,.0f}/s ({ok:,} valid) | "
        f"plain Python loop {n / py_s:,.0f}/s ({ok_py:,} valid) | ratio {(n / udf_s) / (n / py_s):.2f}"
    )
    print(
        f"peak RSS: driver JVM {peak_rss_mb(jvm_pid(spark)):,.0f} MB, Python {peak_rss_mb(os.getpid()):,.0f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
