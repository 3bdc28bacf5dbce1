"""A small facade for the notebooks in ``notebooks/``: one call to get a session and a store,
and the look-ups a data scientist needs that no stage provides.

Everything here goes through the library (config, session, storage, silver standardizers,
profile rules, audience and export code); the notebooks import it and copy nothing. Helpers
return Spark DataFrames, or pandas frames only for one customer's rows or small aggregates:
nothing collects a whole table, so the same notebook works on a demo and at full scale.

    from cdp.notebook import open_workspace
    ws = open_workspace()          # honours CDP_DATA_ROOT, CDP_ENV and the other variables
    ws.read("gold/customer_profile").limit(5).toPandas()
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp import tables as T
from cdp.audiences.spec import AudienceSpec
from cdp.config import CdpConfig, load_config
from cdp.export.sink import NOTEBOOK_EXPORTS
from cdp.runlog import RunRecorder, make_run_id, utcnow
from cdp.stage import StageContext
from cdp.storage import TableStore, open_store

IDENTITY_MAP = T.IDENTITY_MAP.name
IDENTIFIERS = T.IDENTITY_IDENTIFIERS.name
PROFILE = T.CUSTOMER_PROFILE.name
PERSONS = T.PERSON_RECORDS.name
# Person-record columns shown for a cluster (those present are shown).
RECORD_COLUMNS = (
    "first_name",
    "last_name",
    "email",
    "phone",
    "birth_date",
    "postcode",
    "country",
    "crm_id",
    "loyalty_id",
    "updated_at",
)


@dataclass
class Workspace:
    """The configuration, SparkSession and table store a notebook works with."""

    config: CdpConfig
    spark: SparkSession
    store: TableStore

    def read(self, name: str, version: int | None = None) -> DataFrame:
        """A table by name (``gold/customer_profile``), optionally at a Delta version."""
        return self.store.read(name, version=version)

    def context(self, job: str = "notebook", as_of: date | None = None) -> StageContext:
        """A :class:`StageContext` for calling stage-level library functions from a notebook.

        Its run id is derived like a stage's; nothing is appended to ``ops/run_log`` (a
        notebook is not a pipeline run). Progress messages are printed.
        """
        started = utcnow()
        config_hash = self.config.config_hash()
        run_id = make_run_id(job, started, config_hash)
        self.store.set_run_id(run_id)
        recorder = RunRecorder(
            run_id=run_id,
            job=job,
            env=self.config.env,
            config_hash=config_hash,
            backend=self.store.backend_name,
            started_at=started,
            as_of=as_of,
        )
        return StageContext(
            spark=self.spark,
            config=self.config,
            store=self.store,
            run=recorder,
            as_of=as_of,
            progress=lambda message: print(f"[{job}] {message}", flush=True),
            log=logging.getLogger(f"cdp.notebook.{job}"),
        )


def open_workspace(
    *,
    env: str | None = None,
    data_root: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    spark: SparkSession | None = None,
) -> Workspace:
    """Load the configuration (``conf/`` layers plus ``CDP_DATA_ROOT``, ``CDP_ENV`` ... from
    the environment), build (or take) the SparkSession and open the table store.

    ``data_root`` and ``overrides`` (dotted keys, like ``--set``) win over the environment.
    """
    from cdp.session import build_session

    layer: dict[str, Any] = dict(overrides or {})
    if data_root is not None:
        layer["data_root"] = data_root
    config = load_config(env=env, overrides=layer)
    session = spark or build_session(config)
    return Workspace(config=config, spark=session, store=open_store(session, config))


# -- customer 360 ------------------------------------------------------------------------------


def standard_email(spark: SparkSession, text: str) -> str | None:
    """``text`` as silver standardizes e-mail addresses (" John.Doe@X.com " ->
    "john.doe@x.com"); None when it is not a valid address."""
    from cdp.silver.standardize import standardize_email

    row = (
        spark.createDataFrame([(text,)], "email string")
        .transform(standardize_email("email"))
        .select("email")
        .first()
    )
    return None if row is None else row["email"]


def standard_phone(text: str, region: str = "GB") -> str | None:
    """``text`` in E.164 as silver standardizes phones ("020 7946 0958" -> "+442079460958");
    national numbers are read in ``region``. None when it is not a valid number."""
    from cdp.silver.std_phone import phone_to_e164

    return phone_to_e164(text, region)


def find_customers(
    ws: Workspace, *, email: str | None = None, phone: str | None = None, region: str = "GB"
) -> DataFrame:
    """(customer_id, id_type, id_value) of the customers holding the e-mail address or phone
    number as typed (standardized first, as silver does); usually one row."""
    wanted: list[tuple[str, str]] = []
    if email:
        value = standard_email(ws.spark, email)
        if value is None:
            raise ValueError(f"{email!r} is not a valid e-mail address")
        wanted.append(("email", value))
    if phone:
        value = standard_phone(phone, region)
        if value is None:
            raise ValueError(f"{phone!r} is not a valid phone number (region {region})")
        wanted.append(("phone", value))
    if not wanted:
        raise ValueError("give an email or a phone")
    cond = F.lit(False)
    for id_type, id_value in wanted:
        cond = cond | ((F.col("id_type") == id_type) & (F.col("id_value") == id_value))
    return (
        ws.read(IDENTIFIERS)
        .where(cond)
        .select("customer_id", "id_type", "id_value")
        .distinct()
        .orderBy("customer_id", "id_type")
    )


def cluster_sizes(identity_map: DataFrame) -> DataFrame:
    """(customer_id, records): how many source records each customer's cluster holds."""
    return identity_map.groupBy("customer_id").agg(F.count(F.lit(1)).alias("records"))


def cluster_size_histogram(identity_map: DataFrame) -> DataFrame:
    """(records, customers): how many customers have a cluster of each size, by size."""
    return (
        cluster_sizes(identity_map)
        .groupBy("records")
        .agg(F.count(F.lit(1)).alias("customers"))
        .orderBy("records")
    )


def largest_cluster(ws: Workspace) -> str:
    """The customer id with the most source records (the smallest id among equals)."""
    row = (
        cluster_sizes(ws.read(IDENTITY_MAP))
        .orderBy(F.col("records").desc(), F.col("customer_id"))
        .select("customer_id")
        .first()
    )
    if row is None:
        raise ValueError(f"{IDENTITY_MAP} is empty (run the identity stage first)")
    return str(row["customer_id"])


def cluster_records(ws: Workspace, customer_id: str) -> DataFrame:
    """The source records resolved to ``customer_id`` (``gold/identity_map``), with the
    standardized person fields of those that are person records (silver/person_records)."""
    links = ws.read(IDENTITY_MAP).where(F.col("customer_id") == customer_id)
    persons = ws.read(PERSONS)
    shown = [c for c in RECORD_COLUMNS if c in persons.columns]
    persons = persons.select(
        "source", "source_record_id", F.lit("person_records").alias("record_table"), *shown
    )
    return (
        links.select("customer_id", "record_table", "source", "source_record_id", "assigned_at")
        .join(persons, on=["record_table", "source", "source_record_id"], how="left")
        .orderBy("record_table", "source", "source_record_id")
    )


def customer_identifiers(ws: Workspace, customer_id: str) -> DataFrame:
    """Every identifier of ``customer_id`` (``gold/identity_identifiers``)."""
    return (
        ws.read(IDENTIFIERS)
        .where(F.col("customer_id") == customer_id)
        .select("id_type", "id_value")
        .orderBy("id_type", "id_value")
    )


def golden_record(ws: Workspace, customer_id: str) -> pd.DataFrame:
    """The profile's surviving attributes of ``customer_id``, one row per field, with the
    source and source record that supplied each (the rules in ``profile.rules_file``)."""
    from cdp.profile.stage import rules_path
    from cdp.profile.survivorship import load_profile_rules

    rules = load_profile_rules(rules_path(ws.context("notebook-profile"))).resolved()
    columns = [c for r in rules for c in r.output_columns]
    profile = ws.read(PROFILE)
    rows = profile.where(F.col("customer_id") == customer_id).select(*columns).limit(1).collect()
    if not rows:
        return pd.DataFrame(columns=["attribute", "field", "value", "source", "source_record_id"])
    row = rows[0]
    return pd.DataFrame(
        [
            {
                "attribute": rule.name,
                "field": f,
                "value": row[f],
                "source": row[f"{rule.name}_source"],
                "source_record_id": row[f"{rule.name}_source_record_id"],
            }
            for rule in rules
            for f in rule.fields
        ]
    )


# -- audiences ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """A segment evaluated like a declared audience (see :func:`evaluate_segment`)."""

    spec: AudienceSpec
    as_of: date
    members: DataFrame  # customer_id, one row per member
    matched_rule: int
    members_count: int
    models: list[dict[str, Any]]  # name, version, scores_as_of (the export manifest's form)


def evaluate_segment(ws: Workspace, definition: Mapping[str, Any] | str) -> Segment:
    """Evaluate a segment written like a ``conf/audiences/*.yaml`` file (a mapping or YAML
    text) exactly as the ``audiences`` stage evaluates declared audiences, at the same date.

    ``matched_rule`` counts customers whose rule holds; ``members_count`` those that also hold
    the consent (with ``require_consent``)."""
    import yaml

    from cdp.audiences.members import evaluate, member_condition, rule_condition
    from cdp.audiences.spec import parse_audience
    from cdp.audiences.stage import rule_inputs

    data = yaml.safe_load(definition) if isinstance(definition, str) else dict(definition)
    spec = parse_audience(data, "<notebook segment>")
    inputs = rule_inputs(ws.context("notebook-segment"), [spec])
    members = evaluate([spec], inputs.frame).select("customer_id")
    # Both counts in one pass, with the very conditions evaluate() applies.
    rule = rule_condition(spec)
    member = member_condition(spec)
    counts = inputs.frame.agg(
        F.sum(F.when(rule, 1).otherwise(0)).alias("rule"),
        F.sum(F.when(member & F.col("customer_id").isNotNull(), 1).otherwise(0)).alias("n"),
    ).first()
    matched = int((counts["rule"] if counts else 0) or 0)
    size = int((counts["n"] if counts else 0) or 0)
    models = [
        {"name": m, "version": v, "scores_as_of": str(inputs.scores_as_of[m])}
        for m in spec.models
        for v in inputs.model_versions.get(m, [])
    ]
    return Segment(spec, inputs.as_of, members, matched, size, models)


def audience_overlap(ws: Workspace, segment: Segment) -> pd.DataFrame:
    """Per configured audience: its members on the segment's date (``gold/audience_membership``),
    how many are also in the segment, and the Jaccard index. A small aggregate."""
    from cdp.audiences.members import members_at
    from cdp.audiences.stage import MEMBERSHIP_TABLE

    columns = ["audience", "audience_members", "in_segment", "jaccard"]
    if not ws.store.exists(MEMBERSHIP_TABLE):
        return pd.DataFrame(columns=columns)
    current = members_at(ws.read(MEMBERSHIP_TABLE), segment.as_of).select("audience", "customer_id")
    tagged = segment.members.select("customer_id", F.lit(True).alias("_in_segment"))
    counts = (
        current.join(tagged, on="customer_id", how="left")
        .groupBy("audience")
        .agg(
            F.count(F.lit(1)).alias("audience_members"),
            F.count("_in_segment").alias("in_segment"),
        )
        .orderBy("audience")
    )
    rows = pd.DataFrame(counts.toPandas())
    union = rows["audience_members"] + segment.members_count - rows["in_segment"]
    rows["jaccard"] = (rows["in_segment"] / union.where(union > 0)).fillna(0.0)
    return rows[columns]


def export_segment(ws: Workspace, segment: Segment, target: str | None = None) -> dict[str, Any]:
    """Export the segment's consented members with the export stage's own code (files,
    manifest, ``_SUCCESS``) to ``target``, by default ``<data_root>/notebook_exports``;
    returns the manifest. The configured format and identifier hashing apply. The privacy
    stage rewrites the delivery on erasure wherever it went: the export's audit row records
    ``target`` (see :func:`cdp.privacy.erase.audited_targets`)."""
    from cdp.export.sink import open_sink
    from cdp.export.stage import Evaluation, export_members, local_staging_root

    root = ws.config.data_root_uri
    config = ws.config.model_copy(deep=True)
    cfg = config.activation.export
    cfg.target = target or f"{root}/{NOTEBOOK_EXPORTS}"
    if not cfg.target.startswith("s3://"):
        cfg.endpoint_url = None
    staging_root = local_staging_root(cfg, root, "notebook_export")
    sink = open_sink(cfg, default_target=cfg.target)
    ctx = replace(ws.context("notebook-export", as_of=segment.as_of), config=config)
    staging = staging_root / ctx.run.run_id
    evaluation = Evaluation(as_of=segment.as_of, run_id=ctx.run.run_id, models=segment.models)
    try:
        return export_members(
            ctx, segment.spec, segment.members, evaluation, segment.as_of, sink, staging
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
