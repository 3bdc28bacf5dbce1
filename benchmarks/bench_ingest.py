"""Benchmark: stages on generated data, against a plain-Spark floor measured in the same run.

    python benchmarks/bench_ingest.py --persons 100000 [--persons 1000000] [--work DIR]

For each size: generate the landing zone (timed), then for every source

* floor: plain Spark reads the same files with the same format and options and writes Parquet;
* ingest: ``cdp run ingest`` restricted to that source (lineage, quarantine, Delta commit);

and prints rows/s for both and their ratio (target: ingest >= 0.5 x floor). Peak memory is the
high-water RSS (VmHWM) of the driver JVM and of this Python process, read from /proc.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from cdp.bronze.ledger import list_landed_files
from cdp.bronze.readers import csv_header, source_reader
from cdp.config import CdpConfig, demo_overlay, load_config
from cdp.runner import run_stage
from cdp.session import build_session
from cdp.sources import SourceFormat, load_sources


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def bench_config(
    work: Path, driver_memory: str, extra: dict[str, object] | None = None
) -> CdpConfig:
    """The benchmarks' configuration: data and landing under ``work``, UI off, quiet logs;
    ``extra``: more overrides (dotted keys)."""
    return load_config(
        env="local",
        # The generated landing zone is the demo's: its sources come with the demo profile.
        conf_files=[demo_overlay()],
        overrides={
            "data_root": str(work / "data"),
            "landing_root": str(work / "landing"),
            "spark.ui_enabled": False,
            "spark.driver_memory": driver_memory,
            "log.level": "WARNING",
            **(extra or {}),
        },
    )


def chain_arguments(doc: str | None) -> argparse.ArgumentParser:
    """The arguments of the benchmarks that generate a landing and run the chain on it."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--persons", type=int, required=True)
    parser.add_argument("--work", default="/tmp/cdp-bench")
    parser.add_argument("--seed", type=int, default=7)
    # 6g of heap keeps the driver JVM's whole resident set under the 8 GiB budget.
    parser.add_argument("--driver-memory", default="6g")
    return parser


def jvm_pid(spark) -> int:  # type: ignore[no-untyped-def]
    proc = getattr(spark.sparkContext._gateway, "proc", None)  # noqa: SLF001
    if proc is not None:
        return int(proc.pid)
    return int(spark.sparkContext._jvm.ProcessHandle.current().pid())  # noqa: SLF001


def floor_source(spark, spec, landing: str, out: str) -> int:  # type: ignore[no-untyped-def]
    """Plain Spark: read the source's files with its format and options, write Parquet."""
    files = [f for f in list_landed_files(spark, spec.glob_for(landing)) if f.size > 0]
    paths = [f.read_path for f in files]
    if spec.format is SourceFormat.CSV:
        # The plainest read that handles this landing zone's header drift: Spark's own header
        # handling per file group would need the same grouping the ingest does, so the floor
        # reads each distinct header group, as a hand-written job would.
        groups: dict[tuple[str, ...], list[str]] = {}
        for f in files:
            header = csv_header(spark, spec, f)
            if header:
                groups.setdefault(tuple(header), []).append(f.read_path)
        rows = 0
        for i, group in enumerate(groups.values()):
            df = spark.read.options(**spec.options).option("inferSchema", "false").csv(group)
            df.write.mode("overwrite").parquet(f"{out}/g{i}")
            rows += spark.read.parquet(f"{out}/g{i}").count()
        return rows
    if spec.format in (SourceFormat.PARQUET, SourceFormat.ORC):
        rows = 0
        for i, path in enumerate(paths):
            spark.read.format(spec.format.value).load(path).write.mode("overwrite").parquet(
                f"{out}/f{i}"
            )
            rows += spark.read.parquet(f"{out}/f{i}").count()
        return rows
    source_reader(spark, spec).load(paths).write.mode("overwrite").parquet(out)
    return spark.read.parquet(out).count()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--persons", type=int, action="append", required=True)
    parser.add_argument("--work", default="/tmp/cdp-bench")
    parser.add_argument("--seed", type=int, default=7)
    # 6g of heap keeps the driver JVM's whole resident set under the 8 GiB budget.
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument(
        "--reuse-landing", action="store_true", help="keep an existing landing zone"
    )
    args = parser.parse_args()

    results = []
    for persons in args.persons:
        work = Path(args.work) / f"p{persons}"
        reuse = (
            args.reuse_landing and (work / "landing" / "_ground_truth" / "manifest.json").exists()
        )
        for sub in ("data", "floor") if reuse else ("",):
            shutil.rmtree(work / sub, ignore_errors=True)
        config = bench_config(work, args.driver_memory)
        spark = build_session(config)
        from cdp.generate import generate_landing

        t0 = time.perf_counter()
        if reuse:
            print(f"\n## {persons:,} persons (landing zone reused)", flush=True)
        else:
            generate_landing(spark, out_dir=str(work / "landing"), persons=persons, seed=args.seed)
            gen_s = time.perf_counter() - t0
            print(f"\n## {persons:,} persons (generated in {gen_s:.1f}s)", flush=True)
        print(
            f"{'source':20} {'format':8} {'rows':>11} {'floor s':>8} {'floor r/s':>10} "
            f"{'ingest s':>9} {'ingest r/s':>10} {'ratio':>6}"
        )
        total_rows = total_floor = total_ingest = 0.0
        specs = load_sources(config)
        # Warm-up (JIT, class loading) so that the first source's floor is not penalized.
        floor_source(spark, specs[0], config.landing_uri, str(work / "floor" / "_warmup"))
        for spec in specs:
            t0 = time.perf_counter()
            floor_rows = floor_source(
                spark, spec, config.landing_uri, str(work / "floor" / spec.name)
            )
            floor_s = time.perf_counter() - t0
            one = config.model_copy(
                update={"ingest": config.ingest.model_copy(update={"sources": [spec.name]})}
            )
            t0 = time.perf_counter()
            result = run_stage("ingest", spark=spark, config=one)
            ingest_s = time.perf_counter() - t0
            rows = sum(result.rows_written.values()) + sum(result.rows_quarantined.values())
            ratio = (
                (rows / ingest_s) / (floor_rows / floor_s) if floor_rows and rows else float("nan")
            )
            print(
                f"{spec.name:20} {spec.format.value:8} {rows:>11,} {floor_s:>8.1f} "
                f"{floor_rows / floor_s:>10,.0f} {ingest_s:>9.1f} {rows / ingest_s:>10,.0f} {ratio:>6.2f}",
                flush=True,
            )
            total_rows += rows
            total_floor += floor_s
            total_ingest += ingest_s
        jvm_mb, py_mb = peak_rss_mb(jvm_pid(spark)), peak_rss_mb(os.getpid())
        print(
            f"{'ALL':20} {'':8} {int(total_rows):>11,} {total_floor:>8.1f} "
            f"{total_rows / total_floor:>10,.0f} {total_ingest:>9.1f} {total_rows / total_ingest:>10,.0f} "
            f"{(total_floor / total_ingest):>6.2f}"
        )
        print(f"peak RSS: driver JVM {jvm_mb:,.0f} MB, Python {py_mb:,.0f} MB")
        results.append((persons, total_rows, total_floor, total_ingest, jvm_mb, py_mb))
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
