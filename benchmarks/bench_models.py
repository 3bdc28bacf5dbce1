"""Benchmark: features + train + score for N customers, seconds per step and peak RSS.

    python benchmarks/bench_models.py --customers 20000 --work /tmp/cdp-bench-models
    python benchmarks/bench_models.py --customers 1000000 --work /data/bench-models --driver-memory 8g

Synthetic silver facts (person records, transactions, web/email events, consents) and the
identity tables (gold/identity_map, gold/identity_identifiers) are generated with Spark
straight into Delta tables under ``<work>/data`` (reused on a rerun with the same N), so the
benchmark needs no upstream stage. Each customer has a purchase rate and maybe a churn date,
so purchases after ``as_of`` are predictable from the history, as in real data.

Steps (each through ``cdp.runner.run_stage``, so what is timed is what production runs):
``features`` at the train date and at the score date, ``train`` (purchase model; LR + GBT
search within ``--budget`` seconds) and ``score``. Prints seconds per step, the holdout ROC-AUC
and PR-AUC of the model and of the recency/frequency heuristic, and the peak RSS (VmHWM) of
the driver JVM and of Python.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

from cdp import tables as T
from cdp.config import demo_overlay, load_config
from cdp.models.inputs import INPUT_TABLES
from cdp.runner import run_stage
from cdp.session import build_session
from cdp.storage import TableStore, open_store

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import jvm_pid, peak_rss_mb  # noqa: E402

START = date(2024, 1, 1)
END = date(2025, 6, 30)
SPAN_DAYS = (END - START).days + 1


def u(name: str, *cols: Column) -> Column:
    """A deterministic uniform in [0, 1) from a hash of the name and the columns."""
    return F.pmod(F.xxhash64(F.lit(name), *cols), F.lit(1_000_003)).cast("double") / 1_000_003


def day_ts(offset: Column) -> Column:
    """Timestamp ``offset`` (fractional) days after START."""
    base = F.lit(START.isoformat()).cast("timestamp").cast("long")
    return (base + (offset * 86_400).cast("long")).cast("timestamp")


def generate(spark: SparkSession, store: TableStore, n: int) -> dict[str, int]:
    cid = F.concat(F.lit("cust-"), F.col("id").cast("string"))
    people = (
        spark.range(n)
        .select(
            F.col("id"),
            cid.alias("customer_id"),
            # purchases per day: a third never buy, the rest from rare to weekly
            F.when(u("buyer", F.col("id")) < 0.33, F.lit(0.0))
            .otherwise(F.pow(u("rate", F.col("id")), 2) * 0.12)
            .alias("rate"),
            (u("first", F.col("id")) * 300).alias("first_day"),
            F.when(u("churns", F.col("id")) < 0.3, 200 + u("churn", F.col("id")) * 340)
            .otherwise(F.lit(float(SPAN_DAYS)))
            .alias("stop_day"),
        )
        .persist()
    )
    email = F.concat(F.col("customer_id"), F.lit("@bench.test"))
    persons = people.select(
        F.lit("crm").alias("source"),
        F.concat(F.lit("crm-"), F.col("id")).alias("source_record_id"),
        F.date_add(
            F.lit("1950-01-01").cast("date"), (u("age", F.col("id")) * 18000).cast("int")
        ).alias("birth_date"),
        F.when(u("g", F.col("id")) < 0.5, "F").otherwise("M").alias("gender"),
        F.element_at(
            F.array(*[F.lit(c) for c in ("GB", "DE", "FR", "NL", "US")]),
            (u("c", F.col("id")) * 5).cast("int") + 1,
        ).alias("country"),
        day_ts(F.col("first_day")).alias("updated_at"),
        F.lit(False).alias("is_deleted"),
        F.col("customer_id"),
    )
    active_days = F.greatest(F.col("stop_day") - F.col("first_day"), F.lit(0.0))
    orders = (
        people.withColumn("k", F.floor(F.col("rate") * active_days).cast("int"))
        .where(F.col("k") > 0)
        .select(
            "id",
            "customer_id",
            "first_day",
            "stop_day",
            F.explode(F.sequence(F.lit(1), F.col("k"))).alias("i"),
        )
        .select(
            F.lit("shop").alias("source"),
            F.concat(F.lit("o-"), F.col("id"), F.lit("-"), F.col("i")).alias("source_record_id"),
            day_ts(
                F.col("first_day")
                + u("od", F.col("id"), F.col("i")) * (F.col("stop_day") - F.col("first_day"))
            ).alias("order_time"),
            F.round(5 + u("amt", F.col("id"), F.col("i")) * 120, 2).alias("amount"),
            F.when(u("ch", F.col("id"), F.col("i")) < 0.2, "store")
            .otherwise("web")
            .alias("channel"),
            F.to_json(
                F.array(
                    F.struct(
                        F.element_at(
                            F.array(*[F.lit(c) for c in ("home", "toys", "fashion", "garden")]),
                            (u("cat", F.col("id"), F.col("i")) * 4).cast("int") + 1,
                        ).alias("category")
                    )
                )
            ).alias("items"),
            F.lit(False).alias("is_deleted"),
            F.col("customer_id"),
        )
    )
    ev_types = F.array(
        *[F.lit(t) for t in ("page_view", "product_view", "add_to_cart", "sent", "open", "click")]
    )
    events = (
        people.withColumn("k", (u("ne", F.col("id")) * 6 + F.col("rate") * 150).cast("int"))
        .where(F.col("k") > 0)
        .select(
            "id",
            "customer_id",
            "first_day",
            "stop_day",
            F.explode(F.sequence(F.lit(1), F.col("k"))).alias("i"),
        )
        .withColumn(
            "t", F.element_at(ev_types, (u("et", F.col("id"), F.col("i")) * 6).cast("int") + 1)
        )
        .select(
            F.lit("web").alias("source"),
            F.concat(F.lit("e-"), F.col("id"), F.lit("-"), F.col("i")).alias("source_record_id"),
            F.col("t").alias("event_type"),
            day_ts(
                F.col("first_day")
                + u("ed", F.col("id"), F.col("i"))
                * (F.least(F.col("stop_day") + 30, F.lit(float(SPAN_DAYS))) - F.col("first_day"))
            ).alias("event_time"),
            F.when(F.col("t").isin("sent", "open", "click"), "email")
            .otherwise("web")
            .alias("channel"),
            F.lit(None).cast("string").alias("customer_id"),
            email.alias("email"),
            F.lit(None).cast("string").alias("anonymous_id"),
            F.lit(None).cast("string").alias("device_id"),
            F.lit(False).alias("is_deleted"),
        )
    )
    consents = people.where(u("hc", F.col("id")) < 0.7).select(
        F.lit("prefs").alias("source"),
        F.concat(F.lit("c-"), F.col("id")).alias("source_record_id"),
        F.lit("marketing").alias("purpose"),
        F.lit("email").alias("channel"),
        F.when(u("cs", F.col("id")) < 0.8, "granted").otherwise("withdrawn").alias("status"),
        day_ts(F.col("first_day")).alias("consent_time"),
        F.lit(False).alias("is_deleted"),
        F.col("customer_id"),
    )
    counts: dict[str, int] = {}
    id_maps = []
    for table, df, record_table in (
        (T.PERSON_RECORDS.name, persons, "person_records"),
        (T.TRANSACTIONS.name, orders, "transactions"),
        (T.CONSENTS.name, consents, "consents"),
    ):
        result = store.overwrite(table, df.drop("customer_id"))
        counts[table] = result.rows_written
        id_maps.append(
            store.read(table)
            .join(
                df.select("source", "source_record_id", "customer_id"),
                ["source", "source_record_id"],
            )
            .select(
                "customer_id",
                "source",
                "source_record_id",
                F.lit(record_table).alias("record_table"),
                F.lit("bench").alias("assigned_run_id"),
                F.current_timestamp().alias("assigned_at"),
            )
        )
    counts[T.EVENTS.name] = store.overwrite(T.EVENTS.name, events).rows_written
    imap = id_maps[0].unionByName(id_maps[1]).unionByName(id_maps[2])
    counts[T.IDENTITY_MAP.name] = store.overwrite(T.IDENTITY_MAP.name, imap).rows_written
    ids = people.select("customer_id", F.lit("email").alias("id_type"), email.alias("id_value"))
    counts[T.IDENTITY_IDENTIFIERS.name] = store.overwrite(
        T.IDENTITY_IDENTIFIERS.name, ids
    ).rows_written
    people.unpersist()
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--work", required=True)
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument("--master", default=None, help="Spark master (default: the local env's)")
    parser.add_argument("--budget", type=float, default=300.0, help="search time budget, seconds")
    parser.add_argument("--regenerate", action="store_true")
    args = parser.parse_args()
    work = Path(args.work) / f"n{args.customers}"
    marker = work / "inputs.json"
    if args.regenerate:
        shutil.rmtree(work, ignore_errors=True)
    # Outputs of earlier runs go; generated inputs stay.
    for leftover in (T.CUSTOMER_FEATURES.name, T.PROPENSITY_SCORES.name, "mlflow", "ops"):
        shutil.rmtree(work / "data" / leftover, ignore_errors=True)
    overrides: dict[str, object] = {
        "data_root": str(work / "data"),
        "spark.ui_enabled": False,
        "spark.driver_memory": args.driver_memory,
        "log.level": "WARNING",
        "models.only": "purchase_90d",
        "models.search.time_budget_seconds": args.budget,
    }
    if args.master:
        overrides["spark.master"] = args.master
    config = load_config(env="local", conf_files=[demo_overlay()], overrides=overrides)
    t0 = time.perf_counter()
    spark = build_session(config)
    store = open_store(spark, config)
    timings: dict[str, float] = {"session": time.perf_counter() - t0}
    if marker.exists() and all(store.exists(t) for t in INPUT_TABLES.values()):
        counts = json.loads(marker.read_text())
        print(f"reusing inputs in {work / 'data'}")
    else:
        t = time.perf_counter()
        counts = generate(spark, store, args.customers)
        timings["generate inputs"] = time.perf_counter() - t
        marker.write_text(json.dumps(counts))
    for table, rows in counts.items():
        print(f"  {table:32} {rows:>12,} rows")
    horizon = config.models.labels.horizon_days
    score_as_of = END + timedelta(days=1)
    train_as_of = score_as_of - timedelta(days=horizon)
    steps = [
        ("features (train date)", "features", train_as_of),
        ("features (score date)", "features", score_as_of),
        ("train", "train", train_as_of),
        ("score", "score", score_as_of),
    ]
    results = {}
    for label, stage, as_of in steps:
        t = time.perf_counter()
        results[stage] = run_stage(stage, spark=spark, config=config, as_of=as_of, progress=print)
        timings[label] = time.perf_counter() - t
    row = store.read(T.RUN_LOG.name).where(f"run_id = '{results['train'].run_id}'").first()
    metrics = dict(row["metrics"] or {}) if row is not None else {}
    print()
    print(f"{args.customers:,} customers; master {spark.sparkContext.master}")
    for label, seconds in timings.items():
        print(f"  {label:24} {seconds:8.1f} s")
    for key in sorted(metrics):
        if "auc" in key:
            print(f"  {key:40} {metrics[key]}")
    print(
        f"peak RSS: driver JVM {peak_rss_mb(jvm_pid(spark)):,.0f} MB, Python {peak_rss_mb(os.getpid()):,.0f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
