"""Benchmark: customer lifetime value on a holdout period of real transactions, and at scale.

    python benchmarks/bench_value.py holdout --cache /tmp/cdp-bench-value
    python benchmarks/bench_value.py scale --customers 1000000 --driver-memory 8g

``holdout``: the CDNOW master log (23,570 real customers of a CD retailer, 1997-01 to
1998-06, 69,659 orders: the classic BTYD benchmark; the file ships inside the ``lifetimes``
wheel on PyPI, fetched with ``pip download`` once into ``--cache``). The models are fitted
with the ``value`` stage's own code (:mod:`cdp.value`: the Spark RFM summary, the seeded
PyMC-Marketing BG/NBD + Gamma-Gamma MAP fit) on the calibration period, the first 39 weeks by
default, and predict each customer's purchases and spend over the holdout period (the
remaining 39 weeks). Compared per customer with what each one bought, against the naive
baseline the issue names: each customer's past average rate (calibration purchases or spend
per day since their first purchase) times the holdout length. Prints Pearson correlation,
mean absolute error and the totals for the model and the baseline.

``scale``: N synthetic customers (heterogeneous Poisson purchase rates, geometric dropout,
gamma spend; Spark-generated, deterministic), timed through the stage's steps: RFM summary in
Spark, the driver-side fit on the bounded sample, and scoring every customer on the executors
(written to Parquet, so every row is computed). Prints seconds per step and the peak RSS of
the driver JVM and of Python.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp.config import load_config
from cdp.session import build_session
from cdp.value.fit import fit_btyd, fit_sample
from cdp.value.rfm import KEY, RFM_COLUMNS, rfm_summary
from cdp.value.score import FittedModels, _per_customer, score_value
from cdp.value.settings import ValueConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import jvm_pid, peak_rss_mb  # noqa: E402

CDNOW_WHEEL = "lifetimes==0.11.3"
CDNOW_MEMBER = "lifetimes/datasets/CDNOW_master.txt"


def cdnow_file(cache: Path) -> Path:
    """CDNOW_master.txt, extracted from the lifetimes wheel (downloaded once, no install)."""
    target = cache / "CDNOW_master.txt"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(cache)]
        + [CDNOW_WHEEL],
        check=True,
    )
    wheel = next(cache.glob("[Ll]ifetimes-*.whl"))
    with zipfile.ZipFile(wheel) as zf, zf.open(CDNOW_MEMBER) as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    return target


def read_cdnow(spark: SparkSession, path: Path) -> DataFrame:
    """customer_id, order_time, amount: whitespace-separated id, yyyymmdd, quantity, amount."""
    pdf = pd.read_csv(path, sep=r"\s+", header=0, names=["id", "day", "qty", "amount"])
    pdf[KEY] = pdf["id"].astype(str)
    pdf["order_time"] = pd.to_datetime(pdf["day"].astype(str), format="%Y%m%d")
    return spark.createDataFrame(pdf[[KEY, "order_time", "amount"]])


def holdout_actuals(tx: DataFrame, start: date, end: date) -> pd.DataFrame:
    """Purchase days and spend per customer in [start, end) (positive amounts only)."""
    window = tx.where(
        (F.col("order_time") >= F.lit(start.isoformat()).cast("timestamp"))
        & (F.col("order_time") < F.lit(end.isoformat()).cast("timestamp"))
        & (F.col("amount") > 0)
    )
    days = window.groupBy(KEY, F.to_date("order_time").alias("d")).agg(F.sum("amount").alias("a"))
    return (
        days.groupBy(KEY).agg(F.count("*").alias("purchases"), F.sum("a").alias("spend")).toPandas()
    )


def calibration_totals(tx: DataFrame, as_of: date) -> pd.DataFrame:
    """Purchase days and spend per customer before ``as_of`` (the baseline's rates)."""
    before = tx.where(
        (F.col("order_time") < F.lit(as_of.isoformat()).cast("timestamp")) & (F.col("amount") > 0)
    )
    days = before.groupBy(KEY, F.to_date("order_time").alias("d")).agg(F.sum("amount").alias("a"))
    return (
        days.groupBy(KEY)
        .agg(F.count("*").alias("cal_purchases"), F.sum("a").alias("cal_spend"))
        .toPandas()
    )


def measures(pred: pd.Series, actual: pd.Series) -> dict[str, float]:
    p, a = pred.fillna(0.0).to_numpy(), actual.fillna(0.0).to_numpy()
    return {
        "pearson_r": round(float(np.corrcoef(p, a)[0, 1]), 4),
        "mae": round(float(np.mean(np.abs(p - a))), 4),
        "rmse": round(float(np.sqrt(np.mean((p - a) ** 2))), 4),
        "total_predicted": round(float(p.sum()), 1),
        "total_actual": round(float(a.sum()), 1),
    }


def run_holdout(spark: SparkSession, args: argparse.Namespace) -> dict[str, object]:
    tx = read_cdnow(spark, cdnow_file(Path(args.cache))).cache()
    as_of = date.fromisoformat(args.as_of)
    end = as_of + timedelta(days=args.holdout_days)
    settings = ValueConfig(seed=args.seed)
    t0 = time.perf_counter()
    rfm = rfm_summary(tx, as_of).cache()
    sample = fit_sample(rfm, settings)
    fit = fit_btyd(sample, settings)
    fit_seconds = time.perf_counter() - t0
    assert fit is not None and fit.spend is not None, "no fit on CDNOW"
    models = FittedModels(fit)
    data = rfm.select(*RFM_COLUMNS).toPandas()  # a benchmark: 23k customers in the driver
    for c in RFM_COLUMNS[1:]:
        data[c] = data[c].astype("float64")
    ids = data[KEY]
    days = float(args.holdout_days)
    purchases = _per_customer(models.purchases.expected_purchases(data, future_t=days), ids)
    per_order = _per_customer(models.spend.expected_customer_spend(data), ids)
    pred = pd.DataFrame({KEY: ids, "p_purchases": purchases, "p_spend": purchases * per_order})
    cal = calibration_totals(tx, as_of)
    actual = holdout_actuals(tx, as_of, end)
    frame = pred.merge(cal, on=KEY, how="left").merge(actual, on=KEY, how="left")
    # Naive: each customer's own past daily rate since their first purchase, times the
    # holdout length (T + 1 days observed: the first purchase day counts).
    observed = data.set_index(KEY)["T"].reindex(frame[KEY]).to_numpy() + 1.0
    frame["b_purchases"] = frame["cal_purchases"] / observed * days
    frame["b_spend"] = frame["cal_spend"] / observed * days
    # A second, harder naive: the rate over the whole calibration window (every customer of
    # CDNOW is in it from its first quarter), i.e. "the next period repeats the last".
    window = float((as_of - date.fromisoformat(args.start)).days)
    frame["w_purchases"] = frame["cal_purchases"] / window * days
    frame["w_spend"] = frame["cal_spend"] / window * days
    result = {
        "data": "CDNOW master (lifetimes 0.11.3 wheel)",
        "customers": len(frame),
        "calibration_end": (as_of - timedelta(days=1)).isoformat(),
        "holdout": f"{as_of} .. {end - timedelta(days=1)} ({args.holdout_days} days)",
        "fit": {"method": fit.fit_method, "seconds": round(fit_seconds, 1), "version": fit.version},
        "purchases": {
            "model": measures(frame["p_purchases"], frame["purchases"]),
            "baseline": measures(frame["b_purchases"], frame["purchases"]),
            "baseline_window": measures(frame["w_purchases"], frame["purchases"]),
        },
        "spend": {
            "model": measures(frame["p_spend"], frame["spend"]),
            "baseline": measures(frame["b_spend"], frame["spend"]),
            "baseline_window": measures(frame["w_spend"], frame["spend"]),
        },
    }
    return result


def synthetic_transactions(spark: SparkSession, n: int, start: date, days: int) -> DataFrame:
    """Deterministic purchase histories: per customer a gamma-distributed daily rate, a
    dropout day, a gamma spend level; one row per purchase (most customers buy once or
    twice, a few often)."""
    base = spark.range(n).withColumnRenamed("id", "n")

    def u(name: str) -> F.Column:
        return (F.pmod(F.xxhash64(F.lit(name), F.col("n")), F.lit(1_000_003)) + 1) / 1_000_004

    rate = -F.log(u("r1")) * -F.log(u("r2")) * 0.01  # gamma(2)-like, mean 0.02 per day
    first = (u("first") * days * 0.5).cast("int")
    life = (-F.log(u("life")) * days * 0.6).cast("int")
    level = 20 + -F.log(u("level")) * 40
    buyers = base.select(
        F.concat(F.lit("c"), F.col("n").cast("string")).alias(KEY),
        F.col("n"),
        first.alias("first"),
        F.least(F.lit(days), first + life).alias("last"),
        rate.alias("rate"),
        level.alias("level"),
    )
    # Purchases after the first: exponential around rate x active days (heterogeneous, most
    # customers none or one), on days drawn uniformly in the active span.
    repeat = F.floor(-F.log(u("count")) * F.col("rate") * (F.col("last") - F.col("first")))
    k = F.explode(F.sequence(F.lit(0), repeat.cast("int"))).alias("i")
    cand = buyers.select(KEY, "n", "first", "last", "level", k)
    draw = F.pmod(F.xxhash64(F.lit("day"), F.col("n"), F.col("i")), F.lit(1_000_003)) / 1_000_003
    day = F.when(F.col("i") == 0, F.col("first")).otherwise(
        F.col("first") + F.floor(draw * (F.col("last") - F.col("first") + 1))
    )
    cand = cand.withColumn("day", day.cast("int"))
    ts = (F.lit(start.isoformat()).cast("timestamp").cast("long") + F.col("day") * 86_400).cast(
        "timestamp"
    )
    spend = F.col("level") * (
        0.5 + F.pmod(F.xxhash64(F.lit("amt"), F.col("n"), F.col("i")), F.lit(1000)) / 1000
    )
    return cand.select(KEY, ts.alias("order_time"), spend.alias("amount"))


def run_scale(spark: SparkSession, args: argparse.Namespace) -> dict[str, object]:
    start, days = date(2023, 1, 1), 730
    as_of = start + timedelta(days=days)
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    steps: dict[str, float] = {}
    t = time.perf_counter()
    synthetic_transactions(spark, args.customers, start, days).write.parquet(str(work / "tx"))
    steps["generate (untimed in the total)"] = round(time.perf_counter() - t, 1)
    tx = spark.read.parquet(str(work / "tx"))
    rows = tx.count()
    settings = ValueConfig(seed=args.seed)
    t = time.perf_counter()
    rfm_summary(tx, as_of).write.parquet(str(work / "rfm"))
    steps["rfm summary"] = round(time.perf_counter() - t, 1)
    rfm = spark.read.parquet(str(work / "rfm"))
    t = time.perf_counter()
    fit = fit_btyd(fit_sample(rfm, settings), settings)
    steps["fit (sample in the driver)"] = round(time.perf_counter() - t, 1)
    assert fit is not None
    t = time.perf_counter()
    score_value(rfm, fit).write.parquet(str(work / "value"))
    steps["score (executors)"] = round(time.perf_counter() - t, 1)
    timed = sum(v for k, v in steps.items() if not k.startswith("generate"))
    return {
        "customers": args.customers,
        "transactions": rows,
        "seconds": steps,
        "rfm + fit + score seconds": round(timed, 1),
        "fit sample customers": fit.sample_customers,
        "peak_rss_mb": {
            "driver_jvm": round(peak_rss_mb(jvm_pid(spark))),
            "python": round(peak_rss_mb(os.getpid())),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    hold = sub.add_parser("holdout", help="CLV vs a naive baseline on CDNOW's holdout period")
    hold.add_argument("--cache", default="/tmp/cdp-bench-value")
    hold.add_argument("--as-of", default="1997-10-01", help="first holdout day")
    hold.add_argument("--holdout-days", type=int, default=273)
    hold.add_argument("--start", default="1997-01-01", help="first day of the log")
    scale = sub.add_parser("scale", help="seconds and peak RSS at N customers")
    scale.add_argument("--customers", type=int, default=100_000)
    scale.add_argument("--work", default="/tmp/cdp-bench-value-scale")
    for p in (hold, scale):
        p.add_argument("--seed", type=int, default=42)
        p.add_argument("--driver-memory", default="4g")
    args = parser.parse_args()
    overrides: dict[str, object] = {
        "data_root": str(Path(getattr(args, "work", args.__dict__.get("cache", "/tmp"))) / "d"),
        "spark.ui_enabled": False,
        "spark.driver_memory": args.driver_memory,
        "log.level": "WARNING",
    }
    spark = build_session(load_config(env="local", overrides=overrides))
    result = run_holdout(spark, args) if args.mode == "holdout" else run_scale(spark, args)
    print(json.dumps(result, indent=2))
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
