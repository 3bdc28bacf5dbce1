"""The ``audiences`` stage: evaluate every declared audience and update its membership.

Reads ``gold/customer_profile`` and, for audiences that use models, ``gold/propensity_scores``
(each model's latest ``as_of`` on or before the audience date). Writes:

* ``gold/audience_membership`` (partitioned by audience): one MERGE on
  (audience, customer_id, entered_at) applying only what changed; see
  :mod:`cdp.audiences.members` for the spell semantics. A rerun at the same date with the same
  inputs commits nothing. An audience removed from the declarations is evaluated as empty
  once: its open spells close at the run's date, so it never looks active after removal.
* ``gold/audience_runs``: one row per audience per evaluation (date, run id, counts, the rule,
  the model versions used), which the export reads for its manifest.

The date is ``ctx.as_of`` when given, else the profile's own ``as_of`` (the date its recency
and engagement figures were computed for, so rules such as ``recency_days > 60`` mean what they
say), else today (UTC).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    DateType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from cdp import tables as T
from cdp.audiences.members import (
    MEMBERSHIP_KEYS,
    MEMBERSHIP_SCHEMA,
    OP,
    check_rules,
    evaluate,
    latest_applied,
    membership_changes,
    rule_frame,
    scores_on,
    wide_scores,
)
from cdp.audiences.spec import AudienceError, AudienceSpec, load_audiences
from cdp.stage import StageContext

PROFILE_TABLE = T.CUSTOMER_PROFILE.name
SCORES_TABLE = T.PROPENSITY_SCORES.name
MEMBERSHIP_TABLE = T.AUDIENCE_MEMBERSHIP.name
RUNS_TABLE = T.AUDIENCE_RUNS.name

MODEL_USED = StructType(
    [
        StructField("model_name", StringType()),
        StructField("model_version", StringType()),
        StructField("scores_as_of", DateType()),
    ]
)
RUNS_SCHEMA = StructType(
    [
        StructField("audience", StringType()),
        StructField("as_of", DateType()),
        StructField("run_id", StringType()),
        StructField("evaluated_at", TimestampType()),
        StructField("purpose", StringType()),
        StructField("channel", StringType()),
        StructField("rule", StringType()),
        StructField("rule_sha256", StringType()),
        StructField("members", LongType()),
        StructField("entered", LongType()),
        StructField("exited", LongType()),
        StructField("models", ArrayType(MODEL_USED)),
        StructField("profile_version", LongType()),
        StructField("scores_version", LongType()),
    ]
)


def _as_of(ctx: StageContext) -> date:
    if ctx.as_of is not None:
        return ctx.as_of
    if "as_of" in ctx.store.schema(PROFILE_TABLE).fieldNames():
        row = ctx.store.read(PROFILE_TABLE).agg(F.max("as_of").alias("d")).collect()[0]
        if row["d"] is not None:
            return row["d"]  # type: ignore[no-any-return]
    return datetime.now(timezone.utc).date()


def _latest_scores(
    ctx: StageContext, specs: list[AudienceSpec], as_of: date
) -> tuple[dict[str, date], dict[str, list[str]]]:
    """Each used model's newest scoring date on or before ``as_of`` + 1 day, and the model
    versions scored on that date; a model without scores is an error naming the audience file.

    The day of slack is the two date conventions meeting: a profile at ``as_of`` D holds data
    through the end of D, while features and scores at D + 1 use facts strictly before D + 1,
    which is the same information.
    """
    cutoff = as_of + timedelta(days=1)
    wanted = sorted({m for s in specs for m in s.models})
    users = {m: next(s for s in specs if m in s.models) for m in wanted}
    if not ctx.store.exists(SCORES_TABLE):
        m = wanted[0]
        raise AudienceError(
            f"{users[m].where()}: key 'models': model {m!r} has no scores: {SCORES_TABLE} "
            "does not exist (run the score stage first)"
        )
    scores = ctx.store.read(SCORES_TABLE)
    dated = {
        r["model_name"]: r["d"]
        for r in scores.where(F.col("as_of") <= F.lit(cutoff))
        .where(F.col("model_name").isin(*wanted))
        .groupBy("model_name")
        .agg(F.max("as_of").alias("d"))
        .collect()
    }
    missing = [m for m in wanted if m not in dated]
    if missing:
        known = sorted(r["model_name"] for r in scores.select("model_name").distinct().collect())
        problems = [
            f"{users[m].where()}: key 'models': no scores for model {m!r} on or before "
            f"{cutoff} in {SCORES_TABLE} (models with scores: {', '.join(known) or 'none'})"
            for m in missing
        ]
        raise AudienceError("; ".join(problems))
    versions: dict[str, list[str]] = {m: [] for m in wanted}
    for r in (
        scores.where(scores_on(dated)).select("model_name", "model_version").distinct().collect()
    ):
        versions[r["model_name"]].append(str(r["model_version"]))
    return dated, {m: sorted(v) for m, v in versions.items()}


@dataclass(frozen=True)
class RuleInputs:
    """What the rules of some audiences are evaluated on at ``as_of`` (see :func:`rule_inputs`)."""

    frame: DataFrame
    as_of: date
    # model name -> the scoring date used, and the model versions scored on that date.
    scores_as_of: dict[str, date]
    model_versions: dict[str, list[str]]


def rule_inputs(
    ctx: StageContext, specs: list[AudienceSpec], as_of: date | None = None
) -> RuleInputs:
    """The frame the stage evaluates ``specs`` on (profile, model scores, consent columns),
    with every rule checked against it; for evaluating an audience that is not declared
    (a notebook segment) exactly as the stage would. ``as_of`` as in the stage."""
    day = as_of or _as_of(ctx)
    latest: dict[str, date] = {}
    versions: dict[str, list[str]] = {}
    wide = None
    if any(s.models for s in specs):
        latest, versions = _latest_scores(ctx, specs, day)
        wide = wide_scores(ctx.store.read(SCORES_TABLE), latest)
    frame = rule_frame(ctx.store.read(PROFILE_TABLE), specs, wide)
    check_rules(specs, frame)
    return RuleInputs(frame, day, latest, versions)


def _retired_audiences(
    membership: DataFrame, declared: list[str], as_of: date, ctx: StageContext
) -> list[str]:
    """Audiences no longer declared that still have open spells: they are evaluated as empty,
    so their members exit at ``as_of`` (a removed audience must not look active forever).
    One that an evaluation after ``as_of`` already wrote is left alone, like history."""
    open_elsewhere = (
        membership.where(~F.col("audience").isin(*declared) & F.col("exited_at").isNull())
        .select("audience")
        .distinct()
    )
    names = sorted(r["audience"] for r in open_elsewhere.collect())
    if not names:
        return []
    later = {
        r["audience"]
        for r in latest_applied(membership, names).collect()
        if r["d"] is not None and r["d"] > as_of
    }
    for name in sorted(later):
        ctx.log.warning(
            "audience %s is no longer declared but was evaluated after %s; left as it is",
            name,
            as_of,
        )
    return [n for n in names if n not in later]


def run_audiences(ctx: StageContext) -> None:
    """Evaluate the declared audiences at the run's date and MERGE the membership changes."""
    specs = load_audiences(ctx.config)
    if not specs and not ctx.store.exists(MEMBERSHIP_TABLE):
        ctx.progress("no audiences declared; nothing to do")
        return
    names = [s.name for s in specs]
    as_of = _as_of(ctx)
    run_id = ctx.run.run_id
    store = ctx.store
    ctx.progress(f"evaluating {len(specs)} audience(s) at {as_of}: {', '.join(names)}")

    profile_version = store.version(PROFILE_TABLE)
    if profile_version is None:
        raise AudienceError(f"{PROFILE_TABLE} does not exist (run the profile stage first)")
    profile = store.read(PROFILE_TABLE)
    latest: dict[str, date] = {}
    versions: dict[str, list[str]] = {}
    scores_version = None
    wide = None
    if any(s.models for s in specs):
        latest, versions = _latest_scores(ctx, specs, as_of)
        scores_version = store.version(SCORES_TABLE)
        wide = wide_scores(store.read(SCORES_TABLE), latest)
    frame = rule_frame(profile, specs, wide)
    check_rules(specs, frame)

    if store.exists(MEMBERSHIP_TABLE):
        membership = store.read(MEMBERSHIP_TABLE)
        ahead = [
            (r["audience"], r["d"])
            for r in latest_applied(membership, names).collect()
            if r["d"] is not None and r["d"] > as_of
        ]
        if ahead:
            listed = ", ".join(f"{a} (at {d})" for a, d in sorted(ahead))
            raise AudienceError(
                f"membership moves forward only: {listed} already evaluated after {as_of}"
            )
        retired = _retired_audiences(membership, names, as_of, ctx)
        spells = membership.where(F.col("audience").isin(*names, *retired))
    else:
        retired = []
        spells = ctx.spark.createDataFrame([], MEMBERSHIP_SCHEMA)

    if specs:
        members = evaluate(specs, frame)
    else:  # every audience was removed: only retirements to apply
        members = ctx.spark.createDataFrame([], "audience string, customer_id string")
    members = members.persist(StorageLevel.MEMORY_AND_DISK)
    changes = membership_changes(members, spells, as_of=as_of, run_id=run_id).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    try:
        sizes = {
            r["audience"]: int(r["n"])
            for r in members.groupBy("audience").agg(F.count(F.lit(1)).alias("n")).collect()
        }
        ops: dict[tuple[str, str], int] = {
            (r["audience"], r[OP]): int(r["n"])
            for r in changes.groupBy("audience", OP).agg(F.count(F.lit(1)).alias("n")).collect()
        }
        # From the Delta log's file statistics: no extra pass over the profile.
        ctx.run.read(PROFILE_TABLE, int(store.info(PROFILE_TABLE).num_rows or 0))
        n_changes = sum(ops.values())
        if not store.exists(MEMBERSHIP_TABLE):
            result = store.append(
                MEMBERSHIP_TABLE,
                changes.where(F.col(OP) == "insert").select(*MEMBERSHIP_SCHEMA.fieldNames()),
                partition_by=["audience"],
            )
            ctx.run.wrote(MEMBERSHIP_TABLE, result.rows_written)
        elif n_changes:
            result = store.merge(
                MEMBERSHIP_TABLE,
                changes,
                keys=list(MEMBERSHIP_KEYS),
                update={"exited_at": "s.exited_at", "as_of": "s.as_of", "run_id": "s.run_id"},
                delete_condition=f"s.{OP} = 'delete'",
                insert={c: f"s.{c}" for c in MEMBERSHIP_SCHEMA.fieldNames()},
                insert_condition=f"s.{OP} = 'insert'",
            )
            ctx.run.wrote(MEMBERSHIP_TABLE, n_changes)
        ctx.run.metric("audiences.membership_changes", n_changes)
    finally:
        changes.unpersist()
        members.unpersist()

    now = datetime.now(timezone.utc).replace(tzinfo=None)
    moves = _moves_at(store, names, as_of)
    rows: list[dict[str, Any]] = []
    for spec in specs:
        size = sizes.get(spec.name, 0)
        entered, exited = moves.get(spec.name, (0, 0))
        models = [
            {"model_name": m, "model_version": v, "scores_as_of": latest[m]}
            for m in spec.models
            for v in versions.get(m, [])
        ]
        rows.append(
            {
                "audience": spec.name,
                "as_of": as_of,
                "run_id": run_id,
                "evaluated_at": now,
                "purpose": spec.purpose,
                "channel": spec.channel,
                "rule": spec.rule,
                "rule_sha256": hashlib.sha256(spec.rule.encode()).hexdigest(),
                "members": size,
                "entered": entered,
                "exited": exited,
                "models": models,
                "profile_version": profile_version,
                "scores_version": scores_version,
            }
        )
        ctx.run.metric(f"audience.{spec.name}.members", size)
        ctx.run.metric(f"audience.{spec.name}.entered", entered)
        ctx.run.metric(f"audience.{spec.name}.exited", exited)
        ctx.progress(f"{spec.name}: {size} member(s), {entered} entered, {exited} exited")
    for name in retired:
        exited = ops.get((name, "exit"), 0) + ops.get((name, "delete"), 0)
        ctx.run.metric(f"audience.{name}.retired_exited", exited)
        ctx.progress(f"{name}: no longer declared; its {exited} open member(s) exited")
    if rows:
        # One record per audience and date, replaced by a re-evaluation of that date (a rerun
        # after a crash included), as the membership itself is.
        frame = ctx.spark.createDataFrame(rows, RUNS_SCHEMA)
        listed = ", ".join(sql_string(n) for n in names)
        where = f"as_of = DATE'{as_of.isoformat()}' AND audience IN ({listed})"
        if store.exists(RUNS_TABLE):
            store.replace_where(RUNS_TABLE, frame, where)
        else:
            store.append(RUNS_TABLE, frame)
        ctx.run.wrote(RUNS_TABLE, len(rows))


def sql_string(text: str) -> str:
    """A Spark SQL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _moves_at(store: Any, names: list[str], as_of: date) -> dict[str, tuple[int, int]]:
    """Per audience, the spells that entered and that exited at ``as_of``, read from the
    membership as it stands after this run's merge: the same numbers whether the date was
    evaluated once, again, or again after a crash that had already merged its changes."""
    if not names or not store.exists(MEMBERSHIP_TABLE):
        return {}
    d = F.lit(as_of)
    counts = (
        store.read(MEMBERSHIP_TABLE)
        .where(F.col("audience").isin(*names))
        .groupBy("audience")
        .agg(
            F.sum(F.when(F.col("entered_at") == d, 1).otherwise(0)).alias("entered"),
            F.sum(F.when(F.col("exited_at") == d, 1).otherwise(0)).alias("exited"),
        )
        .collect()
    )
    return {r["audience"]: (int(r["entered"] or 0), int(r["exited"] or 0)) for r in counts}
