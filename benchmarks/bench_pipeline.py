"""Benchmark: the whole scheduled chain, stage by stage, against a plain-Spark floor.

    python benchmarks/bench_pipeline.py --persons 100000 [--work DIR] [--reuse-landing]

Generates the demo's landing zone (not timed), measures the floor in the same process (plain
Spark reads every landing file with its source's format and options and writes Parquet: the
least any pipeline must do), then runs every stage of ``cdp run all`` in order on one
session and prints, per stage: seconds, rows read per second, seconds as a multiple of the
floor, and the high-water RSS (VmHWM) of the driver JVM and of Python so far. Ends with the
total. Nothing here collects a table to the driver; the stages run exactly as
``cdp run all`` runs them.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from cdp.pipeline import pipeline_stages
from cdp.runner import run_stage
from cdp.session import build_session
from cdp.sources import load_sources

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import bench_config, chain_arguments, floor_source, jvm_pid, peak_rss_mb  # noqa: E402


def main() -> int:
    parser = chain_arguments(__doc__)
    parser.add_argument(
        "--reuse-landing", action="store_true", help="keep an existing landing zone"
    )
    parser.add_argument(
        "--stages", default=None, help="comma-separated subset of the chain (default: all)"
    )
    args = parser.parse_args()

    work = Path(args.work) / f"pipeline-p{args.persons}"
    reuse = args.reuse_landing and (work / "landing" / "_ground_truth" / "manifest.json").exists()
    for sub in ("data", "floor") if reuse else ("",):
        shutil.rmtree(work / sub, ignore_errors=True)
    config = bench_config(work, args.driver_memory)
    spark = build_session(config)
    if not reuse:
        from cdp.generate import generate_landing

        t0 = time.perf_counter()
        generate_landing(spark, out_dir=str(work / "landing"), persons=args.persons, seed=args.seed)
        print(f"generated {args.persons:,} persons in {time.perf_counter() - t0:.1f}s (untimed)")

    specs = load_sources(config)
    # Warm-up (JIT, class loading), so that neither the floor nor ingest pays it alone.
    floor_source(spark, specs[0], config.landing_uri, str(work / "floor" / "_warmup"))
    t0 = time.perf_counter()
    floor_rows = sum(
        floor_source(spark, s, config.landing_uri, str(work / "floor" / s.name)) for s in specs
    )
    floor_s = time.perf_counter() - t0
    print(
        f"floor: {floor_rows:,} landing rows read and written as Parquet in {floor_s:.1f}s "
        f"({floor_rows / floor_s:,.0f} rows/s)\n"
    )

    stages = [s.name for s in pipeline_stages()]
    if args.stages:
        wanted = args.stages.split(",")
        stages = [s for s in stages if s in wanted]
    jpid = jvm_pid(spark)
    print(
        f"{'stage':12} {'seconds':>9} {'rows read':>12} {'rows/s':>10} {'x floor':>8} "
        f"{'JVM MB':>8} {'Py MB':>7} status"
    )
    total = 0.0
    for name in stages:
        t0 = time.perf_counter()
        result = run_stage(name, spark=spark, config=config)
        seconds = time.perf_counter() - t0
        total += seconds
        read = sum(result.rows_read.values())
        print(
            f"{name:12} {seconds:>9.1f} {read:>12,} {read / seconds:>10,.0f} "
            f"{seconds / floor_s:>8.2f} {peak_rss_mb(jpid):>8,.0f} "
            f"{peak_rss_mb(os.getpid()):>7,.0f} {result.status}",
            flush=True,
        )
    print(
        f"{'ALL':12} {total:>9.1f} {'':>12} {'':>10} {total / floor_s:>8.2f} "
        f"{peak_rss_mb(jpid):>8,.0f} {peak_rss_mb(os.getpid()):>7,.0f}"
    )
    print(f"driver memory {args.driver_memory}; persons {args.persons:,}; seed {args.seed}")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
