"""The ``features``, ``train``, ``score`` (and on-demand ``backtest``) stages.

Dates (``--as-of``); every default comes from the data, not the clock, so reruns on the same
data are reproducible. ``data end`` is the date of the newest transaction or event in silver:

* ``features``: ``as_of`` or data end + 1 day (features of "now");
* ``train``: ``as_of`` or data end + 1 - ``horizon_days`` (the latest date whose label horizon
  the data covers; a later ``as_of`` is refused while ``labels.require_complete_horizon``);
* ``score``: ``as_of`` or the newest ``as_of`` in gold/customer_features (else data end + 1);
* ``backtest``: scores at ``as_of`` (default like ``train``) with a model trained at
  ``as_of - backtest.train_offset_days`` (default ``horizon_days``), evaluated against what
  happened in the horizon after ``as_of``; the model is logged to MLflow but not registered.

``train`` and ``score`` use the features already in gold/customer_features for their
``as_of``, and build (and store) them when that partition is missing.

Select one model with ``--model NAME`` (``--set models.only=NAME``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DateType,
    DoubleType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from cdp import tables as T
from cdp.models import registry as R
from cdp.models.features import AS_OF, KEY, build_features
from cdp.models.labels import LABEL, build_labels, labelled, population
from cdp.models.score import raw_scores, score_rows
from cdp.models.settings import ModelsConfig, ModelSpec
from cdp.models.train import (
    Evaluation,
    best,
    cap_rows,
    evaluate,
    feature_columns,
    heuristic_score,
    importances,
    metric_of,
    non_empty,
    promotes,
    quantile_thresholds,
    search,
    split_customers,
    with_score,
)
from cdp.runlog import utcnow
from cdp.stage import StageContext
from cdp.storage.base import CommitResult

FEATURES_TABLE = T.CUSTOMER_FEATURES.name
SCORES_TABLE = T.PROPENSITY_SCORES.name
BACKTESTS_TABLE = T.MODEL_BACKTESTS.name
INPUT_TABLES: dict[str, str] = {
    "transactions": T.TRANSACTIONS.name,
    "events": T.EVENTS.name,
    "consents": T.CONSENTS.name,
    "persons": T.PERSON_RECORDS.name,
    "identity_map": T.IDENTITY_MAP.name,
    "identifiers": T.IDENTITY_IDENTIFIERS.name,
}
BACKTEST_SCHEMA = StructType(
    [
        StructField("model_name", StringType()),
        StructField("train_as_of", DateType()),
        StructField("score_as_of", DateType()),
        StructField("customers", LongType()),
        StructField("roc_auc", DoubleType()),
        StructField("pr_auc", DoubleType()),
        StructField("lift_top_decile", DoubleType()),
        StructField("heuristic_roc_auc", DoubleType()),
        StructField("heuristic_pr_auc", DoubleType()),
        StructField("mlflow_run_id", StringType()),
        StructField("run_id", StringType()),
        StructField("created_at", TimestampType()),
    ]
)


def _scalar(df: DataFrame) -> Any:
    """The single value of a one-row, one-column aggregate."""
    row = df.first()
    return None if row is None else row[0]


def _settings(ctx: StageContext) -> ModelsConfig:
    return ctx.config.models


@dataclass
class Inputs:
    """The input tables, each pinned at the version read (logged as lineage)."""

    frames: dict[str, DataFrame]
    versions: dict[str, int]

    def data_end(self) -> date:
        """The date of the newest transaction or event."""
        latest = [
            _scalar(self.frames["transactions"].agg(F.max("order_time"))),
            _scalar(self.frames["events"].agg(F.max("event_time"))),
        ]
        found = [t for t in latest if t is not None]
        if not found:
            raise ValueError(f"{T.TRANSACTIONS.name} and {T.EVENTS.name} hold no dated rows")
        return max(found).date()  # type: ignore[no-any-return]


def read_inputs(ctx: StageContext) -> Inputs:
    frames, versions = {}, {}
    for key, table in INPUT_TABLES.items():
        if not ctx.store.exists(table):
            raise ValueError(
                f"input table {table} does not exist yet (run the stage that writes it)"
            )
        version = ctx.store.version(table)
        assert version is not None
        frames[key] = ctx.store.read(table, version=version)
        versions[table] = version
    return Inputs(frames, versions)


def compute_features(inputs: Inputs, as_of: date, settings: ModelsConfig) -> DataFrame:
    f = inputs.frames
    return build_features(
        transactions=f["transactions"],
        events=f["events"],
        consents=f["consents"],
        persons=f["persons"],
        identity_map=f["identity_map"],
        identifiers=f["identifiers"],
        as_of=as_of,
        settings=settings,
    )


def replace_rows(ctx: StageContext, table: str, df: DataFrame, predicate: str) -> CommitResult:
    """Replace the rows matching ``predicate`` (one as_of, one model) with ``df`` in one
    commit: a rerun replaces, never duplicates, and a reader never sees the slice missing.

    The tables are not partitioned: ``overwrite(replace_partitions=True)`` on DATE partitions
    does not work with the delta-rs backend (it compares typed partition values of existing
    files with text ones of new files), while each run appending its own files keeps the
    replace cheap (only the previous files of that slice are rewritten).
    """
    return ctx.store.replace_where(table, df, predicate)


def write_features(ctx: StageContext, inputs: Inputs, as_of: date) -> int:
    """Build the features at ``as_of`` and replace that partition; return the row count."""
    df = compute_features(inputs, as_of, _settings(ctx))
    result = replace_rows(ctx, FEATURES_TABLE, df, f"{AS_OF} = DATE'{as_of.isoformat()}'")
    rows = result.rows_written
    ctx.run.wrote(FEATURES_TABLE, rows)
    ctx.progress(f"{FEATURES_TABLE}: {rows:,} customers at as_of {as_of}")
    return rows


def features_at(ctx: StageContext, inputs: Inputs, as_of: date) -> DataFrame:
    """gold/customer_features at ``as_of``, built first when the partition is missing."""

    def stored() -> DataFrame:
        return ctx.store.read(FEATURES_TABLE).where(
            F.col(AS_OF) == F.lit(as_of.isoformat()).cast("date")
        )

    if not ctx.store.exists(FEATURES_TABLE) or stored().limit(1).count() == 0:
        ctx.progress(f"no features at {as_of} yet: building them")
        write_features(ctx, inputs, as_of)
    return stored()


def run_features(ctx: StageContext) -> None:
    """The ``features`` stage: gold/customer_features at ``as_of`` (default data end + 1)."""
    inputs = read_inputs(ctx)
    as_of = ctx.as_of or inputs.data_end() + timedelta(days=1)
    ctx.run.metric("as_of", as_of.isoformat())
    write_features(ctx, inputs, as_of)


# ---------------------------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------------------------


def registry_for(ctx: StageContext) -> R.Registry:
    cfg = ctx.config
    return R.Registry(
        cfg.mlflow_tracking_uri,
        cfg.env,
        registry_uri=cfg.mlflow.registry_uri,
        artifact_root=str(_join(cfg.data_root_uri, "mlflow", "artifacts")),
    )


def _join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def default_train_as_of(inputs: Inputs, settings: ModelsConfig) -> date:
    return inputs.data_end() + timedelta(days=1 - settings.labels.horizon_days)


def check_horizon(inputs: Inputs, as_of: date, settings: ModelsConfig) -> None:
    """Refuse labels whose horizon the data does not cover (they would read 'no purchase')."""
    if not settings.labels.require_complete_horizon:
        return
    end = inputs.data_end()
    need = as_of + timedelta(days=settings.labels.horizon_days - 1)
    if end < need:
        latest = end + timedelta(days=1 - settings.labels.horizon_days)
        raise ValueError(
            f"as_of {as_of}: the {settings.labels.horizon_days}-day label horizon ends {need}, "
            f"but the data ends {end}; use --as-of {latest} or earlier "
            "(or set models.labels.require_complete_horizon=false)"
        )


@dataclass
class TrainOutcome:
    model_name: str
    as_of: date
    mlflow_run_id: str
    version: str | None
    alias: str | None
    model: Any
    holdout: Evaluation
    baseline_lr: Evaluation
    heuristic: Evaluation
    champion_before: str | None = None
    champion_holdout: Evaluation | None = None
    metrics: dict[str, float] = field(default_factory=dict)


def train_model(
    ctx: StageContext,
    spec: ModelSpec,
    as_of: date,
    inputs: Inputs,
    registry: R.Registry,
    *,
    register: bool = True,
    compare_champion: bool | None = None,
    kind: str | None = None,
) -> TrainOutcome:
    """Train, evaluate and log one model at ``as_of``; register it and move its aliases.

    ``compare_champion`` (default: ``register``) evaluates the current champion on the same
    holdout; ``kind`` names the run (tag ``cdp.kind``, default ``train`` or ``backtest``)."""
    compare = register if compare_champion is None else compare_champion
    run_kind = kind or ("train" if register else "backtest")
    settings = _settings(ctx)
    check_horizon(inputs, as_of, settings)
    say = ctx.progress
    t_start = time.perf_counter()
    features = features_at(ctx, inputs, as_of)
    labels_df = build_labels(
        transactions=inputs.frames["transactions"],
        identity_map=inputs.frames["identity_map"],
        as_of=as_of,
        labels=settings.labels,
    )
    data = labelled(features, labels_df, spec, settings.labels).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    try:
        split = split_customers(data, settings)
        counts = {
            r["part"]: (int(r["n"]), int(r["pos"] or 0))
            for r in split.train.select(F.lit("train").alias("part"), LABEL)
            .unionByName(split.validation.select(F.lit("validation").alias("part"), LABEL))
            .unionByName(split.holdout.select(F.lit("holdout").alias("part"), LABEL))
            .groupBy("part")
            .agg(F.count(F.lit(1)).alias("n"), F.sum(LABEL).alias("pos"))
            .collect()
        }
        for part in ("train", "validation", "holdout"):
            n, pos = counts.get(part, (0, 0))
            if n == 0 or pos in (0, n):
                raise ValueError(
                    f"{spec.name} at {as_of}: the {part} split has {n} customers and {pos} "
                    "positives; both classes are needed (more data or an earlier as_of)"
                )
        say(
            f"{spec.name}: {sum(n for n, _ in counts.values()):,} customers "
            + ", ".join(f"{p} {n:,} ({pos:,} positive)" for p, (n, pos) in sorted(counts.items()))
        )
        numeric, categorical = feature_columns(data, settings.categorical_features)
        train_df = cap_rows(
            split.train, counts["train"][0], settings.max_train_rows, settings.split_salt
        )
        kept = non_empty(train_df, numeric + categorical)
        numeric = [c for c in numeric if c in kept]
        categorical = [c for c in categorical if c in kept]
        t_search = time.perf_counter()
        trials = search(train_df, split.validation, numeric, categorical, settings, log=say)
        search_seconds = time.perf_counter() - t_search
        metric = settings.selection_metric
        chosen = best(trials, metric)
        lr = best(trials, metric, "lr")
        holdout = split.holdout
        chosen_scored = with_score(chosen.model.transform(holdout))
        chosen_eval = evaluate(chosen_scored, deciles=settings.calibration_bins)
        lr_eval = (
            chosen_eval
            if lr is chosen
            else evaluate(
                with_score(lr.model.transform(holdout)), deciles=settings.calibration_bins
            )
        )
        heur_eval = evaluate(holdout.transform(heuristic_score(spec.label)), probabilities=False)
        say(
            f"{spec.name}: holdout roc_auc {chosen_eval.roc_auc:.4f} pr_auc {chosen_eval.pr_auc:.4f} "
            f"({chosen.candidate.label}); LR {lr_eval.roc_auc:.4f}/{lr_eval.pr_auc:.4f}; "
            f"heuristic {heur_eval.roc_auc:.4f}/{heur_eval.pr_auc:.4f}"
        )
        # The current champion on the same holdout, so the comparison is like for like.
        champ = registry.champion(spec.name) if compare else None
        champ_eval: Evaluation | None = None
        champ_error: str | None = None
        if champ is not None:
            try:
                champ_model = registry.load(
                    f"models:/{R.registered_name(ctx.config.env, spec.name)}/{champ.version}"
                )
                champ_eval = evaluate(
                    with_score(champ_model.transform(holdout)), deciles=settings.calibration_bins
                )
            except Exception as exc:  # features changed shape: the champion cannot compete
                champ_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                say(
                    f"{spec.name}: champion v{champ.version} could not score the holdout: {champ_error}"
                )
        imp = importances(chosen.model, chosen_scored)
        metrics: dict[str, float] = {}
        metrics.update(chosen_eval.metrics("holdout_"))
        metrics.update(chosen.validation.metrics("validation_"))
        metrics.update(lr_eval.metrics("baseline_lr_holdout_"))
        metrics.update(heur_eval.metrics("heuristic_holdout_"))
        if champ_eval is not None:
            metrics.update(champ_eval.metrics("champion_holdout_"))
        metrics["search_seconds"] = search_seconds
        metrics["search_trials"] = float(len(trials))
        metrics["train_rows"] = float(counts["train"][0])
        params: dict[str, Any] = {
            "as_of": as_of.isoformat(),
            "label": spec.label,
            "population": spec.population,
            "horizon_days": settings.labels.horizon_days,
            "lookback_days": settings.labels.lookback_days,
            "estimator": chosen.candidate.kind,
            **{f"{chosen.candidate.kind}.{k}": v for k, v in chosen.candidate.params.items()},
            "selection_metric": metric,
            "holdout_fraction": settings.holdout_fraction,
            "validation_fraction": settings.validation_fraction,
            "max_train_rows": settings.max_train_rows,
            "time_budget_seconds": settings.search.time_budget_seconds,
            "numeric_features": numeric,
            "categorical_features": categorical,
            "search": [
                {
                    "candidate": t.candidate.label,
                    "validation_roc_auc": round(t.validation.roc_auc, 5),
                    "validation_pr_auc": round(t.validation.pr_auc, 5),
                    "seconds": round(t.seconds, 1),
                }
                for t in trials
            ],
        }
        tags = {
            "cdp.run_id": ctx.run.run_id,
            "cdp.env": ctx.config.env,
            "cdp.kind": run_kind,
            "cdp.model_name": spec.name,
            "cdp.as_of": as_of.isoformat(),
            "cdp.git_commit": ctx.config.git_commit or R.git_commit() or "unknown",
            **{f"cdp.table_version.{t}": str(v) for t, v in inputs.versions.items()},
            f"cdp.table_version.{FEATURES_TABLE}": str(ctx.store.version(FEATURES_TABLE)),
        }
        if champ_error:
            tags["cdp.champion_error"] = champ_error
        inputs_cols = numeric + categorical
        example = holdout.select(*inputs_cols).limit(5)
        input_pdf: Any = example.toPandas()
        # Integer columns in a signature cannot carry missing values: declare them double
        # (the Imputer takes any numeric type).
        for col in numeric:
            if str(input_pdf[col].dtype).startswith(("int", "Int")):
                input_pdf[col] = input_pdf[col].astype("float64")
        output: Any = chosen.model.transform(example).select("prediction").toPandas()
        output = output["prediction"]
        figures = R.charts(
            importances=imp,
            roc={
                "model": chosen_eval.roc_curve,
                "logistic regression": lr_eval.roc_curve,
                "heuristic": heur_eval.roc_curve,
            },
            lift={
                "model": chosen_eval.lift_curve,
                "logistic regression": lr_eval.lift_curve,
                "heuristic": heur_eval.lift_curve,
            },
            calibration=chosen_eval.calibration,
            title=spec.name,
        )
        logged = registry.log_run(
            model_name=spec.name,
            run_name=f"{run_kind}-{spec.name}-{as_of}",
            model=chosen.model,
            params=params,
            metrics=metrics,
            tags=tags,
            figures=figures,
            json_artifacts={
                "calibration": chosen_eval.calibration,
                "feature_importance": [{"feature": n, "importance": v} for n, v in imp],
                "heuristic_calibration": heur_eval.calibration,
            },
            input_example=input_pdf,
            output_example=output,
            register=register,
        )
        alias: str | None = None
        if register and logged.version is not None:
            new_value = metric_of(chosen_eval, metric)
            beats = promotes(
                new_value,
                None if champ_eval is None else metric_of(champ_eval, metric),
                settings.min_improvement,
            )
            alias = R.CHAMPION if beats else R.CHALLENGER
            registry.set_alias(spec.name, alias, logged.version)
            registry.tag_version(
                spec.name,
                logged.version,
                {
                    f"holdout_{metric}": f"{new_value:.6f}",
                    "as_of": as_of.isoformat(),
                    "cdp.run_id": ctx.run.run_id,
                },
            )
            say(
                f"{spec.name}: registered version {logged.version} as {alias} "
                f"(holdout {metric} {new_value:.4f}"
                + (
                    f" vs champion v{champ.version} {metric_of(champ_eval, metric):.4f})"
                    if champ and champ_eval
                    else ")"
                )
            )
        for k in (
            "holdout_roc_auc",
            "holdout_pr_auc",
            "heuristic_holdout_roc_auc",
            "heuristic_holdout_pr_auc",
        ):
            ctx.run.metric(f"{spec.name}.{k}", round(metrics[k], 5))
        ctx.run.metric(f"{spec.name}.mlflow_run_id", logged.run_id)
        if logged.version:
            ctx.run.metric(f"{spec.name}.version", logged.version)
            ctx.run.metric(f"{spec.name}.alias", alias)
        ctx.run.metric(f"{spec.name}.train_seconds", round(time.perf_counter() - t_start, 1))
        return TrainOutcome(
            model_name=spec.name,
            as_of=as_of,
            mlflow_run_id=logged.run_id,
            version=logged.version,
            alias=alias,
            model=chosen.model,
            holdout=chosen_eval,
            baseline_lr=lr_eval,
            heuristic=heur_eval,
            champion_before=champ.version if champ else None,
            champion_holdout=champ_eval,
            metrics=metrics,
        )
    finally:
        data.unpersist()


def run_train(ctx: StageContext) -> None:
    """The ``train`` stage: every selected model at ``as_of`` (default: the latest date whose
    label horizon the data covers)."""
    settings = _settings(ctx)
    inputs = read_inputs(ctx)
    as_of = ctx.as_of or default_train_as_of(inputs, settings)
    ctx.run.metric("as_of", as_of.isoformat())
    registry = registry_for(ctx)
    for spec in settings.selected():
        train_model(ctx, spec, as_of, inputs, registry)


def train_candidate(
    ctx: StageContext,
    model_name: str,
    *,
    as_of: date | None = None,
    time_budget_seconds: float | None = None,
) -> TrainOutcome:
    """Train one candidate of ``model_name`` as the ``train`` stage would (same features,
    labels, split, search and evaluation), log it to MLflow **without registering it**, and
    evaluate the current champion on the same holdout (``champion_holdout``, None when there
    is no champion). No alias moves: for notebooks and experiments.

    ``as_of`` defaults like the stage's; ``time_budget_seconds`` overrides the search budget
    (the first logistic regression and the first GBT always run).
    """
    settings = _settings(ctx)
    specs = {m.name: m for m in settings.models}
    if model_name not in specs:
        raise ValueError(f"unknown model {model_name!r}; declared: {sorted(specs)}")
    if time_budget_seconds is not None:
        config = ctx.config.model_copy(deep=True)
        config.models.search.time_budget_seconds = time_budget_seconds
        ctx = replace(ctx, config=config)
        settings = _settings(ctx)
    inputs = read_inputs(ctx)
    day = as_of or default_train_as_of(inputs, settings)
    return train_model(
        ctx,
        specs[model_name],
        day,
        inputs,
        registry_for(ctx),
        register=False,
        compare_champion=True,
        kind="candidate",
    )


# ---------------------------------------------------------------------------------------------
# score
# ---------------------------------------------------------------------------------------------


def default_score_as_of(ctx: StageContext, inputs: Inputs) -> date:
    if ctx.store.exists(FEATURES_TABLE):
        latest = _scalar(ctx.store.read(FEATURES_TABLE).agg(F.max(AS_OF)))
        if latest is not None:
            return latest  # type: ignore[no-any-return]
    return inputs.data_end() + timedelta(days=1)


def score_model(
    ctx: StageContext, spec: ModelSpec, as_of: date, inputs: Inputs, registry: R.Registry
) -> int:
    """Score ``spec``'s population at ``as_of`` with its champion; replace the
    (as_of, model_name) partition of gold/propensity_scores. Returns rows written."""
    settings = _settings(ctx)
    champ = registry.champion(spec.name)
    if champ is None:
        raise ValueError(
            f"model {spec.name!r} has no champion in {R.registered_name(ctx.config.env, spec.name)}; "
            "run `cdp run train` first"
        )
    # Pin the version: the alias may move while we score.
    model = registry.load(f"models:/{R.registered_name(ctx.config.env, spec.name)}/{champ.version}")
    feats = population(features_at(ctx, inputs, as_of), spec, settings.labels)
    scored = raw_scores(model, feats).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        thresholds = quantile_thresholds(scored, 10)
        rows = score_rows(
            scored,
            thresholds=thresholds,
            model_name=spec.name,
            model_version=champ.version,
            as_of=as_of,
            run_id=ctx.run.run_id,
        )
        result = replace_rows(
            ctx,
            SCORES_TABLE,
            rows,
            f"as_of = DATE'{as_of.isoformat()}' AND model_name = '{spec.name}'",
        )
    finally:
        scored.unpersist()
    ctx.run.wrote(SCORES_TABLE, result.rows_written)
    ctx.run.metric(f"{spec.name}.scored_version", champ.version)
    ctx.progress(
        f"{spec.name}: scored {result.rows_written:,} customers at {as_of} with version {champ.version}"
    )
    return result.rows_written


def run_score(ctx: StageContext) -> None:
    """The ``score`` stage: every selected model's champion over the features at ``as_of``."""
    settings = _settings(ctx)
    inputs = read_inputs(ctx)
    as_of = ctx.as_of or default_score_as_of(ctx, inputs)
    ctx.run.metric("as_of", as_of.isoformat())
    registry = registry_for(ctx)
    for spec in settings.selected():
        score_model(ctx, spec, as_of, inputs, registry)


# ---------------------------------------------------------------------------------------------
# backtest
# ---------------------------------------------------------------------------------------------


@dataclass
class BacktestResult:
    model_name: str
    train_as_of: date
    score_as_of: date
    customers: int
    model: Evaluation
    heuristic: Evaluation
    mlflow_run_id: str


def backtest_model(
    ctx: StageContext,
    spec: ModelSpec,
    train_as_of: date,
    score_as_of: date,
    inputs: Inputs,
    registry: R.Registry,
) -> BacktestResult:
    """Train at ``train_as_of`` (not registered), score every customer at ``score_as_of``
    and evaluate against the outcomes in the horizon after it."""
    settings = _settings(ctx)
    if train_as_of >= score_as_of:
        raise ValueError(
            f"backtest: train as_of {train_as_of} must be before score as_of {score_as_of}"
        )
    check_horizon(inputs, score_as_of, settings)
    trained = train_model(ctx, spec, train_as_of, inputs, registry, register=False)
    labels_df = build_labels(
        transactions=inputs.frames["transactions"],
        identity_map=inputs.frames["identity_map"],
        as_of=score_as_of,
        labels=settings.labels,
    )
    data = labelled(features_at(ctx, inputs, score_as_of), labels_df, spec, settings.labels)
    data = data.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        model_eval = evaluate(
            with_score(trained.model.transform(data)), deciles=settings.calibration_bins
        )
        heur_eval = evaluate(data.transform(heuristic_score(spec.label)), probabilities=False)
    finally:
        data.unpersist()
    _log_oot(registry, trained.mlflow_run_id, score_as_of, model_eval, heur_eval)
    ctx.store.append_rows(
        BACKTESTS_TABLE,
        [
            (
                spec.name,
                train_as_of,
                score_as_of,
                model_eval.rows,
                model_eval.roc_auc,
                model_eval.pr_auc,
                model_eval.lift_top_decile,
                heur_eval.roc_auc,
                heur_eval.pr_auc,
                trained.mlflow_run_id,
                ctx.run.run_id,
                utcnow(),
            )
        ],
        BACKTEST_SCHEMA,
    )
    ctx.run.wrote(BACKTESTS_TABLE, 1)
    ctx.progress(
        f"{spec.name}: backtest trained {train_as_of}, scored {score_as_of}: roc_auc "
        f"{model_eval.roc_auc:.4f} pr_auc {model_eval.pr_auc:.4f} lift@10% "
        f"{model_eval.lift_top_decile:.2f} (heuristic {heur_eval.roc_auc:.4f}/{heur_eval.pr_auc:.4f})"
    )
    return BacktestResult(
        spec.name,
        train_as_of,
        score_as_of,
        model_eval.rows,
        model_eval,
        heur_eval,
        trained.mlflow_run_id,
    )


def _log_oot(
    registry: R.Registry, run_id: str, score_as_of: date, model_eval: Evaluation, heur: Evaluation
) -> None:
    registry.add_to_run(
        run_id,
        metrics={**model_eval.metrics("oot_"), **heur.metrics("heuristic_oot_")},
        tags={"cdp.score_as_of": score_as_of.isoformat()},
    )


def run_backtest(ctx: StageContext) -> None:
    """The on-demand ``backtest`` stage (see the module docstring for its dates)."""
    settings = _settings(ctx)
    inputs = read_inputs(ctx)
    score_as_of = ctx.as_of or default_train_as_of(inputs, settings)
    offset = settings.backtest.train_offset_days or settings.labels.horizon_days
    train_as_of = score_as_of - timedelta(days=offset)
    registry = registry_for(ctx)
    for spec in settings.selected():
        backtest_model(ctx, spec, train_as_of, score_as_of, inputs, registry)


__all__ = [
    "KEY",
    "run_backtest",
    "run_features",
    "run_score",
    "run_train",
]
