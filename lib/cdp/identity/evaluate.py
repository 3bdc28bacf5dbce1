"""Identity resolution against ground truth: pairwise precision, recall, F1 and more.

Pairwise metrics count record pairs: a pair is *predicted* when both records share a
``customer_id``, *true* when both share an ``entity_id``. With per-cluster counts
``n(c)``, ``n(e)`` and ``n(c, e)`` (all computed in Spark, never a pair list):

    TP = sum C(n(c, e), 2)    predicted = sum C(n(c), 2)    true = sum C(n(e), 2)
    precision = TP / predicted,  recall = TP / true

Only records both in the map and in the truth (with a non-null entity) are evaluated: truth
lists records that ingestion or silver quarantined and records of event sources, which are no
identity-map records; the counts of each side are reported. When the map carries
``n_identifiers``, the same metrics are also given over *linkable* records -- those carrying
at least one identifier value (an anonymous till receipt can belong to nobody we know).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp.identity.links import identifier_links
from cdp.identity.nodes import prepare_records, record_nodes
from cdp.identity.rules import RECORD_TABLES, IdentityRules

if TYPE_CHECKING:
    from cdp.storage import TableStore

KEYS = ["source", "source_record_id"]
SIZE_BUCKETS = ((1, 1), (2, 2), (3, 5), (6, 10), (11, 50), (51, 100), (101, None))


@dataclass(frozen=True)
class PairScores:
    records: int
    true_pairs: int
    predicted_pairs: int
    true_positive_pairs: int
    precision: float
    recall: float
    f1: float
    over_merged_clusters: int  # clusters holding records of two or more true entities
    over_merged_entities: int  # true entities sharing a cluster with another entity
    split_entities: int  # true entities spread over two or more clusters
    entities: int
    clusters: int


@dataclass(frozen=True)
class IdentityMetrics:
    """What :func:`evaluate_identity` measured."""

    truth_records: int  # truth rows with an entity
    map_records: int
    evaluated: int  # in both (the intersection)
    all_records: PairScores
    linkable: PairScores | None  # records with n_identifiers > 0, when the map says so
    cluster_sizes: dict[str, int] = field(default_factory=dict)  # over the whole map
    # Records carrying an identifier that the stage kept out of the map (merge protection
    # rejected every value they carry; in the truth too), and the linkable scores with each
    # of them counted as a customer of its own: a reader sees that leaving a record out is
    # not how the recall above was earned.
    left_out: int = 0
    linkable_with_left_out: PairScores | None = None

    def format(self) -> str:
        """A human-readable report."""
        lines = [
            f"records: truth {self.truth_records:,}, identity map {self.map_records:,}, "
            f"evaluated (in both) {self.evaluated:,}",
        ]
        for name, s in (("all evaluated records", self.all_records), ("linkable", self.linkable)):
            if s is None:
                continue
            lines += [
                f"{name} ({s.records:,} records, {s.entities:,} true entities, "
                f"{s.clusters:,} clusters):",
                _score_line(s),
                f"  over-merged clusters {s.over_merged_clusters:,} (true entities involved "
                f"{s.over_merged_entities:,}); split true entities {s.split_entities:,}",
            ]
        s = self.linkable_with_left_out
        if self.left_out and s is not None:
            lines += [
                f"left out of the map though they carry an identifier (every value rejected by "
                f"merge protection): {self.left_out:,} records; linkable with each of them as "
                "a customer of its own:",
                _score_line(s),
            ]
        sizes = ", ".join(f"{k}: {v:,}" for k, v in self.cluster_sizes.items())
        lines.append(f"cluster sizes (records per customer): {sizes}")
        return "\n".join(lines)


def _score_line(s: PairScores) -> str:
    return (
        f"  pairwise precision {s.precision:.4f}  recall {s.recall:.4f}  F1 {s.f1:.4f}"
        f"  (TP {s.true_positive_pairs:,} / predicted {s.predicted_pairs:,} / true {s.true_pairs:,})"
    )


def _pairs(n: str) -> F.Column:
    return (F.col(n) * (F.col(n) - 1) / 2).cast("long")


def pair_scores(joined: DataFrame) -> PairScores:
    """Scores of ``customer_id, entity_id`` rows (one per evaluated record)."""
    cells = joined.groupBy("customer_id", "entity_id").agg(F.count(F.lit(1)).alias("n")).cache()
    try:
        by_cluster = cells.groupBy("customer_id").agg(
            F.sum("n").alias("n"), F.count(F.lit(1)).alias("k")
        )
        by_entity = cells.groupBy("entity_id").agg(
            F.sum("n").alias("n"), F.count(F.lit(1)).alias("k")
        )
        c = by_cluster.agg(
            F.coalesce(F.sum(_pairs("n")), F.lit(0)).alias("pred"),
            F.count(F.lit(1)).alias("clusters"),
            F.coalesce(F.sum((F.col("k") > 1).cast("long")), F.lit(0)).alias("over"),
        ).first()
        e = by_entity.agg(
            F.coalesce(F.sum(_pairs("n")), F.lit(0)).alias("true"),
            F.count(F.lit(1)).alias("entities"),
            F.coalesce(F.sum((F.col("k") > 1).cast("long")), F.lit(0)).alias("split"),
            F.coalesce(F.sum("n"), F.lit(0)).alias("records"),
        ).first()
        tp_row = cells.agg(F.coalesce(F.sum(_pairs("n")), F.lit(0)).alias("tp")).first()
        over_entities = (
            cells.join(
                by_cluster.where(F.col("k") > 1).select("customer_id"), "customer_id", "left_semi"
            )
            .select("entity_id")
            .distinct()
            .count()
        )
    finally:
        cells.unpersist()
    assert c is not None and e is not None and tp_row is not None
    tp, pred, true = int(tp_row["tp"]), int(c["pred"]), int(e["true"])
    precision = tp / pred if pred else 1.0
    recall = tp / true if true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return PairScores(
        records=int(e["records"]),
        true_pairs=true,
        predicted_pairs=pred,
        true_positive_pairs=tp,
        precision=precision,
        recall=recall,
        f1=f1,
        over_merged_clusters=int(c["over"]),
        over_merged_entities=over_entities,
        split_entities=int(e["split"]),
        entities=int(e["entities"]),
        clusters=int(c["clusters"]),
    )


def cluster_size_histogram(identity_map: DataFrame) -> dict[str, int]:
    """Customers per bucket of records per customer (``"1"``, ``"3-5"``, ``">100"`` ...)."""
    sizes = identity_map.groupBy("customer_id").agg(F.count(F.lit(1)).alias("n"))
    label = F.lit(None).cast("string")
    for lo, hi in reversed(SIZE_BUCKETS):
        name = f">{lo - 1}" if hi is None else (str(lo) if lo == hi else f"{lo}-{hi}")
        cond = F.col("n") >= lo if hi is None else F.col("n").between(lo, hi)
        label = F.when(cond, name).otherwise(label)
    got = {r["b"]: int(r["count"]) for r in sizes.groupBy(label.alias("b")).count().collect()}
    order = [
        f">{lo - 1}" if hi is None else (str(lo) if lo == hi else f"{lo}-{hi}")
        for lo, hi in SIZE_BUCKETS
    ]
    return {k: got[k] for k in order if k in got}


def evaluate_identity(
    spark: SparkSession,
    *,
    identity_map: DataFrame,
    truth: DataFrame,
    records: DataFrame | None = None,
) -> IdentityMetrics:
    """Pairwise precision / recall / F1 of ``identity_map`` against ``truth``.

    ``identity_map``: at least ``customer_id, source, source_record_id`` (optionally
    ``n_identifiers``). ``truth``: ``source, source_record_id, entity_id`` (any type; rows
    with a null entity are ignored). A record listed twice in the truth counts once.
    ``records``: ``source, source_record_id, n_identifiers`` of every record the stage
    resolved (:func:`resolved_records`); those missing from the map are counted as
    ``left_out``, and the ones carrying an identifier are scored as customers of their own
    beside the linkable records.
    """
    truth_rows = (
        truth.where(F.col("entity_id").isNotNull())
        .select(*KEYS, F.col("entity_id").cast("string").alias("entity_id"))
        .dropDuplicates(KEYS)
    )
    has_n = "n_identifiers" in identity_map.columns
    map_cols = [*KEYS, "customer_id"] + (["n_identifiers"] if has_n else [])
    mapped = identity_map.select(*map_cols).dropDuplicates(KEYS)
    joined = mapped.join(truth_rows, KEYS).cache()
    try:
        truth_n, map_n, evaluated = (
            truth_rows.count(),
            mapped.count(),
            joined.count(),
        )
        all_scores = pair_scores(joined)
        linkable = pair_scores(joined.where(F.col("n_identifiers") > 0)) if has_n else None
        left_out, with_left_out = 0, None
        if records is not None:
            missing = (
                records.where(F.col("n_identifiers") > 0)
                .select(*KEYS)
                .dropDuplicates(KEYS)
                .join(mapped, KEYS, "left_anti")
                .join(truth_rows, KEYS)
                .withColumn("customer_id", F.concat_ws("|", F.lit("left-out"), *KEYS))
                .cache()
            )
            try:
                left_out = missing.count()
                if left_out:
                    kept = joined.where(F.col("n_identifiers") > 0) if has_n else joined
                    with_left_out = pair_scores(
                        kept.select(*KEYS, "customer_id", "entity_id").unionByName(
                            missing.select(*KEYS, "customer_id", "entity_id")
                        )
                    )
            finally:
                missing.unpersist()
    finally:
        joined.unpersist()
    return IdentityMetrics(
        truth_records=truth_n,
        map_records=map_n,
        evaluated=evaluated,
        all_records=all_scores,
        linkable=linkable,
        cluster_sizes=cluster_size_histogram(identity_map),
        left_out=left_out,
        linkable_with_left_out=with_left_out,
    )


def resolved_records(store: TableStore, rules: IdentityRules) -> DataFrame | None:
    """``source, source_record_id, n_identifiers`` of every live record the identity stage
    resolves (the record tables present), or None when there is none. ``n_identifiers``
    counts the identifier values the record carries, accepted by merge protection or not,
    as the stage counts them for the map."""
    frames = {n: store.read(t.table) for n, t in RECORD_TABLES.items() if store.exists(t.table)}
    if not frames:
        return None
    prepared = prepare_records(frames, rules)
    counts = (
        identifier_links(prepared, rules)
        .groupBy(F.col("other").alias("node"))
        .agg(F.countDistinct("unit").alias("n_identifiers"))
    )
    return (
        record_nodes(prepared)
        .join(counts, "node", "left")
        .select(*KEYS, F.coalesce("n_identifiers", F.lit(0)).alias("n_identifiers"))
    )


def load_truth(spark: SparkSession, path: str | Path) -> DataFrame:
    """Ground truth as ``source, source_record_id, entity_id``.

    A CSV file with a header ``source,source_record_id,entity_id``, or a Parquet file or
    directory such as the generator's ``<landing>/_ground_truth/identity`` (whose entity
    column is ``person_id``).
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(
            f"truth file {p} does not exist: `cdp generate` writes it under its landing folder "
            "(<landing>/_ground_truth/identity); pass --truth FILE, or --set landing_root=DIR "
            "where the landing is not <data-root>/landing"
        )
    if p.is_dir() or p.suffix.lower() == ".parquet":
        df = spark.read.parquet(str(p))
    else:
        df = spark.read.option("header", "true").csv(str(p))
    if "entity_id" not in df.columns and "person_id" in df.columns:
        df = df.withColumnRenamed("person_id", "entity_id")
    missing = [c for c in [*KEYS, "entity_id"] if c not in df.columns]
    if missing:
        raise ValueError(
            f"truth {p}: missing column(s) {missing}; expected source, source_record_id, "
            f"entity_id (got {df.columns})"
        )
    return df.select(
        F.col("source").cast("string"),
        F.col("source_record_id").cast("string"),
        F.col("entity_id").cast("string"),
    )


@dataclass(frozen=True)
class TierScore:
    """Record pairs one link rule joined directly (records sharing one of its values, or a
    scored pair), and how many of them are one true entity."""

    rule: str
    priority: int
    pairs: int
    true_pairs: int

    @property
    def false_pairs(self) -> int:
        return self.pairs - self.true_pairs


def tier_scores(links: DataFrame, truth: DataFrame) -> list[TierScore]:
    """Per link rule (``gold/identity_links``: ``rule, priority, unit, source,
    source_record_id``) the true and false record pairs it contributed, strongest tier first.

    A pair is counted once per rule value joining it; records without truth are left out.
    """
    truth_rows = (
        truth.where(F.col("entity_id").isNotNull())
        .select(*KEYS, F.col("entity_id").cast("string").alias("entity_id"))
        .dropDuplicates(KEYS)
    )
    joined = links.join(truth_rows, KEYS)
    cells = joined.groupBy("rule", "priority", "unit", "entity_id").agg(
        F.countDistinct(*KEYS).alias("n")
    )
    per_unit = cells.groupBy("rule", "priority", "unit").agg(
        F.sum("n").alias("n"), F.sum(_pairs("n")).alias("tp")
    )
    rows = (
        per_unit.groupBy("rule", "priority")
        .agg(F.sum(_pairs("n")).alias("pairs"), F.sum("tp").alias("tp"))
        .orderBy(F.col("priority").desc(), "rule")
        .collect()
    )
    return [
        TierScore(r["rule"], int(r["priority"]), int(r["pairs"] or 0), int(r["tp"] or 0))
        for r in rows
    ]


def format_tiers(scores: list[TierScore]) -> str:
    lines = ["pairs joined directly, per link rule (tier):"]
    for s in scores:
        precision = s.true_pairs / s.pairs if s.pairs else 1.0
        lines.append(
            f"  {s.rule:<24} priority {s.priority:>4}: {s.pairs:>10,} pairs, "
            f"{s.true_pairs:>10,} true, {s.false_pairs:>8,} false (precision {precision:.4f})"
        )
    return "\n".join(lines)
