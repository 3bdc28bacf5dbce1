"""Pure transformations behind the ``audiences`` stage: the frame that rules are evaluated on,
the evaluation itself, and the changes a new evaluation makes to ``gold/audience_membership``.

Membership is kept as *spells*: one row per (audience, customer, entered_at); ``exited_at`` is
null while the spell is open. An evaluation at ``as_of`` D compares the members it finds with
the spells open just before D:

* a member with no such spell enters (a new spell, ``entered_at = D``);
* an open spell whose customer is no longer a member exits (``exited_at = D``);
* everything else is unchanged, and is not rewritten.

Re-evaluating the same D must give the same table, even when the inputs changed in between:
spells that entered at D and are no longer members are deleted, and spells that exited at D
but are members again are reopened. Evaluations therefore only move forward: the stage refuses
a D earlier than one already applied (:func:`latest_applied`).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping, Sequence
from datetime import date

from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    DateType,
    StringType,
    StructField,
    StructType,
)

from cdp.audiences.spec import AudienceError, AudienceSpec, consent_column, model_prefix
from cdp.expressions import checked_expr, expected_analysis_errors, expression_problem

# The consent condition lives with the other consent semantics; it stays importable from here.
from cdp.privacy.consent import consent_granted

MEMBERSHIP_SCHEMA = StructType(
    [
        StructField("audience", StringType()),
        StructField("customer_id", StringType()),
        StructField("entered_at", DateType()),
        StructField("exited_at", DateType()),
        # The evaluation that last changed the row (not every evaluation rewrites every row).
        StructField("as_of", DateType()),
        StructField("run_id", StringType()),
    ]
)
MEMBERSHIP_KEYS = ("audience", "customer_id", "entered_at")
OP = "_op"  # insert | exit | reopen | delete, on the rows of a change set


def model_columns(model: str) -> dict[str, str]:
    """The rule columns a model contributes: kind (score, decile, model_version) -> name."""
    prefix = model_prefix(model)
    return {k: f"{prefix}_{k}" for k in ("score", "decile", "model_version")}


def scores_on(latest: Mapping[str, date]) -> Column:
    """The condition selecting each model's scores of its chosen date."""
    conds = [
        (F.col("model_name") == F.lit(model)) & (F.col("as_of") == F.lit(as_of))
        for model, as_of in latest.items()
    ]
    return functools.reduce(operator.or_, conds, F.lit(False))


def wide_scores(scores: DataFrame, latest: Mapping[str, date]) -> DataFrame:
    """One row per customer: ``<model>_score``, ``<model>_decile``, ``<model>_model_version``
    from each model's scores at ``latest[model]`` (its newest ``as_of`` on or before the
    audience date, chosen by the caller).

    ``scores`` follows the ``gold/propensity_scores`` contract. Should one date hold scores of
    several model versions for a customer (a champion re-scored the same day), the latest
    run wins, so a customer never appears twice.
    """
    if not latest:
        raise ValueError("wide_scores needs at least one model")
    chosen = scores_on(latest)
    newest_first = Window.partitionBy("customer_id", "model_name").orderBy(
        F.col("run_id").desc_nulls_last(), F.col("model_version").desc_nulls_last()
    )
    picked = (
        scores.where(chosen)
        .withColumn("_rank", F.row_number().over(newest_first))
        .where(F.col("_rank") == 1)
    )
    aggs: list[Column] = []
    for model in latest:
        names = model_columns(model)
        is_model = F.col("model_name") == F.lit(model)
        aggs += [
            F.max(F.when(is_model, F.col("score").cast("double"))).alias(names["score"]),
            F.max(F.when(is_model, F.col("decile").cast("int"))).alias(names["decile"]),
            F.max(F.when(is_model, F.col("model_version").cast("string"))).alias(
                names["model_version"]
            ),
        ]
    return picked.groupBy("customer_id").agg(*aggs)


def rule_frame(
    profile: DataFrame, specs: Sequence[AudienceSpec], scores: DataFrame | None = None
) -> DataFrame:
    """The profile with everything the rules of ``specs`` may use: the model columns of
    ``scores`` (from :func:`wide_scores`; customers without scores get nulls) and one
    ``consent_<purpose>_<channel>`` column per consent pair the audiences need."""
    out = profile
    if scores is not None:
        out = out.join(scores, on="customer_id", how="left")
    pairs: list[tuple[str, str]] = []
    for spec in specs:
        pairs += [p for p in spec.consents_used() if p not in pairs]
    for purpose, channel in pairs:
        name = consent_column(purpose, channel)
        if name not in out.columns:
            out = out.withColumn(name, consent_granted(F.col("consents"), purpose, channel))
    return out


def _rule_problem(spec: AudienceSpec, frame: DataFrame, exc: AnalysisException) -> str:
    condition = exc.getCondition() or ""
    params = exc.getMessageParameters() or {}
    if condition.startswith("UNRESOLVED_COLUMN"):
        name = params.get("objectName", "?").strip("`")
        hint = ""
        for suffix in ("_score", "_decile", "_model_version"):
            if name.endswith(suffix) and name[: -len(suffix)] not in map(model_prefix, spec.models):
                hint = f"; if '{name[: -len(suffix)]}' is a model, list it under 'models'"
        known = ", ".join(sorted(frame.columns))
        return f"unknown column '{name}' (known columns: {known}){hint}"
    first = (str(exc).strip().splitlines() or [condition])[0]
    return f"not a valid Spark SQL expression: {first}"


def check_rules(specs: Sequence[AudienceSpec], frame: DataFrame) -> None:
    """Analyse every rule against ``frame`` (no Spark job runs): unknown columns, syntax errors
    and non-boolean results fail with the file and key named (:class:`AudienceError`)."""
    problems = []
    for spec in specs:
        # The allow-list first: analysing a subquery would already read the files it names.
        problem = expression_problem(spec.rule, frame.sparkSession)
        if problem:
            problems.append(f"{spec.where()}: rule: {problem}")
            continue
        try:
            with expected_analysis_errors():
                dtype = frame.select(F.expr(spec.rule).alias("_rule")).schema["_rule"].dataType
        except AnalysisException as exc:
            problems.append(f"{spec.where()}: key 'rule': {_rule_problem(spec, frame, exc)}")
            continue
        if not isinstance(dtype, BooleanType):
            problems.append(
                f"{spec.where()}: key 'rule': must be a boolean condition, "
                f"got type {dtype.simpleString()}"
            )
    if problems:
        raise AudienceError("; ".join(problems))


def rule_condition(spec: AudienceSpec) -> Column:
    """The audience's rule over the :func:`rule_frame`; null reads as false."""
    rule = checked_expr(spec.rule, where=spec.where(), key="rule")
    return F.coalesce(rule, F.lit(False))


def member_condition(spec: AudienceSpec) -> Column:
    """Whether a row of the :func:`rule_frame` is a member of ``spec``: its rule holds and,
    with ``require_consent``, the audience's consent column is true. The one definition that
    :func:`evaluate` and the notebooks' segment counts share."""
    cond = rule_condition(spec)
    if spec.require_consent:
        cond = cond & F.col(consent_column(spec.purpose, spec.channel))
    return cond


def evaluate(specs: Sequence[AudienceSpec], frame: DataFrame) -> DataFrame:
    """(audience, customer_id) for every audience whose rule holds, in one pass over ``frame``.

    A null rule result means "not a member" (SQL three-valued logic would otherwise leave, for
    example, customers without a score in limbo). With ``require_consent`` the audience's own
    consent column must be true as well.
    """
    labels = [F.when(member_condition(spec), F.lit(spec.name)) for spec in specs]
    return (
        frame.select(
            F.col("customer_id"),
            F.explode(F.filter(F.array(*labels), lambda x: x.isNotNull())).alias("audience"),
        )
        .where(F.col("customer_id").isNotNull())
        .select("audience", "customer_id")
    )


def relevant_spells(membership: DataFrame, as_of: date) -> DataFrame:
    """Spells an evaluation at ``as_of`` may change: open just before it, or changed by an
    earlier evaluation of the same date (entered or exited at ``as_of``)."""
    d = F.lit(as_of)
    return membership.where(
        (F.col("entered_at") <= d) & (F.col("exited_at").isNull() | (F.col("exited_at") >= d))
    )


def membership_changes(
    members: DataFrame, spells: DataFrame, *, as_of: date, run_id: str
) -> DataFrame:
    """The rows to merge into the membership table on (audience, customer_id, entered_at),
    with their operation in ``_op``; unchanged spells are absent.

    ``members``: (audience, customer_id) of this evaluation, of the audiences evaluated.
    ``spells``: the membership rows of those same audiences (other audiences must be left
    out, or their members would exit). Both are unique per key by construction.
    """
    d = F.lit(as_of)
    s = relevant_spells(spells, as_of).select(
        "audience",
        "customer_id",
        F.col("entered_at").alias("_s_entered"),
        F.col("exited_at").alias("_s_exited"),
        F.lit(True).alias("_in_spell"),
    )
    m = members.select("audience", "customer_id", F.lit(True).alias("_in_members"))
    joined = m.join(s, on=["audience", "customer_id"], how="full_outer")
    in_m = F.coalesce(F.col("_in_members"), F.lit(False))
    in_s = F.coalesce(F.col("_in_spell"), F.lit(False))
    entered_before = F.col("_s_entered") < d
    op = (
        F.when(in_m & ~in_s, "insert")
        .when(in_m & entered_before & F.col("_s_exited").isNotNull(), "reopen")
        .when(~in_m & entered_before & F.col("_s_exited").isNull(), "exit")
        .when(~in_m & in_s & ~entered_before, "delete")
    )
    return (
        joined.withColumn(OP, op)
        .where(F.col(OP).isNotNull())
        .select(
            "audience",
            "customer_id",
            F.when(F.col(OP) == "insert", d).otherwise(F.col("_s_entered")).alias("entered_at"),
            F.when(F.col(OP) == "exit", d).otherwise(F.lit(None).cast("date")).alias("exited_at"),
            d.alias("as_of"),
            F.lit(run_id).alias("run_id"),
            F.col(OP),
        )
    )


def members_at(membership: DataFrame, as_of: date) -> DataFrame:
    """The membership rows whose spell covers ``as_of``: entered on or before it and not
    exited by then (exiting at D means no longer a member on D)."""
    d = F.lit(as_of)
    return membership.where(
        (F.col("entered_at") <= d) & (F.col("exited_at").isNull() | (F.col("exited_at") > d))
    )


def latest_applied(membership: DataFrame, audiences: Sequence[str]) -> DataFrame:
    """Per audience, the latest date any evaluation wrote (entered or exited): a small frame
    (one row per audience) the stage collects to refuse evaluations that go back in time."""
    return (
        membership.where(F.col("audience").isin(*audiences))
        .groupBy("audience")
        .agg(F.max(F.greatest("entered_at", F.coalesce("exited_at", "entered_at"))).alias("d"))
    )
