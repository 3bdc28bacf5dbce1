"""Model pipelines, the deterministic customer split, the search and the holdout evaluation.

Nothing here reads or writes tables or talks to MLflow; evaluation collects only small
aggregates (100 percentile buckets) to the driver.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import GBTClassifier, LogisticRegression
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.feature import (
    Imputer,
    OneHotEncoder,
    SQLTransformer,
    StringIndexer,
    VectorAssembler,
)
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import NumericType

from cdp.models.features import KEY, NON_FEATURE_COLUMNS
from cdp.models.labels import IN_POPULATION, LABEL
from cdp.models.settings import ModelsConfig, SearchConfig

SCORE = "score"
BUCKETS = 100  # percentile buckets of the score used for deciles, ROC and lift curves
_EPS = 1e-15
# The measure names of Evaluation.metrics (after its prefix), as MLflow and the run log show them.
ROC_AUC = "roc_auc"
PR_AUC = "pr_auc"
LOG_LOSS = "log_loss"
LIFT_TOP_DECILE = "lift_top_decile"


# -- columns and split ------------------------------------------------------------------------


def feature_columns(df: DataFrame, categorical: Sequence[str]) -> tuple[list[str], list[str]]:
    """(numeric, categorical) model inputs of a features frame, in a stable order."""
    skip = set(NON_FEATURE_COLUMNS) | {LABEL, SCORE}
    numeric, cats = [], []
    for f in df.schema.fields:
        if f.name in skip or f.name.startswith("_"):
            continue
        if f.name in categorical:
            cats.append(f.name)
        elif isinstance(f.dataType, NumericType):
            numeric.append(f.name)
    return sorted(numeric), sorted(cats)


def non_empty(df: DataFrame, columns: Sequence[str]) -> list[str]:
    """The ``columns`` with at least one non-null value (an imputer cannot fit an empty one)."""
    if not columns:
        return []
    row = df.agg(*[F.count(F.col(c)).alias(c) for c in columns]).first()
    return [c for c in columns if row is not None and row[c] > 0]


def with_bucket(salt: str) -> Callable[[DataFrame], DataFrame]:
    """``_bucket`` in [0, 1000): a hash of the customer id, the same on every run."""

    def transform(df: DataFrame) -> DataFrame:
        return df.withColumn("_bucket", F.pmod(F.xxhash64(F.lit(salt), F.col(KEY)), F.lit(1000)))

    return transform


@dataclass(frozen=True)
class Split:
    train: DataFrame
    validation: DataFrame
    holdout: DataFrame
    # The train part's customers of the model's population: the same as ``train`` unless the
    # model learns beyond its population (what a calibration to the population fits on).
    train_in_population: DataFrame | None = None

    @property
    def population_train(self) -> DataFrame:
        return self.train if self.train_in_population is None else self.train_in_population


def split_customers(df: DataFrame, settings: ModelsConfig) -> Split:
    """Holdout, validation and train customers by hash bucket; ``max_train_rows`` caps the
    train part with a deterministic (hash) sample."""
    b = df.transform(with_bucket(settings.split_salt))
    h = int(round(settings.holdout_fraction * 1000))
    v = h + int(round(settings.validation_fraction * (1000 - h)))
    holdout = b.where(F.col("_bucket") < h)
    validation = b.where((F.col("_bucket") >= h) & (F.col("_bucket") < v))
    train = b.where(F.col("_bucket") >= v)
    drop = ["_bucket", IN_POPULATION]
    if IN_POPULATION in df.columns:
        # A model that learns beyond its population (labels.labelled(training=True)): it
        # trains on every customer of its part and is measured on its population only.
        return Split(
            train.drop(*drop),
            validation.where(F.col(IN_POPULATION)).drop(*drop),
            holdout.where(F.col(IN_POPULATION)).drop(*drop),
            train.where(F.col(IN_POPULATION)).drop(*drop),
        )
    return Split(train.drop(*drop), validation.drop(*drop), holdout.drop(*drop))


def cap_rows(df: DataFrame, total: int, max_rows: int | None, salt: str) -> DataFrame:
    """At most about ``max_rows`` of ``total`` rows, chosen by customer hash."""
    if max_rows is None or total <= max_rows:
        return df
    keep = max_rows / total
    return df.where(
        F.pmod(F.xxhash64(F.lit(salt + ":cap"), F.col(KEY)), F.lit(1_000_000))
        < int(keep * 1_000_000)
    )


# -- pipelines --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    kind: str  # "gbt" | "lr"
    params: dict[str, Any]

    @property
    def label(self) -> str:
        inner = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.kind}({inner})"


def candidates(search: SearchConfig) -> list[Candidate]:
    """Search order: first LR, first GBT, then the other GBT, then the other LR settings."""
    gbts = [
        Candidate("gbt", {"maxDepth": d, "maxIter": n, "stepSize": s})
        for n in search.gbt_max_iter
        for d in search.gbt_max_depth
        for s in search.gbt_step_size
    ]
    lrs = [
        Candidate("lr", {"regParam": r, "elasticNetParam": e, "maxIter": search.lr_max_iter})
        for r in search.lr_reg_param
        for e in search.lr_elastic_net
    ]
    return lrs[:1] + gbts[:1] + gbts[1:] + lrs[1:]


def build_pipeline(
    numeric: Sequence[str], categorical: Sequence[str], candidate: Candidate, seed: int
) -> Pipeline:
    """Imputer (median) -> StringIndexer + OneHotEncoder -> VectorAssembler -> classifier.

    The saved model takes rows of gold/customer_features as they are (nulls included)."""
    stages: list[Any] = []
    inputs: list[str] = []
    if numeric:
        imputed = [f"{c}__imp" for c in numeric]
        stages.append(Imputer(inputCols=list(numeric), outputCols=imputed, strategy="median"))
        inputs += imputed
    if categorical:
        indexed = [f"{c}__idx" for c in categorical]
        encoded = [f"{c}__ohe" for c in categorical]
        stages.append(
            StringIndexer(
                inputCols=list(categorical),
                outputCols=indexed,
                handleInvalid="keep",
                stringOrderType="frequencyDesc",
            )
        )
        stages.append(OneHotEncoder(inputCols=indexed, outputCols=encoded, handleInvalid="keep"))
        inputs += encoded
    stages.append(VectorAssembler(inputCols=inputs, outputCol="features", handleInvalid="keep"))
    if candidate.kind == "gbt":
        stages.append(
            GBTClassifier(labelCol=LABEL, featuresCol="features", seed=seed, **candidate.params)
        )
    else:
        stages.append(
            LogisticRegression(labelCol=LABEL, featuresCol="features", **candidate.params)
        )
    return Pipeline(stages=stages)


def with_score(df: DataFrame) -> DataFrame:
    """``score``: the predicted probability of the positive class."""
    return df.withColumn(SCORE, vector_to_array(F.col("probability")).getItem(1))


# The feature columns the heuristic reads (the input example of its fallback model).
HEURISTIC_INPUTS = ("orders_365d", "recency_days")


def heuristic_sql(label_kind: str) -> str:
    """The recency/frequency rule as a SQL expression: one text for the evaluation
    (:func:`heuristic_score`) and for the fallback model (:func:`rank_pipeline`)."""
    rf = (
        "(log1p(coalesce(cast(orders_365d AS DOUBLE), 0D))"
        " - coalesce(cast(recency_days AS DOUBLE), 3650D) / 365D)"
    )
    return f"(-{rf})" if label_kind == "churn" else rf


def heuristic_score(label_kind: str) -> Callable[[DataFrame], DataFrame]:
    """A recency/frequency rule: more orders in the last year and a recent purchase buy more.

    ``log1p(orders_365d) - recency_days / 365`` (never bought: recency 10 years); for churn
    the opposite ranking. Only the order matters for AUC and lift.
    """

    def transform(df: DataFrame) -> DataFrame:
        return df.withColumn(SCORE, F.expr(heuristic_sql(label_kind)))

    return transform


def btyd_sql(label_kind: str, column: str) -> str:
    """BG/NBD alone as a SQL rank: the expected purchases over the label horizon (``column``,
    a BTYD feature fitted strictly before the features' ``as_of``); a customer without a
    purchase history expects none. For churn the opposite ranking, like the heuristic."""
    expected = f"coalesce(cast({column} AS DOUBLE), 0D)"
    return f"(-{expected})" if label_kind == "churn" else expected


def btyd_score(label_kind: str, column: str) -> Callable[[DataFrame], DataFrame]:
    """BG/NBD alone as a scorer (:func:`btyd_sql`); only the order matters for AUC and lift."""

    def transform(df: DataFrame) -> DataFrame:
        return df.withColumn(SCORE, F.expr(btyd_sql(label_kind, column)))

    return transform


RANK = "free_scorer_rank"


def rank_pipeline(rank_sql: str) -> Pipeline:
    """A free scorer as a model: its rank (a SQL expression over feature columns, such as
    :func:`heuristic_sql` or :func:`btyd_sql`) through a one-input logistic regression, which
    keeps the order (a positive slope) and turns it into a probability, so the score stage,
    the deciles and the audiences take it like any champion. A Spark pipeline of built-in
    stages: MLflow saves and loads it like the others."""
    return Pipeline(
        stages=[
            SQLTransformer(statement=f"SELECT *, {rank_sql} AS {RANK} FROM __THIS__"),
            VectorAssembler(inputCols=[RANK], outputCol="features"),
            LogisticRegression(labelCol=LABEL, featuresCol="features", maxIter=50),
        ]
    )


# -- evaluation -------------------------------------------------------------------------------


@dataclass
class Evaluation:
    rows: int
    positives: int
    roc_auc: float
    pr_auc: float
    log_loss: float | None
    lift_top_decile: float
    base_rate: float
    # per decile (1 = lowest scores .. 10 = highest): rows, mean predicted, observed rate
    calibration: list[dict[str, float]] = field(default_factory=list)
    # cumulative from the top score bucket: (fpr, tpr) and (fraction targeted, lift)
    roc_curve: list[tuple[float, float]] = field(default_factory=list)
    lift_curve: list[tuple[float, float]] = field(default_factory=list)

    def metrics(self, prefix: str = "") -> dict[str, float]:
        out = {
            prefix + ROC_AUC: self.roc_auc,
            prefix + PR_AUC: self.pr_auc,
            prefix + LIFT_TOP_DECILE: self.lift_top_decile,
            f"{prefix}base_rate": self.base_rate,
            f"{prefix}rows": float(self.rows),
        }
        if self.log_loss is not None:
            out[prefix + LOG_LOSS] = self.log_loss
        return out


def tie_key(score_col: str = SCORE) -> Any:
    """The score plus a tiny customer-hash jitter: deterministic order among equal scores."""
    jitter = F.pmod(F.xxhash64(F.lit("tie"), F.col(KEY)), F.lit(1_000_000)).cast("double") / 1e6
    return F.col(score_col).cast("double") + jitter * F.lit(1e-9)


def quantile_thresholds(df: DataFrame, n: int, score_col: str = SCORE) -> list[float]:
    """``n - 1`` approximate quantiles of the tie-broken score."""
    probs = [i / n for i in range(1, n)]
    return [
        float(x)
        for x in df.select(tie_key(score_col).alias("_k")).approxQuantile("_k", probs, 1e-4)
    ]


def bucket_of(thresholds: Sequence[float], score_col: str = SCORE) -> Any:
    """0-based bucket: how many thresholds the tie-broken score exceeds."""
    if not thresholds:
        return F.lit(0)
    arr = F.array(*[F.lit(float(t)) for t in thresholds])
    return F.size(F.filter(arr, lambda t: t < tie_key(score_col)))


def evaluate(df: DataFrame, *, probabilities: bool = True, deciles: int = 10) -> Evaluation:
    """Holdout metrics of ``df`` (``label``, ``score``): ROC-AUC and PR-AUC (Spark's
    evaluator), log loss (when scores are probabilities), top-decile lift, per-decile
    calibration and curve points from percentile buckets."""
    scored = df.select(
        KEY, F.col(LABEL).cast("double").alias(LABEL), F.col(SCORE).cast("double").alias(SCORE)
    ).persist()
    try:
        thresholds = quantile_thresholds(scored, BUCKETS)
        ll = -(
            F.col(LABEL) * F.log(F.greatest(F.lit(_EPS), F.col(SCORE)))
            + (1 - F.col(LABEL)) * F.log(F.greatest(F.lit(_EPS), 1 - F.col(SCORE)))
        )
        rows = (
            scored.withColumn("_b", bucket_of(thresholds))
            .groupBy("_b")
            .agg(
                F.count(F.lit(1)).alias("n"),
                F.sum(LABEL).alias("pos"),
                F.sum(SCORE).alias("s"),
                F.sum(ll).alias("ll"),
            )
            .collect()
        )
        ev = BinaryClassificationEvaluator(labelCol=LABEL, rawPredictionCol=SCORE)
        total = sum(int(r["n"]) for r in rows)
        positives = int(sum(float(r["pos"] or 0) for r in rows))
        if total == 0 or positives in (0, total):
            raise ValueError(
                f"cannot evaluate: {total} rows with {positives} positives (need both classes)"
            )
        roc = float(ev.evaluate(scored, {ev.metricName: "areaUnderROC"}))
        pr = float(ev.evaluate(scored, {ev.metricName: "areaUnderPR"}))
    finally:
        scored.unpersist()
    by_bucket = {int(r["_b"]): r for r in rows}
    base = positives / total
    # calibration per decile (1 = lowest .. deciles = highest)
    per = BUCKETS // deciles
    calibration = []
    for d in range(deciles):
        bs = [by_bucket[b] for b in range(d * per, (d + 1) * per) if b in by_bucket]
        n = sum(int(r["n"]) for r in bs)
        if n == 0:
            continue
        calibration.append(
            {
                "decile": float(d + 1),
                "rows": float(n),
                "mean_predicted": sum(float(r["s"]) for r in bs) / n,
                "observed_rate": sum(float(r["pos"]) for r in bs) / n,
            }
        )
    top = [c for c in calibration if c["decile"] == float(deciles)]
    lift = (top[0]["observed_rate"] / base) if top else float("nan")
    # curves from the highest bucket down
    roc_curve, lift_curve = [(0.0, 0.0)], []
    tp = fp = seen = 0
    negatives = total - positives
    for b in sorted(by_bucket, reverse=True):
        r = by_bucket[b]
        tp += int(float(r["pos"]))
        fp += int(r["n"]) - int(float(r["pos"]))
        seen += int(r["n"])
        roc_curve.append((fp / negatives, tp / positives))
        lift_curve.append((seen / total, (tp / seen) / base))
    log_loss = sum(float(r["ll"]) for r in rows) / total if probabilities else None
    return Evaluation(
        rows=total,
        positives=positives,
        roc_auc=roc,
        pr_auc=pr,
        log_loss=log_loss if log_loss is None or math.isfinite(log_loss) else None,
        lift_top_decile=lift,
        base_rate=base,
        calibration=calibration,
        roc_curve=roc_curve,
        lift_curve=lift_curve,
    )


def importances(model: PipelineModel, scored: DataFrame) -> list[tuple[str, float]]:
    """(input name, importance) of the final stage: GBT feature importances, or absolute LR
    coefficients; names from the assembler's vector metadata."""
    attrs = scored.schema["features"].metadata.get("ml_attr", {}).get("attrs", {})
    names: dict[int, str] = {}
    for group in attrs.values():
        for a in group:
            names[int(a["idx"])] = str(a["name"]).replace("__imp", "").replace("__ohe", "")
    last: Any = model.stages[-1]
    if hasattr(last, "featureImportances"):
        values = list(last.featureImportances.toArray())
    else:
        values = [abs(x) for x in last.coefficients.toArray()]
    pairs = [(names.get(i, f"f{i}"), float(v)) for i, v in enumerate(values)]
    return sorted(pairs, key=lambda p: -p[1])


@dataclass
class Trial:
    candidate: Candidate
    model: PipelineModel
    validation: Evaluation
    seconds: float


def drop_training_summaries(model: PipelineModel) -> PipelineModel:
    """Release the training summary of each fitted classifier stage.

    In Spark 4.1 a logistic-regression summary holds the (classic) SparkSession, whose
    ObservationManager is not serializable; the model is captured in the prediction closure,
    so any action on its predictions after the first fails with NotSerializableException. The
    summary is not used here (metrics come from the holdout), so it is dropped. ``setSummary``
    is package-private in Scala, which the JVM sees as public.
    """
    from pyspark import SparkContext

    sc = SparkContext._active_spark_context
    if sc is None:
        return model
    jvm = sc._jvm
    for stage in model.stages:
        java_obj = getattr(stage, "_java_obj", None)
        if java_obj is not None and hasattr(stage, "hasSummary") and stage.hasSummary:
            java_obj.setSummary(jvm.scala.Option.empty())  # type: ignore[union-attr]
    return model


def search(
    train: DataFrame,
    validation: DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    settings: ModelsConfig,
    log: Callable[[str], None] = lambda m: None,
) -> list[Trial]:
    """Fit candidates in order until the time budget is spent (the first LR and the first
    GBT always run), each evaluated on ``validation``."""
    budget = settings.search.time_budget_seconds
    started = time.perf_counter()
    trials: list[Trial] = []
    kinds_done: set[str] = set()
    for cand in candidates(settings.search):
        elapsed = time.perf_counter() - started
        if elapsed > budget and cand.kind in kinds_done:
            log(f"search: time budget {budget:.0f}s spent; skipping {cand.label}")
            continue
        t0 = time.perf_counter()
        model = drop_training_summaries(
            build_pipeline(numeric, categorical, cand, settings.search.seed).fit(train)
        )
        ev = evaluate(with_score(model.transform(validation)))
        trials.append(Trial(cand, model, ev, time.perf_counter() - t0))
        kinds_done.add(cand.kind)
        log(
            f"search: {cand.label} validation roc_auc={ev.roc_auc:.4f} pr_auc={ev.pr_auc:.4f} "
            f"({time.perf_counter() - t0:.1f}s)"
        )
    return trials


def metric_of(ev: Evaluation, name: str) -> float:
    return ev.roc_auc if name == "roc_auc" else ev.pr_auc


def best(trials: Sequence[Trial], metric: str, kind: str | None = None) -> Trial:
    pool = [t for t in trials if kind is None or t.candidate.kind == kind]
    return max(pool, key=lambda t: metric_of(t.validation, metric))


def promotes(new_value: float, champion_value: float | None, min_improvement: float) -> bool:
    """Whether a new version takes the ``champion`` alias: there is no (comparable) champion,
    or it beats the champion's holdout metric by more than ``min_improvement``."""
    return champion_value is None or new_value > champion_value + min_improvement
