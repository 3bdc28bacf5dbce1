"""The ``value`` stage: gold/customer_value at ``as_of``, the fitted model in MLflow.

``as_of``: the run's ``--as-of``, else the day after the newest transaction (the value of
"now", like the ``features`` stage); every purchase counts only strictly before it. The slice
of that ``as_of`` is replaced in one commit, so a rerun replaces rather than duplicates.

Steps: the RFM summary of every customer (Spark, :mod:`cdp.value.rfm`), persisted; the fit
on a bounded, seeded sample in the driver (:mod:`cdp.value.fit`); everyone scored on the
executors (:mod:`cdp.value.score`); one MLflow run in the experiment
``/cdp/<env>/customer_value`` with the fitted parameters as a JSON artifact
(``evaluation/btyd_params.json``: numbers only, no customer data), the sample sizes and the
table versions read. The rows carry ``model_version`` (``clv-<hash>`` of the fit), which the
MLflow run is tagged with (``cdp.model_version``).

Nothing to fit (no ``silver/transactions``, no purchase before ``as_of``, fewer than
``value.min_fit_customers`` buyers, a degenerate fit, or PyMC-Marketing not installed): the slice is written
empty, with the table's schema, and the run log says why (metric ``value.skipped``).
"""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta, timezone

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cdp import tables as T
from cdp.models.features import attributed_orders
from cdp.models.inputs import registry_for
from cdp.models.registry import git_commit
from cdp.optional_inputs import record_missing
from cdp.stage import StageContext
from cdp.value.fit import BtydFit, DegenerateFit, fit_btyd, fit_sample, library_available
from cdp.value.rfm import KEY, rfm_summary
from cdp.value.score import VALUE_COLUMNS, score_value

VALUE_TABLE = T.CUSTOMER_VALUE.name
TRANSACTIONS = T.TRANSACTIONS.name
IDENTITY_MAP = T.IDENTITY_MAP.name
EXPERIMENT = "customer_value"  # MLflow experiment /cdp/<env>/customer_value
VALUE_SCHEMA = (
    f"{KEY} string, as_of date, "
    + ", ".join(f"{c} double" for c in VALUE_COLUMNS)
    + ", model_version string"
)
SKIPPED_METRIC = "value.skipped"


def value_rows(scores: DataFrame, as_of: date, model_version: str) -> DataFrame:
    """Rows of gold/customer_value from :func:`cdp.value.score.score_value` output."""
    return scores.select(
        F.col(KEY),
        F.lit(as_of.isoformat()).cast("date").alias("as_of"),
        *[F.col(c) for c in VALUE_COLUMNS],
        F.lit(model_version).alias("model_version"),
    )


def _write(ctx: StageContext, df: DataFrame, as_of: date) -> int:
    result = ctx.store.replace_where(VALUE_TABLE, df, f"as_of = DATE'{as_of.isoformat()}'")
    ctx.run.wrote(VALUE_TABLE, result.rows_written)
    return result.rows_written


def _skip(ctx: StageContext, as_of: date, reason: str) -> None:
    """The slice written empty (the table exists with its schema) and the reason logged."""
    ctx.run.metric(SKIPPED_METRIC, reason)
    ctx.progress(f"{VALUE_TABLE}: no customer value at {as_of} ({reason}); written empty")
    _write(ctx, ctx.spark.createDataFrame([], VALUE_SCHEMA), as_of)


def _log_fit(
    ctx: StageContext,
    fit: BtydFit,
    as_of: date,
    versions: dict[str, int | None],
    customers: int,
) -> str:
    """One MLflow run of the fit (parameters, sizes, lineage); returns its run id."""
    settings = ctx.config.value
    logged = registry_for(ctx).log_run(
        model_name=EXPERIMENT,
        run_name=f"value-{as_of}",
        model=None,
        params={
            "as_of": as_of.isoformat(),
            "purchase_model": "bg_nbd",
            "spend_model": "gamma_gamma" if fit.spend is not None else None,
            "fit_method": fit.fit_method,
            "seed": fit.seed,
            "fit_sample_max": settings.fit_sample_max,
            "discount_rate_monthly": settings.discount_rate_monthly,
            "library": f"pymc-marketing {fit.library_version}",
            "model_version": fit.version,
        },
        metrics={
            "sample_customers": fit.sample_customers,
            "sample_repeat_customers": fit.sample_repeat_customers,
            "customers_scored": customers,
            "fit_seconds": fit.seconds,
        },
        tags={
            "cdp.run_id": ctx.run.run_id,
            "cdp.env": ctx.config.env,
            "cdp.kind": "value",
            "cdp.model_name": EXPERIMENT,
            "cdp.as_of": as_of.isoformat(),
            "cdp.model_version": fit.version,
            "cdp.git_commit": ctx.config.git_commit or git_commit() or "unknown",
            **{f"cdp.table_version.{t}": str(v) for t, v in versions.items()},
        },
        json_artifacts={"btyd_params": fit.to_json()},
        register=False,
    )
    return logged.run_id


def _default_as_of(transactions: DataFrame | None) -> date:
    """The day after the newest transaction (today UTC when there is none)."""
    latest = None
    if transactions is not None:
        latest = transactions.agg(F.max("order_time")).first()[0]  # type: ignore[index]
    if latest is None:
        return datetime.now(timezone.utc).date()
    return latest.date() + timedelta(days=1)  # type: ignore[no-any-return]


def run_value(ctx: StageContext) -> None:
    """The ``value`` stage (see the module docstring)."""
    settings = ctx.config.value
    store = ctx.store
    if not store.exists(IDENTITY_MAP):
        raise RuntimeError(f"{IDENTITY_MAP} does not exist: run the identity stage first")
    versions: dict[str, int | None] = {IDENTITY_MAP: store.version(IDENTITY_MAP)}
    transactions = None
    if store.exists(TRANSACTIONS):
        versions[TRANSACTIONS] = store.version(TRANSACTIONS)
        transactions = store.read(TRANSACTIONS, version=versions[TRANSACTIONS])
    else:
        record_missing(ctx, TRANSACTIONS, "no purchases: customer value is written empty")
    as_of = ctx.as_of or _default_as_of(transactions)
    ctx.run.metric("as_of", as_of.isoformat())
    if transactions is None:
        return _skip(ctx, as_of, f"{TRANSACTIONS} does not exist")
    if not library_available():
        return _skip(ctx, as_of, "pymc-marketing is not installed (pip install 'cdp-spark[clv]')")

    identity_map = store.read(IDENTITY_MAP, version=versions[IDENTITY_MAP])
    rfm = rfm_summary(attributed_orders(transactions, identity_map), as_of).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    try:
        t0 = time.perf_counter()
        sample = fit_sample(rfm, settings)
        ctx.run.metric("value.sample_customers", len(sample))
        try:
            fit = fit_btyd(sample, settings)
        except DegenerateFit as e:
            return _skip(ctx, as_of, str(e))
        if fit is None:
            return _skip(
                ctx,
                as_of,
                f"{len(sample)} customer(s) with a purchase before {as_of}, "
                f"fewer than value.min_fit_customers={settings.min_fit_customers}",
            )
        fit_seconds = time.perf_counter() - t0
        ctx.progress(
            f"BG/NBD{' + Gamma-Gamma' if fit.spend else ''} fitted ({fit.fit_method}) on "
            f"{fit.sample_customers:,} customers ({fit.sample_repeat_customers:,} repeat) "
            f"in {fit_seconds:.1f}s"
        )
        if fit.spend is None:
            ctx.progress(
                f"{fit.sample_repeat_customers} repeat customer(s) with a spend, fewer than "
                f"value.min_spend_customers={settings.min_spend_customers}: spend and CLV null"
            )
        t1 = time.perf_counter()
        scores = score_value(rfm, fit, settings.discount_rate_monthly)
        rows = _write(ctx, value_rows(scores, as_of, fit.version), as_of)
        score_seconds = time.perf_counter() - t1
    finally:
        rfm.unpersist()
    run_id = _log_fit(ctx, fit, as_of, versions, rows)  # type: ignore[arg-type]
    for key, value in {
        "value.customers": rows,
        "value.sample_repeat_customers": fit.sample_repeat_customers,
        "value.fit_seconds": round(fit_seconds, 2),
        "value.score_seconds": round(score_seconds, 2),
        "value.model_version": fit.version,
        "value.mlflow_run_id": run_id,
    }.items():
        ctx.run.metric(key, value)
    ctx.progress(f"{VALUE_TABLE}: {rows:,} customers at as_of {as_of} ({fit.version})")
    return None
