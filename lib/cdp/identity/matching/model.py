"""Training and scoring a Fellegi-Sunter model with Splink: scoring on Spark, training on
Spark or (the default) in DuckDB on a bounded sample.

The session is passed in. Splink's similarity functions (Jaro-Winkler, Damerau-Levenshtein)
are Scala UDFs in a jar inside the ``splink`` wheel; the session factory puts it on the
classpath (``spark.jars``) and :class:`SparkAPI` registers them.

Training, seeded and deterministic for a given input:

1. the prior (probability that two random records match) from deterministic rules and their
   assumed recall;
2. u-probabilities from record pairs sampled at random (non-matches, nearly all);
3. m-probabilities by expectation maximisation over several blocking passes, each sampled
   down to ``em_max_pairs`` pairs by Splink's hash filter.

Training with ``training.engine: duckdb`` fits the same steps with Splink's DuckDB backend in
the driver, on a seeded sample of at most ``training.max_records`` records (collected as
Arrow: a bounded sample, never the table), then writes the fitted probabilities into the Spark
dialect's settings. Scoring generates the pairs of the blocking rules on Spark and returns
them as a Spark DataFrame; nothing is collected to the driver but the model's parameters.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp.config import ConfigError
from cdp.identity.matching.comparisons import (
    ELSE_LABEL,
    Comparison,
    block_columns,
    blocking_sql,
    blocking_variants,
    build_comparisons,
    prediction_rules,
    splink_settings,
)
from cdp.identity.matching.config import MatchingRules

log = logging.getLogger(__name__)

PAIR_COLUMNS = ("unique_id_l", "unique_id_r", "match_weight", "match_probability")


def splink_available() -> bool:
    try:
        import splink  # noqa: F401
    except ImportError:
        return False
    return True


def similarity_jar() -> str | None:
    """Path of the jar with Splink's Spark similarity functions (None without splink)."""
    if not splink_available():
        return None
    from splink.backends.spark import similarity_jar_location

    return str(similarity_jar_location())


@dataclass
class TrainedModel:
    """A trained model: Splink's settings with every m/u probability, and what it saw."""

    settings: dict[str, Any]
    fingerprint: str
    records: int
    em_sessions: list[dict[str, Any]] = field(default_factory=list)

    def else_m_probability(self, comparison: str) -> float | None:
        """The share of matching pairs the model puts in ``comparison``'s ELSE level (None
        where the comparison has no such fitted level)."""
        for comp in self.settings["comparisons"]:
            if comp.get("output_column_name") != comparison:
                continue
            for level in comp["comparison_levels"]:
                if level.get("label_for_charts") == ELSE_LABEL:
                    m = level.get("m_probability")
                    return float(m) if m is not None else None
        return None

    def match_weights(self) -> list[dict[str, Any]]:
        """``comparison, level, m, u, match_weight`` per level (the chart's data)."""
        import math

        rows = []
        for comp in self.settings["comparisons"]:
            for level in comp["comparison_levels"]:
                if level.get("is_null_level"):
                    continue
                m, u = level.get("m_probability"), level.get("u_probability")
                weight = math.log2(m / u) if m and u else None
                rows.append(
                    {
                        "comparison": comp["output_column_name"],
                        "level": level.get("label_for_charts"),
                        "m": m,
                        "u": u,
                        "match_weight": weight,
                    }
                )
        return rows


def _forenames(rules: MatchingRules) -> list[str]:
    return [str(c.field) for c in rules.comparisons if c.kind == "forename"]


def _db_api(spark: SparkSession) -> Any:
    from splink.backends.spark import SparkAPI

    # Parquet copies in the checkpoint directory (removed by :func:`drop_scratch`), not Spark
    # checkpoints: a checkpoint keeps its origin plan for size estimates, and the identity
    # stage's later joins then walked Splink's whole chain of SQL plans for minutes.
    return SparkAPI(spark_session=spark, break_lineage_method="parquet")


def drop_scratch(spark: SparkSession) -> None:
    """Remove the Parquet copies Splink wrote under the (local) checkpoint directory."""
    import shutil
    from pathlib import Path

    try:
        root = spark.sparkContext.getCheckpointDir()
    except Exception:
        return
    if not root or "://" in root.replace("file://", ""):
        return
    for path in Path(root.replace("file://", "")).glob("__splink__*"):
        shutil.rmtree(path, ignore_errors=True)


def _linker(spark: SparkSession, records: DataFrame, settings: dict[str, Any]) -> Any:
    from splink import Linker

    db_api = _db_api(spark)
    table = db_api.register(records)
    return Linker(table, settings, log_level=None)


def _ordered_pairs(records: DataFrame, rule: Sequence[str], forenames: Sequence[str]) -> DataFrame:
    """One row, ``pairs``: ordered record pairs (a, b), a != b, for which ``rule`` holds with a
    on the left."""
    left, right = block_columns(rule, forenames)
    present = F.lit(True)
    for c in {*left, *right}:
        present = present & F.expr(c).isNotNull()
    kept = records.where(present)
    keys = [f"k{i}" for i in range(len(left))]
    lhs = kept.groupBy(*[F.expr(c).alias(k) for c, k in zip(left, keys, strict=True)]).agg(
        F.count(F.lit(1)).alias("n_l")
    )
    rhs = kept.groupBy(*[F.expr(c).alias(k) for c, k in zip(right, keys, strict=True)]).agg(
        F.count(F.lit(1)).alias("n_r")
    )
    # A record meets itself when its left and right keys are equal (always, for a plain rule).
    # A field on both sides (a crosswise rule's plain part) equals itself on the kept records
    # (none null): comparing it would only make PySpark warn of a trivially true predicate.
    self_match = F.lit(True)
    for a, b in zip(left, right, strict=True):
        if a != b:
            self_match = self_match & (F.expr(a) == F.expr(b))
    return (
        lhs.join(rhs, keys)
        .agg(F.coalesce(F.sum(F.col("n_l") * F.col("n_r")), F.lit(0)).alias("_all"))
        .crossJoin(kept.agg(F.coalesce(F.sum(self_match.cast("long")), F.lit(0)).alias("_self")))
        .select((F.col("_all") - F.col("_self")).cast("long").alias("pairs"))
    )


def _rule_pairs(records: DataFrame, rule: Sequence[str], forenames: Sequence[str]) -> DataFrame:
    """One row, ``pairs``: the record pairs one blocking rule generates (with its mirror, for a
    crosswise rule): a pair counts once, whichever way round the rule holds."""
    left, right = block_columns(rule, forenames)
    if left == right:  # plain: n(n-1)/2 over the key groups
        present = F.lit(True)
        for c in left:
            present = present & F.expr(c).isNotNull()
        return (
            records.where(present)
            .groupBy(*[F.expr(c) for c in left])
            .agg(F.count(F.lit(1)).alias("n"))
            .agg(F.coalesce(F.sum(F.col("n") * (F.col("n") - 1) / 2), F.lit(0)).alias("pairs"))
            .select(F.col("pairs").cast("long").alias("pairs"))
        )
    variants = blocking_variants(rule)
    if len(variants) == 1:  # symmetric: each pair is counted both ways round
        return _ordered_pairs(records, rule, forenames).select(F.expr("pairs div 2 AS pairs"))
    # Either way round: the pairs it holds for as written, plus those it holds for only
    # mirrored (all mirrored pairs less those for which it holds both ways).
    both = list(dict.fromkeys(variants[0] + variants[1]))
    written = _ordered_pairs(records, rule, forenames).select(F.col("pairs").alias("_w"))
    twice = _ordered_pairs(records, both, forenames).select(F.col("pairs").alias("_b"))
    return written.crossJoin(twice).select(F.expr("_w - _b div 2 AS pairs"))


def count_blocked_pairs(records: DataFrame, rules: MatchingRules) -> list[int]:
    """Pairs each blocking rule generates on ``records`` (a crosswise rule with its mirror),
    computed by Spark before any pair is built: one query for every rule, since on a small
    company's records each query's planning costs more than its counting."""
    forenames = _forenames(rules)
    counts = [
        _rule_pairs(records, b, forenames).select(F.lit(i).alias("rule"), "pairs")
        for i, b in enumerate(rules.blocking)
    ]
    if not counts:
        return []
    rows = reduce(DataFrame.unionByName, counts).collect()
    by_rule = {int(r["rule"]): int(r["pairs"] or 0) for r in rows}
    return [by_rule[i] for i in range(len(counts))]


def check_blocking(records: DataFrame, rules: MatchingRules) -> list[int]:
    """Fail before any pair is built when a blocking rule generates more pairs than
    ``max_pairs`` (a cartesian blow-up: a rule on a field most records share)."""
    counts = count_blocked_pairs(records, rules)
    _fail_on_blowup(rules, counts)
    return counts


def plan_blocking(
    records: DataFrame, rules: MatchingRules
) -> tuple[MatchingRules, list[int], list[str]]:
    """The rules a run blocks with: every rule of ``blocking`` (failing before any pair is
    built on a blow-up, as :func:`check_blocking`) and each rule of ``broad_blocking`` that
    generates at most ``broad_max_pairs`` pairs on ``records``; the pairs of each rule kept;
    a note per broad rule left out. One counting query for both lists."""
    everything = rules.model_copy(update={"blocking": rules.blocking + rules.broad_blocking})
    counts = count_blocked_pairs(records, everything)
    narrow, broad = counts[: len(rules.blocking)], counts[len(rules.blocking) :]
    _fail_on_blowup(rules, narrow)
    kept, kept_counts, notes = [], [], []
    for fields, n in zip(rules.broad_blocking, broad, strict=True):
        if n <= rules.broad_max_pairs:
            kept.append(fields)
            kept_counts.append(n)
        else:
            notes.append(
                f"broad blocking rule {fields} left out: {n:,} pairs, more than "
                f"broad_max_pairs={rules.broad_max_pairs:,}"
            )
    planned = rules.model_copy(update={"blocking": rules.blocking + kept, "broad_blocking": []})
    return planned, narrow + kept_counts, notes


def with_prediction_blocking(model: TrainedModel, rules: MatchingRules) -> TrainedModel:
    """``model`` scoring the pairs of ``rules``' blocking (this run's plan): blocking shapes
    which pairs are compared, not the model, so a model reused from an earlier run follows
    the rules and the data size of this one."""
    blocking = splink_settings(rules, "spark")["blocking_rules_to_generate_predictions"]
    settings = dict(model.settings, blocking_rules_to_generate_predictions=blocking)
    return TrainedModel(settings, model.fingerprint, model.records, model.em_sessions)


def _fail_on_blowup(rules: MatchingRules, counts: Sequence[int]) -> None:
    for i, (fields, n) in enumerate(zip(rules.blocking, counts, strict=True)):
        if n > rules.max_pairs:
            raise ConfigError(
                f"{rules.origin or 'matching rules'}: blocking[{i}] {fields} would generate "
                f"{n:,} record pairs, more than max_pairs={rules.max_pairs:,}: block on more "
                "fields or raise max_pairs"
            )


def train(spark: SparkSession, records: DataFrame, rules: MatchingRules) -> TrainedModel:
    """Train the model of ``rules`` on ``records`` (see :func:`prepare.matching_input`), with
    the engine ``rules.training.engine`` names; the model scores on Spark either way."""
    if rules.training.engine == "duckdb":
        return _train_in_duckdb(records, rules)
    return _train_on_spark(spark, records, rules)


# Splink's training loggers, and what cdp says in their place (see _SplinkTrainingNotes).
SPLINK_TRAINING_LOGGERS = (
    "splink.internals.expectation_maximisation",
    "splink.internals.linker_components.training",
    "splink.internals.em_sampling",
)
_NOT_OBSERVED = re.compile(
    r"Level (?P<level>.+?) on comparison (?P<comparison>\S+) not observed in dataset, "
    r"unable to train (?P<which>[mu]) value"
)


class _SplinkTrainingNotes(logging.Filter):
    """Splink warns, in a multi-line WARNING per level, about every comparison level no EM
    pair fell into (common on small companies: a level "one digit off" of a phone needs such
    a pair to learn from), about `max_pairs` equal to its default even when that value is
    chosen (matching.yaml's `u_max_pairs`), and, on a small input, that the probe which sizes
    an EM pass's sample found no pair (the pass then trains on every blocked pair, which is
    what a small input needs). A run's console had a dozen such blocks. They are held back
    here; the untrained levels are kept and reported as one line (their probability is
    floored, see :func:`smoothed`). Every other Splink message passes."""

    def __init__(self) -> None:
        super().__init__()
        self.untrained: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        found = _NOT_OBSERVED.search(message)
        if found:
            level = f"{found['comparison']}: {found['level']} ({found['which']})"
            if level not in self.untrained:
                self.untrained.append(level)
            return False
        return not any(
            quiet in message
            for quiet in ("default value for `max_pairs`", "Probe returned zero blocked pairs")
        )


@contextmanager
def splink_training_notes() -> Iterator[_SplinkTrainingNotes]:
    """Hold back Splink's per-level training warnings while the block runs (see
    :class:`_SplinkTrainingNotes`); the filter's ``untrained`` lists the levels afterwards."""
    notes = _SplinkTrainingNotes()
    loggers = [logging.getLogger(n) for n in SPLINK_TRAINING_LOGGERS]
    for logger in loggers:
        logger.addFilter(notes)
    try:
        yield notes
    finally:
        for logger in loggers:
            logger.removeFilter(notes)


class NoTrainingPairs(Exception):
    """The records give the model nothing to learn from (the message says why; it names
    rules and counts, never a value)."""


def _underflow(exc: Exception) -> bool:
    """Splink refusing a level's probability that EM drove to 0.0 (a ValueError of its own)."""
    return isinstance(exc, ValueError) and "below the minimum allowed" in str(exc)


def _pass_failed(exc: Exception) -> bool:
    """An EM pass that cannot train (an underflow, or a block without pairs); any other error
    is a fault and propagates."""
    from splink.internals.exceptions import EMTrainingException

    return _underflow(exc) or isinstance(exc, EMTrainingException)


def _fit(
    linker: Any, rules: MatchingRules, n: int, present: dict[str, float]
) -> list[dict[str, Any]]:
    """The training steps on ``linker`` (any backend): prior, u by random sampling, EM, and
    the prior again from the fitted model (``training.estimate_prior_recall``); ``present``:
    the share of the training records carrying each compared field."""
    with splink_training_notes() as notes:
        sessions = _fit_steps(linker, rules, n)
        if rules.training.estimate_prior_recall and rules.training.prior_rules:
            recall = implied_prior_recall(linker.misc.save_model_to_json(), rules, present)
            if recall is not None:
                _estimate_prior(linker, rules, n, recall)
                log.info(
                    "matching: the prior rules find an estimated %.1f%% of matching pairs "
                    "(first guess %.0f%%)",
                    100 * recall,
                    100 * rules.training.prior_recall,
                )
    if notes.untrained:
        log.info(
            "matching: %d comparison levels had no training pairs (their probabilities are "
            "floored): %s",
            len(notes.untrained),
            "; ".join(notes.untrained),
        )
    return sessions


def _training_rule(rules: MatchingRules, fields: Sequence[str]) -> Any:
    """Splink's rule blocking on ``fields`` (a forename through its nickname root)."""
    from splink import block_on

    forenames = _forenames(rules)
    return block_on(*[f + "_canon" if f in forenames else f for f in fields])


def _estimate_prior(linker: Any, rules: MatchingRules, n: int, recall: float) -> None:
    training = rules.training
    linker.training.estimate_probability_two_random_records_match(
        [_training_rule(rules, r) for r in training.prior_rules], recall=recall
    )
    prior = linker._settings_obj._probability_two_random_records_match
    if not 0 < prior < 1:
        # Splink only warns, then EM takes the log of it (a math domain error): a few
        # records of which no two agree on every field of a prior rule (one surname
        # changed by marriage) give 0.
        raise NoTrainingPairs(
            f"the prior rules {training.prior_rules} find "
            + ("no pair" if prior <= 0 else "every pair")
            + f" among {n:,} records"
        )


# The levels of a comparison in which a pair agrees on the value a prior rule blocks on (a
# forename is blocked on through its nickname root).
_KEY_LEVELS = {"forename": ("exact", "nickname")}


def implied_prior_recall(
    fitted: dict[str, Any], rules: MatchingRules, present: dict[str, float]
) -> float | None:
    """The share of matching pairs the prior rules find, by the fitted model: per rule, the
    product over its fields of P(present on both records) x P(the exact level | match); the
    union of the rules as if independent. None where a rule's field has no exact level
    (a location's parts): the configured recall stands."""
    by_field = {str(c.field): c for c in rules.comparisons if c.field}
    m_of = {
        c["output_column_name"]: {
            lv.get("label_for_charts"): float(lv.get("m_probability") or 0.0)
            for lv in c["comparison_levels"]
            if not lv.get("is_null_level")
        }
        for c in fitted["comparisons"]
    }
    missed = 1.0
    for fields in rules.training.prior_rules:
        recall = 1.0
        for f in fields:
            spec = by_field.get(f)
            if spec is None or spec.name not in m_of or "exact" not in m_of[spec.name]:
                return None
            levels = _KEY_LEVELS.get(spec.kind, ("exact",))
            recall *= present.get(f, 0.0) ** 2 * sum(m_of[spec.name].get(lv, 0.0) for lv in levels)
        missed *= 1 - recall
    recall = 1 - missed
    # Bounded: a rule finds at least some matches, and not more than all of them.
    return min(max(recall, 0.01), 1.0)


def _fit_steps(linker: Any, rules: MatchingRules, n: int) -> list[dict[str, Any]]:
    training = rules.training
    started = time.monotonic()
    if training.prior_rules:
        _estimate_prior(linker, rules, n, training.prior_recall)
    # Every pair when there are fewer than the budget; one chunk: the early stop per level
    # saves nothing on data this size and costs a Spark job per chunk.
    linker.training.estimate_u_using_random_sampling(
        max_pairs=min(training.u_max_pairs, max(1.0, n * (n - 1) / 2)),
        seed=training.seed,
        num_chunks=1,
    )
    log.info("matching: prior and u-probabilities in %.1fs", time.monotonic() - started)
    sessions: list[dict[str, Any]] = []
    for fields in training.em_blocking:
        try:
            session = _em_pass(linker, _training_rule(rules, fields), training.em_max_pairs)
        except Exception as exc:
            # A pass that finds no pair, or whose levels still collapse after one iteration:
            # the other passes still train the model.
            if not _pass_failed(exc):
                raise
            reason = _em_failure_reason(exc)
            log.info("matching: EM pass blocked on %s left out: %s", list(fields), reason)
            sessions.append({"blocking": list(fields), "iterations": 0, "left_out": reason})
            continue
        sessions.append(
            {
                "blocking": list(fields),
                "iterations": len(getattr(session, "_core_model_settings_history", [])),
            }
        )
    if sessions and all("left_out" in s for s in sessions):
        raise NoTrainingPairs(
            f"every EM pass ({', '.join(str(s['blocking']) for s in sessions)}) failed: "
            + sessions[0]["left_out"]
        )
    return sessions


def _em_pass(linker: Any, rule: Any, max_pairs: float) -> Any:
    """One EM pass; where a level's m-probability shrinks geometrically to 0.0 (a level no
    matching pair falls into: Splink then refuses the value and stops the pass), the pass
    again with half the iterations, down to one, so that it ends on the last estimates before
    the underflow (levels below the floor are floored afterwards, :func:`smoothed`)."""
    settings = linker._settings_obj
    original = settings.training_settings  # a frozen dataclass: replaced, not changed
    try:
        while True:
            # Splink narrows the model's own settings to the pass's comparisons while it
            # trains and puts a trained copy back only when the pass ends: kept to undo.
            before = settings.core_model_settings.copy()
            try:
                return linker.training.estimate_parameters_using_expectation_maximisation(
                    rule, max_pairs=max_pairs
                )
            except Exception as exc:
                settings.core_model_settings = before
                iterations = settings.training_settings.max_iterations
                if not _underflow(exc) or iterations <= 1:
                    raise
                settings.training_settings = dataclasses.replace(
                    settings.training_settings, max_iterations=iterations // 2
                )
                log.info(
                    "matching: EM pass: a level's probability underflowed; again with %d "
                    "iterations",
                    settings.training_settings.max_iterations,
                )
    finally:
        settings.training_settings = original


def _em_failure_reason(exc: Exception) -> str:
    """Why an EM pass stopped, in words that name no value (Splink's own texts are long)."""
    if _underflow(exc):
        return "a level's probability fell to zero (every pair in it judged one class)"
    if "resulted in no record pairs" in str(exc):
        return "it blocks no pair of records"
    return type(exc).__name__


def _train_on_spark(spark: SparkSession, records: DataFrame, rules: MatchingRules) -> TrainedModel:
    linker = _linker(spark, records, splink_settings(rules, "spark"))
    fields = rules.fields()
    row = records.agg(F.count(F.lit(1)).alias("_n"), *[F.count(f).alias(f) for f in fields]).first()
    assert row is not None
    n = int(row["_n"])
    present = {f: int(row[f]) / n if n else 0.0 for f in fields}
    sessions = _fit(linker, rules, n, present)
    trained = smoothed(_u_of_non_matches(linker.misc.save_model_to_json(), rules))
    return TrainedModel(trained, rules.fingerprint(), n, sessions)


def training_sample(records: DataFrame, rules: MatchingRules, total: int) -> DataFrame:
    """At most about ``training.max_records`` of ``records``, chosen by a seeded hash of each
    record's id (the same records on every run over the same input), in id order."""
    limit = rules.training.max_records
    if total > limit:
        buckets = 1 << 20
        keep = int(buckets * limit / total)
        bucket = F.pmod(F.xxhash64("unique_id", F.lit(rules.training.seed)), F.lit(buckets))
        records = records.where(bucket < keep)
    return records.orderBy("unique_id")


def _train_in_duckdb(records: DataFrame, rules: MatchingRules) -> TrainedModel:
    """Fit on a bounded sample in DuckDB (in this process), then carry every fitted
    probability over to the Spark dialect's settings, comparison by comparison and level by
    level (the two dialects differ only in function names)."""
    import duckdb
    from splink import DuckDBAPI, Linker

    total = records.count()
    sample = training_sample(records, rules, total).toArrow()
    con = duckdb.connect()
    # One thread: DuckDB's seeded sampling repeats itself only single-threaded, and the model
    # must come out the same from the same records.
    con.execute("SET threads = 1")
    con.register("records_arrow", sample)
    con.execute("CREATE TABLE records AS SELECT * FROM records_arrow")
    con.unregister("records_arrow")
    try:
        db_api = DuckDBAPI(connection=con)
        linker = Linker(
            db_api.register("records"), splink_settings(rules, "duckdb"), log_level=None
        )
        rows = max(sample.num_rows, 1)
        present = {
            f: 1 - sample.column(f).null_count / rows
            for f in rules.fields()
            if f in sample.column_names
        }
        sessions = _fit(linker, rules, sample.num_rows, present)
        fitted = smoothed(_u_of_non_matches(linker.misc.save_model_to_json(), rules))
    finally:
        con.close()
    settings = spark_settings_of(fitted, rules)
    return TrainedModel(settings, rules.fingerprint(), sample.num_rows, sessions)


def spark_settings_of(fitted: dict[str, Any], rules: MatchingRules) -> dict[str, Any]:
    """``fitted`` (a model saved by another backend) in Spark's SQL: every level's condition
    and every blocking rule from :func:`splink_settings` for Spark, the rest as fitted."""
    spark = splink_settings(rules, "spark")
    out = dict(fitted, sql_dialect="spark")
    out.pop("linker_uid", None)  # a random name per Linker: not part of the model
    out["blocking_rules_to_generate_predictions"] = spark["blocking_rules_to_generate_predictions"]
    comparisons = []
    for theirs, ours in zip(fitted["comparisons"], spark["comparisons"], strict=True):
        if theirs["output_column_name"] != ours["output_column_name"]:
            raise ValueError(f"fitted comparison {theirs['output_column_name']!r} out of order")
        levels = []
        for level, spark_level in zip(
            theirs["comparison_levels"], ours["comparison_levels"], strict=True
        ):
            if level.get("label_for_charts") != spark_level.get("label_for_charts"):
                raise ValueError(f"fitted level {level.get('label_for_charts')!r} out of order")
            levels.append(dict(level, sql_condition=spark_level["sql_condition"]))
        comparisons.append(dict(theirs, comparison_levels=levels))
    out["comparisons"] = comparisons
    return out


# A level no training pair fell into: EM marks its m (or u) "not observed", and Splink's saved
# model leaves the probability out, so a model read back (every scoring run: the model is
# stored as settings) scores that level with Splink's defaults, spread evenly over the
# comparison's levels whatever the data said (birth dates "one character off" then counted
# +4 bits for a pair on a 300-person demo; a differing id number -5 bits where the data
# never showed a true pair with two ids). An EM estimate of 0 gives a weight of minus infinity
# instead (Splink caps it near -700): one similar surname would veto a pair that agrees on
# everything else. Both cases get the floor: such a level's weight is finite, and strongly
# negative where the data never showed it among true pairs.
PROBABILITY_FLOOR = 1e-4


def _u_of_non_matches(settings: dict[str, Any], rules: MatchingRules) -> dict[str, Any]:
    """``settings`` with the matches taken out of each random-sampling u where
    ``training.u_without_matches`` is on (see :func:`u_without_matches`)."""
    return u_without_matches(settings) if rules.training.u_without_matches else settings


def u_without_matches(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with each non-null level's u-probability estimated among non-matches:
    random pairs hold matches in the share ``prior``, so the sampled u is ``prior x m +
    (1 - prior) x u``; solved for u (an m training never observed counts as 0), at least
    :data:`PROBABILITY_FLOOR`, and rescaled so that the comparison's sampled u's keep their
    sum. A level random sampling never observed keeps no u (:func:`smoothed` floors it)."""
    prior = float(settings.get("probability_two_random_records_match") or 0.0)
    if not 0 < prior < 1:
        return settings
    for comp in settings.get("comparisons", []):
        levels = [
            lv
            for lv in comp.get("comparison_levels", [])
            if not lv.get("is_null_level") and isinstance(lv.get("u_probability"), (int, float))
        ]
        if not levels:
            continue
        before = sum(float(lv["u_probability"]) for lv in levels)
        after = []
        for lv in levels:
            m = lv.get("m_probability")
            m = float(m) if isinstance(m, (int, float)) else 0.0
            after.append(
                max((float(lv["u_probability"]) - prior * m) / (1 - prior), PROBABILITY_FLOOR)
            )
        scale = before / sum(after)
        for lv, u in zip(levels, after, strict=True):
            lv["u_probability"] = u * scale
    return settings


def smoothed(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with every m and u probability of a non-null level at least
    :data:`PROBABILITY_FLOOR`, levels training never observed included (see above)."""
    for comp in settings.get("comparisons", []):
        for level in comp.get("comparison_levels", []):
            if level.get("is_null_level"):
                continue
            for key in ("m_probability", "u_probability"):
                value = level.get(key)
                known = isinstance(value, (int, float))
                level[key] = max(float(value), PROBABILITY_FLOOR) if known else PROBABILITY_FLOOR
    return settings


# Splink's scoring query (every comparison's levels, weights and the probability in one
# projection) compiles to a Java method past the JVM's 64 KB limit, and Spark runs that stage
# interpreted instead (spark.sql.codegen.fallback): the right result, but the compiler's stack
# trace is logged at ERROR and the whole plan at WARN, several hundred lines on the console of
# every identity run. These loggers are turned off for the scoring call only; the compile
# happens in the driver, where these loggers live, even on a cluster.
CODEGEN_FALLBACK_LOGGERS = (
    "org.apache.spark.sql.catalyst.expressions.codegen.CodeGenerator",
    "org.apache.spark.sql.execution.WholeStageCodegenExec",
    # Splink writes its intermediate tables as Parquet folders named `__splink__...` and reads
    # them back; Spark takes a name starting with "_" for a hidden path and warns "All paths
    # were ignored" (with the path) for each, although it reads the folder all the same.
    "org.apache.spark.sql.execution.datasources.DataSource",
)


@contextmanager
def quiet_codegen_fallback(spark: SparkSession) -> Iterator[None]:
    """Silence the codegen fallback's log lines and Splink's hidden-path warnings (see above)
    while the block runs; their levels are restored afterwards. Does nothing where the JVM's
    log4j is out of reach (Spark Connect)."""
    try:
        jvm: Any = spark.sparkContext._jvm
        log4j = jvm.org.apache.logging.log4j
        configurator = log4j.core.config.Configurator
        before = {n: log4j.LogManager.getLogger(n).getLevel() for n in CODEGEN_FALLBACK_LOGGERS}
        for name in CODEGEN_FALLBACK_LOGGERS:
            configurator.setLevel(name, log4j.Level.OFF)
    except Exception:  # Spark Connect (no SparkContext) or another logging backend
        before = {}
    try:
        yield
    finally:
        for name, level in before.items():
            configurator.setLevel(name, level)


def score(
    spark: SparkSession, records: DataFrame, model: TrainedModel, threshold: float
) -> DataFrame:
    """Pairs of the blocking rules with ``match_probability >= threshold``:
    ``unique_id_l, unique_id_r, match_weight, match_probability, mw_<comparison>...``
    (each comparison's match weight), ``unique_id_l < unique_id_r``."""
    # Each comparison's weight (mw_*) explains a pair; Splink keeps it on request only.
    settings = dict(model.settings, retain_intermediate_calculation_columns=True)
    linker = _linker(spark, records, settings)
    with quiet_codegen_fallback(spark):
        predicted = linker.inference.predict(threshold_match_probability=threshold)
    df = predicted.as_spark_dataframe()
    names = [c["output_column_name"] for c in model.settings["comparisons"]]
    lo = F.least("unique_id_l", "unique_id_r")
    hi = F.greatest("unique_id_l", "unique_id_r")
    return df.select(
        lo.alias("unique_id_l"),
        hi.alias("unique_id_r"),
        F.col("match_weight").cast("double").alias("match_weight"),
        F.col("match_probability").cast("double").alias("match_probability"),
        *[F.col(f"mw_{n}").cast("double").alias(f"mw_{n}") for n in names],
    )


def level_weights(model: TrainedModel) -> dict[str, list[tuple[str, float]]]:
    """Comparison -> (level label, match weight) of each level (null level: 0)."""
    import math

    out: dict[str, list[tuple[str, float]]] = {}
    for comp in model.settings["comparisons"]:
        levels = []
        for level in comp["comparison_levels"]:
            label = str(level.get("label_for_charts"))
            if level.get("is_null_level"):
                levels.append((label, 0.0))
                continue
            m, u = level.get("m_probability"), level.get("u_probability")
            if m and u:
                levels.append((label, math.log2(m / u)))
        out[comp["output_column_name"]] = levels
    return out


def explain(model: TrainedModel) -> Any:
    """Column ``weights`` (comparison -> its match weight, term frequency included) of a
    scored pair (:func:`score`'s ``mw_*`` columns)."""
    parts: list[Any] = []
    for comp in model.settings["comparisons"]:
        name = comp["output_column_name"]
        parts += [F.lit(name), F.round(F.col(f"mw_{name}"), 3)]
    return F.create_map(*parts)


def levels_of(pairs: DataFrame, records: DataFrame, model: TrainedModel) -> DataFrame:
    """``pairs`` (``unique_id_l, unique_id_r``) with ``levels``: comparison -> the label of
    the level the pair falls in, evaluated from the model's own SQL conditions on the pair's
    two records (exact, where matching a level by its weight could not tell two levels of
    equal weight apart). Meant for the few pairs kept (linked, review), not all scored."""
    value_cols = [c for c in records.columns if c not in ("unique_id", "member_key")]
    left = records.select(
        F.col("unique_id").alias("unique_id_l"), *[F.col(c).alias(f"{c}_l") for c in value_cols]
    )
    right = records.select(
        F.col("unique_id").alias("unique_id_r"), *[F.col(c).alias(f"{c}_r") for c in value_cols]
    )
    parts: list[Any] = []
    for comp in model.settings["comparisons"]:
        whens = []
        for level in comp["comparison_levels"]:
            sql = level["sql_condition"]
            label = str(level.get("label_for_charts")).replace("'", "")
            if sql.strip().upper() == "ELSE":
                continue
            whens.append(f"WHEN {sql} THEN '{label}'")
        parts += [
            F.lit(comp["output_column_name"]),
            F.expr(f"CASE {' '.join(whens)} ELSE '{ELSE_LABEL}' END"),
        ]
    joined = pairs.join(left, "unique_id_l").join(right, "unique_id_r")
    return joined.select(*pairs.columns, F.create_map(*parts).alias("levels"))


def comparisons_of(rules: MatchingRules) -> list[Comparison]:
    return build_comparisons(rules)


def blocking_rules_sql(rules: MatchingRules) -> list[str]:
    return [blocking_sql(b, _forenames(rules)) for b in prediction_rules(rules)]
