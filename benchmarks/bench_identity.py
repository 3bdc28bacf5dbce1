"""Benchmark: connected components and the identity and profile stages on generated data.

    python benchmarks/bench_identity.py --work /tmp/cdp-bench/p100000

Runs on a data root that ``bench_ingest.py`` and ``cdp run silver`` filled (silver tables
present). Prints:

* the identity graph of that data: record nodes, accepted links (edges);
* connected components of exactly that edge list with the DataFrame engine (large-star /
  small-star, seconds and rounds) beside ``scipy.sparse.csgraph.connected_components`` on the
  same edges in this process (the single-machine reference; the edge list is collected for
  the reference only), their ratio, and a check that both find the same components;
* the whole ``identity`` stage (tiers, merge protection, stable ids) and ``profile`` stage,
  in seconds, and pairwise precision/recall against the generator's ground truth;
* peak RSS (VmHWM) of the driver JVM and of this Python process.
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import functions as F

from cdp.identity.components import connected_components
from cdp.identity.evaluate import evaluate_identity, load_truth
from cdp.identity.graph import record_nodes
from cdp.identity.rules import EVENT_TABLE, RECORD_TABLES, load_rules
from cdp.identity.stage import MAP_TABLE, build_links
from cdp.runner import run_stage
from cdp.session import build_session
from cdp.storage import open_store

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import bench_config, jvm_pid, peak_rss_mb  # noqa: E402


class _Rounds(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.rounds: list[int] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = re.search(r"converged after (\d+) rounds", record.getMessage())
        if found:
            self.rounds.append(int(found.group(1)))


def scipy_components(src: np.ndarray, dst: np.ndarray) -> tuple[int, np.ndarray, np.ndarray, float]:
    """(components, distinct nodes, label per node, seconds) with scipy on the same edges."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as cc

    t0 = time.perf_counter()
    nodes, inverse = np.unique(np.concatenate([src, dst]), return_inverse=True)
    n = len(nodes)
    a, b = inverse[: len(src)], inverse[len(src) :]
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    count, labels = cc(graph, directed=False)
    return int(count), nodes, labels, time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", required=True, help="a bench_ingest.py work directory (p<N>)")
    parser.add_argument("--driver-memory", default="6g")
    args = parser.parse_args()
    work = Path(args.work)
    config = bench_config(work, args.driver_memory)
    spark = build_session(config)
    store = open_store(spark, config)
    rounds = _Rounds()
    logging.getLogger("cdp.identity.components").addHandler(rounds)
    logging.getLogger("cdp.identity.components").setLevel(logging.INFO)

    base = Path(config.conf_dir or "conf")
    rules = load_rules(base / config.identity.rules_file)
    frames = {n: store.read(t.table) for n, t in RECORD_TABLES.items() if store.exists(t.table)}
    events = store.read(EVENT_TABLE.table) if store.exists(EVENT_TABLE.table) else None
    records = record_nodes(frames).localCheckpoint(eager=True)
    accepted = (
        build_links(frames, events, rules)
        .where(F.col("reason").isNull())
        .select(F.col("unit").alias("src"), F.col("other").alias("dst"))
        .unionByName(records.select(F.col("node").alias("src"), F.col("node").alias("dst")))
        .localCheckpoint(eager=True)
    )
    n_records, n_edges = records.count(), accepted.count()
    print(
        f"\n## identity over {work.name}: {n_records:,} records, {n_edges:,} edges (with self-loops)"
    )

    t0 = time.perf_counter()
    labels = connected_components(accepted, engine="dataframe").localCheckpoint(eager=True)
    df_s = time.perf_counter() - t0
    df_components = labels.select("component").distinct().count()
    df_nodes = labels.count()

    t0 = time.perf_counter()
    pdf = accepted.toPandas()
    collect_s = time.perf_counter() - t0
    sp_components, sp_nodes, sp_labels, sp_s = scipy_components(
        pdf["src"].to_numpy(np.int64), pdf["dst"].to_numpy(np.int64)
    )
    # Same partition: every node labelled by both, and (DataFrame component, scipy label)
    # pairs one-to-one.
    reference = spark.createDataFrame(
        pd.DataFrame({"node": sp_nodes, "sp": sp_labels.astype(np.int64)})
    )
    pairs = labels.join(reference, "node").select("component", "sp").distinct()
    same = (
        sp_components == df_components
        and len(sp_nodes) == df_nodes
        and labels.join(reference, "node").count() == df_nodes
        and pairs.count() == df_components
    )
    print(
        f"connected components: dataframe engine {df_s:.1f}s in {rounds.rounds[-1] if rounds.rounds else '?'} "
        f"rounds, {df_components:,} components over {df_nodes:,} nodes; scipy {sp_s:.2f}s "
        f"(+{collect_s:.1f}s to collect the edges), {sp_components:,} components; "
        f"ratio dataframe/scipy {df_s / sp_s:.0f}x; same components: {same}"
    )

    for table in ("gold/identity_map", "gold/identity_history", "gold/identity_identifiers"):
        shutil.rmtree(work / "data" / table, ignore_errors=True)
    shutil.rmtree(work / "data" / "gold" / "identity_rejected_links", ignore_errors=True)
    shutil.rmtree(work / "data" / "gold" / "customer_profile", ignore_errors=True)
    rounds.rounds.clear()
    t0 = time.perf_counter()
    ident = run_stage("identity", spark=spark, config=config)
    ident_s = time.perf_counter() - t0
    print(
        f"identity stage: {ident_s:.1f}s, {ident.metrics.get('customers')} customers from "
        f"{ident.metrics.get('records')} records; tiers {ident.metrics.get('tiers')}, "
        f"{ident.metrics.get('cc_runs')} component runs, rounds {rounds.rounds}"
    )
    t0 = time.perf_counter()
    run_stage("profile", spark=spark, config=config)
    print(f"profile stage: {time.perf_counter() - t0:.1f}s")
    truth = work / "landing" / "_ground_truth" / "identity"
    if truth.exists():
        metrics = evaluate_identity(
            spark, identity_map=store.read(MAP_TABLE), truth=load_truth(spark, str(truth))
        )
        print(metrics.format())
    print(
        f"peak RSS: driver JVM {peak_rss_mb(jvm_pid(spark)):,.0f} MB, "
        f"Python {peak_rss_mb(__import__('os').getpid()):,.0f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
