"""Identity's part of the run report: the latest run's metrics, the cluster-size histogram,
rejected links by rule and reason, and pairwise precision/recall when ground truth is at hand."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp.config import CdpConfig
from cdp.identity.evaluate import SIZE_BUCKETS, evaluate_identity, load_truth, resolved_records
from cdp.identity.stage import MAP_TABLE, REJECTED_TABLE, exact_rules
from cdp.report_page import Section, count_chart, size_bucket_label
from cdp.report_runs import RunRow, Runs, group_counts
from cdp.storage import TableStore


def cluster_size_histogram(identity_map: DataFrame) -> list[tuple[int, int]]:
    """(records per customer, customers) pairs, sorted by size (the notebooks' aggregate)."""
    from cdp.notebook import cluster_size_histogram as histogram

    return [(int(r["records"]), int(r["customers"])) for r in histogram(identity_map).collect()]


def identity_section(
    spark: SparkSession,
    store: TableStore,
    config: CdpConfig,
    runs: Runs,
    truth_path: str | None,
) -> Section:
    """The "Identity resolution" section (a hint to run the stage while there is no map)."""
    sec = Section("Identity resolution")
    if not store.exists(MAP_TABLE):
        sec.text("No identity map yet: run 'cdp run identity'.")
        return sec
    run = runs.get("identity")
    if run is not None:
        m = run[0].metrics
        sec.table(
            ["measure", "value"],
            [(k, int(v) if v.isdigit() else v) for k, v in sorted(m.items())],
            caption=f"Identity run {run[0].run_id}",
        )
    _add_cluster_sizes(sec, store)
    _add_rejected_links(sec, store, None if run is None else run[0])
    truth = truth_path or str(Path(config.landing_uri) / "_ground_truth" / "identity")
    if "://" not in truth and Path(truth).exists():
        _add_pairwise_quality(sec, spark, store, config, truth)
    return sec


def _add_cluster_sizes(sec: Section, store: TableStore) -> None:
    hist = cluster_size_histogram(store.read(MAP_TABLE))
    buckets: dict[str, int] = {}
    for size, customers in hist:
        label = size_bucket_label(size, SIZE_BUCKETS)
        buckets[label] = buckets.get(label, 0) + customers
    sec.table(["records per customer", "customers"], list(buckets.items()), caption="Cluster sizes")
    sec.charts.append(
        count_chart("Cluster-size histogram (records per customer)", buckets, xlabel="customers")
    )


def _add_rejected_links(sec: Section, store: TableStore, run: RunRow | None) -> None:
    """Rejected links of the latest identity run (of every run when there is none)."""
    if not store.exists(REJECTED_TABLE):
        return
    rejected = store.read(REJECTED_TABLE)
    if run is not None:
        rejected = rejected.where(F.col("run_id") == run.run_id)
    by_reason = group_counts(rejected, "rule", "reason")
    sec.table(["rule", "reason", "rejected values"], by_reason, caption="Rejected links")
    reasons: dict[str, int] = {}
    for _rule, reason, n in by_reason:
        reasons[reason] = reasons.get(reason, 0) + int(n)
    if reasons:
        sec.charts.append(
            count_chart("Rejected links by reason", reasons, xlabel="rejected identifier values")
        )


def _add_pairwise_quality(
    sec: Section, spark: SparkSession, store: TableStore, config: CdpConfig, truth: str
) -> None:
    metrics = evaluate_identity(
        spark,
        identity_map=store.read(MAP_TABLE),
        truth=load_truth(spark, truth),
        records=resolved_records(store, exact_rules(config)),
    )
    rows = []
    for name, s in (
        ("all records", metrics.all_records),
        ("linkable", metrics.linkable),
        (f"linkable + {metrics.left_out:,} left out of the map", metrics.linkable_with_left_out),
    ):
        if s is not None:
            rows.append(
                (
                    name,
                    s.records,
                    s.precision,
                    s.recall,
                    s.f1,
                    s.over_merged_clusters,
                    s.split_entities,
                )
            )
    sec.table(
        ["records", "count", "precision", "recall", "F1", "over-merged clusters", "split entities"],
        rows,
        caption=f"Pairwise quality against ground truth ({truth})",
    )
