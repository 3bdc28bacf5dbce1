"""Benchmark: probabilistic matching with Splink's Spark backend beside its DuckDB backend.

    python benchmarks/bench_identity.py --data-root /tmp/bm20k --matching-only

(``bench_identity.py`` runs this step after the identity and profile stages, or alone with
``--matching-only``.) On the silver ``person_records`` of a data root:

* the matching input (:func:`cdp.identity.matching.prepare.matching_input`), materialized once;
* the step as the identity stage runs it: ``plan_blocking`` (pairs per blocking rule, the
  broad rules within ``broad_max_pairs`` kept, as the stage keeps them) on Spark, ``train`` with the configured engine (``training.engine``: DuckDB in the driver on a
  bounded sample by default, or Splink's Spark backend), ``score`` at the review threshold on
  Spark (materialized), each timed;
* the peer, in this process on the *same* records collected to Arrow: Splink's DuckDB backend
  with ``splink_settings(rules, "duckdb")`` (the same comparisons in DuckDB SQL), trained with
  the same steps as ``model.train`` (prior, u by random sampling with the same budget and seed,
  EM over the same passes) and predicting at the review threshold; the blocked pair counts
  with the same formula in DuckDB SQL;
* the Spark/DuckDB ratio per step, the agreement of the two backends (pairs at or above the
  match threshold in both / in either), and, when the generator's ground truth is there,
  pairwise precision and recall of the pairs at or above the match threshold over the pairs
  of compared records, for both backends;
* peak RSS (VmHWM) of the driver JVM and of this Python process (before the peer: Spark's
  driver side only; after: with DuckDB and the collected records).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp import tables as T
from cdp.config import CdpConfig, demo_overlay, load_config
from cdp.identity.matching.comparisons import (
    CANON_SUFFIX,
    block_columns,
    blocking_variants,
    splink_settings,
)
from cdp.identity.matching.config import MatchingRules, load_matching, resolve_fields
from cdp.identity.matching.model import (
    plan_blocking,
    score,
    smoothed,
    train,
    with_prediction_blocking,
)
from cdp.identity.matching.prepare import matching_input
from cdp.identity.nodes import KEY_SEP
from cdp.sources import load_sources, mapped_fields
from cdp.storage import open_store

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import jvm_pid, peak_rss_mb  # noqa: E402

TABLE = "person_records"


def root_config(data_root: Path, driver_memory: str) -> CdpConfig:
    """The benchmark's configuration over a ``cdp`` data root (landing: ``<root>/landing``)."""
    return load_config(
        env="local",
        # A data root built from the generated (demo) landing zone: the demo's sources.
        conf_files=[demo_overlay()],
        overrides={
            "data_root": str(data_root),
            "spark.ui_enabled": False,
            "spark.driver_memory": driver_memory,
            "log.level": "WARNING",
        },
    )


def _forenames(rules: MatchingRules) -> list[str]:
    return [str(c.field) for c in rules.comparisons if c.kind == "forename"]


def _cols(fields: Sequence[str], forenames: Sequence[str]) -> list[str]:
    return [f + CANON_SUFFIX if f in forenames else f for f in fields]


def duckdb_blocked_pairs(con: Any, table: str, rules: MatchingRules) -> list[int]:
    """``count_blocked_pairs`` in DuckDB SQL: n(n-1)/2 over each plain rule's key groups; a
    crosswise rule's pairs either way round (ordered pairs less half those both ways)."""
    forenames = _forenames(rules)

    def ordered(rule: Sequence[str]) -> int:
        left, right = block_columns(rule, forenames)
        keys = [f"k{i}" for i in range(len(left))]
        present = " AND ".join(f"{c} IS NOT NULL" for c in {*left, *right})

        def side(cols: list[str], n: str) -> str:
            sel = ", ".join(f"{c} AS {k}" for c, k in zip(cols, keys, strict=True))
            return f"(SELECT {sel}, count(*) AS {n} FROM {table} WHERE {present} GROUP BY ALL)"

        self_match = " AND ".join(f"{a} = {b}" for a, b in zip(left, right, strict=True))
        pairs = con.execute(
            f"SELECT coalesce(sum(n_l * n_r), 0) FROM {side(left, 'n_l')} "
            f"JOIN {side(right, 'n_r')} USING ({', '.join(keys)})"
        ).fetchall()[0][0]
        own = con.execute(
            f"SELECT count(*) FROM {table} WHERE {present} AND {self_match}"
        ).fetchall()[0][0]
        return int(pairs) - int(own)

    out = []
    for rule in rules.blocking:
        variants = blocking_variants(rule)
        if len(variants) == 1:
            out.append(ordered(rule) // 2)
        else:
            out.append(ordered(rule) - ordered(list(dict.fromkeys(variants[0] + variants[1]))) // 2)
    return out


def duckdb_train(db_api: Any, table: Any, rules: MatchingRules, n: int) -> dict[str, Any]:
    """``model.train`` with the DuckDB backend: the same steps, budgets and seed."""
    from splink import Linker, block_on

    linker = Linker(table, splink_settings(rules, "duckdb"), log_level=None)
    training = rules.training
    forenames = _forenames(rules)

    def rule(fields: Sequence[str]) -> Any:
        return block_on(*_cols(fields, forenames))

    if training.prior_rules:
        linker.training.estimate_probability_two_random_records_match(
            [rule(r) for r in training.prior_rules], recall=training.prior_recall
        )
    linker.training.estimate_u_using_random_sampling(
        max_pairs=min(training.u_max_pairs, max(1.0, n * (n - 1) / 2)),
        seed=training.seed,
        num_chunks=1,
    )
    for fields in training.em_blocking:
        linker.training.estimate_parameters_using_expectation_maximisation(
            rule(fields), max_pairs=training.em_max_pairs
        )
    return smoothed(linker.misc.save_model_to_json())


def _pair_keys(df: pd.DataFrame) -> set[tuple[int, int]]:
    lo = df[["unique_id_l", "unique_id_r"]].min(axis=1).to_numpy()
    hi = df[["unique_id_l", "unique_id_r"]].max(axis=1).to_numpy()
    return set(zip(lo.tolist(), hi.tolist(), strict=True))


def truth_of(spark: SparkSession, truth_dir: Path, records: pd.DataFrame) -> pd.Series | None:
    """unique_id -> true person id of the compared records (None without ground truth)."""
    if not truth_dir.exists():
        return None
    truth = (
        spark.read.parquet(str(truth_dir))
        .where(F.col("source").isNotNull())
        .select(
            F.concat_ws(
                KEY_SEP, F.lit(TABLE), "source", F.col("source_record_id").cast("string")
            ).alias("member_key"),
            F.col("person_id").cast("string").alias("person_id"),
        )
        .toPandas()
        .drop_duplicates("member_key")
    )
    merged = records[["unique_id", "member_key"]].merge(truth, on="member_key", how="left")
    return merged.set_index("unique_id")["person_id"]


def precision_recall(pairs: set[tuple[int, int]], person: pd.Series) -> dict[str, float]:
    """Pairwise precision and recall of ``pairs`` against the true persons of the records."""
    sizes = person.dropna().value_counts()
    true_pairs = int((sizes * (sizes - 1) // 2).sum())
    lookup = person.dropna().to_dict()
    tp = sum(1 for a, b in pairs if a in lookup and lookup[a] == lookup.get(b))
    return {
        "true_pairs": true_pairs,
        "tp": tp,
        "precision": tp / len(pairs) if pairs else float("nan"),
        "recall": tp / true_pairs if true_pairs else float("nan"),
    }


def _row(step: str, spark_s: float | None, duck_s: float | None, pairs: str) -> str:
    def fmt(s: float | None) -> str:
        return f"{s:,.1f}" if s is not None else "-"

    ratio = f"{spark_s / duck_s:,.1f}x" if spark_s is not None and duck_s else "-"
    return f"| {step} | {fmt(spark_s)} | {fmt(duck_s)} | {pairs} | {ratio} |"


def bench_matching(
    spark: SparkSession, config: CdpConfig, matching_file: str | None = None
) -> dict[str, Any]:
    """Run the matching step on both backends and print the comparison; returns the numbers."""
    import duckdb
    from splink import DuckDBAPI, Linker

    # Splink warns per untrained level on both backends; the numbers below say what matters.
    logging.getLogger("splink").setLevel(logging.ERROR)
    store = open_store(spark, config)
    base = Path(config.conf_dir or "conf")
    path = Path(matching_file or base / (config.identity.matching_file or "rules/matching.yaml"))
    loaded = load_matching(path)
    rules, notes = resolve_fields(loaded, mapped_fields(load_sources(config)))
    nicknames = dict(rules.nicknames)  # as the identity stage passes them (nicknames_file)
    match_t, review_t = rules.thresholds.match, rules.thresholds.review
    print(
        f"\n## probabilistic matching over {config.data_root}: rules {path} "
        f"(fingerprint {rules.fingerprint()}), thresholds match {match_t} / review {review_t}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    for note in notes:
        print(f"  note: {note}")
    print(f"  comparisons: {[c.name for c in rules.comparisons]}")

    silver = store.read(T.silver_table(TABLE))
    t0 = time.perf_counter()
    records = matching_input({TABLE: silver}, rules, nicknames).localCheckpoint(eager=True)
    n = records.count()
    prepare_s = time.perf_counter() - t0
    silver_n = silver.count()

    # -- Spark: the stage's calls, each timed -------------------------------------------
    t0 = time.perf_counter()
    # The stage's plan: every narrow rule, and the broad rules this data affords.
    planned, blocked, left_out = plan_blocking(records, rules)
    block_s = time.perf_counter() - t0
    for note in left_out:
        print(f"  note: {note}")
    print(f"  blocking: {planned.blocking}")
    t0 = time.perf_counter()
    model = train(spark, records, rules)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = with_prediction_blocking(model, planned)
    scored: DataFrame = score(spark, records, model, review_t).localCheckpoint(eager=True)
    score_s = time.perf_counter() - t0
    counts = scored.agg(
        F.count(F.lit(1)).alias("n"),
        F.sum((F.col("match_probability") >= match_t).cast("long")).alias("match"),
    ).first()
    spark_pairs, spark_match = int(counts["n"]), int(counts["match"] or 0)
    spark_pdf = scored.select("unique_id_l", "unique_id_r", "match_probability").toPandas()
    py_rss_spark = peak_rss_mb(os.getpid())

    # -- DuckDB: the same records, collected ----------------------------------------------
    t0 = time.perf_counter()
    arrow = records.toArrow()
    collect_s = time.perf_counter() - t0
    con = duckdb.connect()
    con.register("records_arrow", arrow)
    con.execute("CREATE TABLE records AS SELECT * FROM records_arrow").fetchall()
    con.unregister("records_arrow")
    db_api = DuckDBAPI(connection=con)
    t0 = time.perf_counter()
    duck_blocked = duckdb_blocked_pairs(con, "records", planned)
    duck_block_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    duck_settings = duckdb_train(db_api, db_api.register("records"), planned, n)
    duck_train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    linker = Linker(
        db_api.register("records"),
        dict(duck_settings, retain_intermediate_calculation_columns=True),
        log_level=None,
    )
    predicted = linker.inference.predict(threshold_match_probability=review_t)
    duck_score_s = time.perf_counter() - t0
    duck_pdf = con.execute(
        f"SELECT unique_id_l, unique_id_r, match_probability FROM {predicted.physical_name}"
    ).df()
    duck_pairs = len(duck_pdf)
    duck_match = int((duck_pdf["match_probability"] >= match_t).sum())

    # -- agreement and quality ------------------------------------------------------------
    s_match = _pair_keys(spark_pdf[spark_pdf["match_probability"] >= match_t])
    d_match = _pair_keys(duck_pdf[duck_pdf["match_probability"] >= match_t])
    s_review, d_review = _pair_keys(spark_pdf), _pair_keys(duck_pdf)
    both, either = len(s_match & d_match), len(s_match | d_match)

    print(
        f"records: {silver_n:,} silver rows -> {n:,} compared records "
        f"(matching input {prepare_s:.1f}s; collected to Arrow for DuckDB in {collect_s:.1f}s)"
    )
    print("blocked pairs per rule (Spark / DuckDB):")
    for fields, a, b in zip(planned.blocking, blocked, duck_blocked, strict=True):
        print(f"  {fields}: {a:,} / {b:,}")
    print(
        "\n| step | Spark s | DuckDB s | pairs (Spark / DuckDB) | Spark/DuckDB |\n"
        "|---|---:|---:|---|---:|"
    )
    print(
        _row(
            "blocking (pair counts)",
            block_s,
            duck_block_s,
            f"{sum(blocked):,} / {sum(duck_blocked):,}",
        )
    )
    engine = rules.training.engine
    limit = rules.training.max_records
    print(_row(f"train (stage: {engine} engine, <= {limit:,} records)", train_s, duck_train_s, "-"))
    print(
        _row(
            f"score (>= review {review_t})",
            score_s,
            duck_score_s,
            f"{spark_pairs:,} / {duck_pairs:,}; >= match {match_t}: {spark_match:,} / {duck_match:,}",
        )
    )
    spark_total = block_s + train_s + score_s
    duck_total = duck_block_s + duck_train_s + duck_score_s
    print(_row("total", spark_total, duck_total, "-"))
    print(
        f"\nagreement at match {match_t}: {both:,} pairs in both / {either:,} in either "
        f"({both / either if either else float('nan'):.4f}); at review {review_t}: "
        f"{len(s_review & d_review):,} / {len(s_review | d_review):,}"
    )
    quality: dict[str, dict[str, float]] = {}
    truth_dir = Path(config.landing_uri) / "_ground_truth" / "identity"
    person = truth_of(spark, truth_dir, records.select("unique_id", "member_key").toPandas())
    if person is not None:
        for name, pairs in (("Spark", s_match), ("DuckDB", d_match)):
            q = precision_recall(pairs, person)
            quality[name] = q
            print(
                f"quality at match {match_t}, {name}: precision {q['precision']:.4f}, recall "
                f"{q['recall']:.4f} ({q['tp']:,} true of {len(pairs):,} pairs; "
                f"{q['true_pairs']:,} true pairs among the compared records)"
            )
    jvm_rss, py_rss = peak_rss_mb(jvm_pid(spark)), peak_rss_mb(os.getpid())
    print(
        f"peak RSS: driver JVM {jvm_rss:,.0f} MB, Python {py_rss_spark:,.0f} MB before the "
        f"DuckDB peer, {py_rss:,.0f} MB after; load average {os.getloadavg()[0]:.1f}"
    )
    con.close()
    return {
        "fingerprint": rules.fingerprint(),
        "records": n,
        "blocked": blocked,
        "duck_blocked": duck_blocked,
        "seconds": {
            "spark": {"blocking": block_s, "train": train_s, "score": score_s},
            "duckdb": {"blocking": duck_block_s, "train": duck_train_s, "score": duck_score_s},
        },
        "pairs": {"spark": (spark_pairs, spark_match), "duckdb": (duck_pairs, duck_match)},
        "agreement": (both, either),
        "quality": quality,
        "rss_mb": {"jvm": jvm_rss, "python_spark": py_rss_spark, "python": py_rss},
    }
