"""Benchmark: connected components of an identity-shaped graph, both ways of the dataframe
engine against SciPy on the same edge list in the same process.

    python benchmarks/bench_components.py --persons 1000000 --work /tmp/cdp-bench-cc

The graph is generated in Spark, deterministically, in the shape the identity stage builds
at 1M persons (``bench_identity.py`` on a generated data root: 6.5M record nodes, 19.6M
accepted edges with one self-loop per record, 2.1M components over 11.7M nodes): each person
holds 1-12 records and 1-9 identifier values; each record links to one to three of its
person's values; one person in fifty shares a value with the next person (households,
shared devices), and one chain of persons sharing values makes a component of about 0.1% of
the graph (the skew a shared value or a call-centre phone number makes). Node ids are
64-bit hashes, as the identity stage's are.

Prints, per run: seconds, rounds or tasks, components and nodes, the ratio to SciPy, a
node-by-node check against SciPy's partition (every node carries the minimum node id of its
component in both), and the peak RSS (VmHWM) of the driver JVM, of this Python process and of
the executors' Python workers (children of the JVM: where the first phase holds the edges).
The edge list is collected for the SciPy reference only.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp.identity.components import DEFAULT_LOCAL_EDGES, connected_components
from cdp.session import build_session

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_identity import scipy_components  # noqa: E402
from bench_ingest import bench_config, jvm_pid, peak_rss_mb  # noqa: E402


def identity_shaped_edges(spark: SparkSession, persons: int, seed: int) -> DataFrame:
    """Edges ``src, dst`` (longs) of an identity-shaped graph; see the module docstring."""

    def draw(salt: str, *cols: object, mod: int) -> F.Column:
        h = F.xxhash64(F.lit(seed), F.lit(salt), *cols)
        return F.pmod(h, F.lit(mod))

    person = spark.range(persons).withColumnRenamed("id", "p")
    person = person.select(
        "p",
        (draw("records", "p", mod=12) + 1).alias("n_records"),
        (draw("values", "p", mod=9) + 1).alias("n_values"),
        # One person in fifty shares a value with the next; persons 0..chain-1 all do.
        ((draw("household", "p", mod=50) == 0) | (F.col("p") < persons // 1000)).alias("shares"),
    )
    record = person.select(
        "p", "n_values", F.explode(F.sequence(F.lit(0), F.col("n_records") - 1)).alias("r")
    )
    record = record.select(
        "p",
        "n_values",
        F.xxhash64(F.lit("record"), "p", "r").alias("node"),
        draw("first", "p", "r", mod=1_000_003).alias("first"),
        (draw("links", "p", "r", mod=3) + 1).alias("links"),
    )
    links = record.select(
        "node",
        "p",
        F.explode(F.sequence(F.lit(0), F.col("links") - 1)).alias("k"),
        "n_values",
        "first",
    ).select(
        F.col("node").alias("src"),
        F.xxhash64(
            F.lit("value"), "p", F.pmod(F.col("first") + F.col("k"), F.col("n_values"))
        ).alias("dst"),
    )
    self_loops = record.select(F.col("node").alias("src"), F.col("node").alias("dst"))
    shared = person.where("shares").select(
        F.xxhash64(F.lit("value"), "p", F.lit(0)).alias("src"),
        F.xxhash64(F.lit("value"), F.col("p") + 1, F.lit(0)).alias("dst"),
    )
    return links.unionByName(self_loops).unionByName(shared)


def worker_peak_mb(jvm: int) -> float:
    """The largest VmHWM among the JVM's descendant Python processes (its Python workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    peak, todo = 0.0, list(children.get(jvm, []))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        rss = peak_rss_mb(pid)
        if rss == rss:  # not NaN
            peak = max(peak, rss)
    return peak


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work", default="/tmp/cdp-bench-cc")
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument("--local-edges", type=int, default=DEFAULT_LOCAL_EDGES)
    parser.add_argument(
        "--skip-rounds", action="store_true", help="skip the rounds-only run (local_edges=0)"
    )
    args = parser.parse_args()
    work = Path(args.work)
    config = bench_config(work, args.driver_memory)
    spark = build_session(config)
    jvm = jvm_pid(spark)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("cdp.identity.components").setLevel(logging.INFO)

    t0 = time.perf_counter()
    edges = identity_shaped_edges(spark, args.persons, args.seed).localCheckpoint(eager=True)
    n_edges = edges.count()
    print(
        f"## identity-shaped graph, {args.persons:,} persons (seed {args.seed}): "
        f"{n_edges:,} edges incl. self-loops, generated in {time.perf_counter() - t0:.1f}s"
    )

    t0 = time.perf_counter()
    pdf = edges.toPandas()
    collect_s = time.perf_counter() - t0
    sp_count, sp_nodes, sp_labels, sp_s = scipy_components(
        pdf["src"].to_numpy(np.int64), pdf["dst"].to_numpy(np.int64)
    )
    del pdf
    # SciPy's labels as the minimum node id of each component (sp_nodes is sorted).
    _, first = np.unique(sp_labels, return_index=True)
    expected = sp_nodes[first][sp_labels]
    print(
        f"scipy: {sp_s:.2f}s (+{collect_s:.1f}s to collect the edges), {sp_count:,} components "
        f"over {len(sp_nodes):,} nodes"
    )

    runs = [("two-phase", args.local_edges)]
    if not args.skip_rounds:
        runs.append(("rounds only", 0))
    for name, local_edges in runs:
        t0 = time.perf_counter()
        labels = connected_components(edges, engine="dataframe", local_edges=local_edges)
        seconds = time.perf_counter() - t0
        got = labels.toPandas().sort_values("node")
        same = len(got) == len(sp_nodes) and bool(
            np.array_equal(got["node"].to_numpy(np.int64), sp_nodes)
            and np.array_equal(got["component"].to_numpy(np.int64), expected)
        )
        print(
            f"{name} (local_edges={local_edges:,}): {seconds:.1f}s, "
            f"{got['component'].nunique():,} components over {len(got):,} nodes; "
            f"ratio to scipy {seconds / sp_s:.1f}x (with scipy's collect "
            f"{seconds / (sp_s + collect_s):.1f}x); same labels node by node: {same}; "
            f"peak RSS so far: driver JVM {peak_rss_mb(jvm):,.0f} MB, Python "
            f"{peak_rss_mb(os.getpid()):,.0f} MB, Python workers {worker_peak_mb(jvm):,.0f} MB"
        )
        del got
        labels.unpersist()
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
