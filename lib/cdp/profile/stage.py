"""The ``profile`` stage: build ``gold/customer_profile``, one row per customer, from scratch.

Inputs: ``silver/person_records``, ``silver/transactions``, ``silver/consents``,
``silver/events`` (each optional: a missing table contributes nothing), ``gold/identity_map``
and ``gold/identity_identifiers`` (required: run ``identity`` first); ``gold/customer_value``
(optional: the latest CLV and P(alive), :mod:`cdp.value.profile_columns`). Tombstoned silver
records are left out; a customer appears when at least one live record links to them.

``as_of``: the run's ``--as-of`` when given; otherwise (``profile.default_as_of:
latest_data``) the date of the latest event or transaction, capped at today UTC, so a rerun
on unchanged data writes the same profile whatever the day; or today UTC with
``default_as_of: today``. Data stamped after the end of ``as_of`` (UTC) is not used, so a
profile for a past date shows what was known then.

The table is overwritten on every run (it is derived entirely from its inputs); the run log
gets the rows read per input, rows written and a few coverage metrics.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cdp import tables as T
from cdp.optional_inputs import read_or_empty, record_missing
from cdp.profile import aggregates as A
from cdp.profile.survivorship import RECORD_TABLES, load_profile_rules, survive
from cdp.stage import StageContext
from cdp.value.profile_columns import value_for_profile, with_value

PROFILE_TABLE = T.CUSTOMER_PROFILE.name
IDENTITY_MAP = T.IDENTITY_MAP.name
IDENTIFIERS = T.IDENTITY_IDENTIFIERS.name
EVENTS = T.EVENTS.name

# Columns the aggregates read from linked records, besides the survivorship fields.
AGGREGATE_COLUMNS = (
    "email",
    "phone",
    "order_id",
    "amount",
    "currency",
    "purpose",
    "channel",
    "status",
)


def rules_path(ctx: StageContext) -> Path:
    """``profile.rules_file``, relative paths taken from the conf directory."""
    return ctx.config.conf_path(ctx.config.profile.rules_file)


def resolve_as_of(ctx: StageContext, events: DataFrame, transactions: DataFrame | None) -> date:
    """The profile's date (see the module docstring)."""
    if ctx.as_of is not None:
        return ctx.as_of
    today = datetime.now(timezone.utc).date()
    if ctx.config.profile.default_as_of == "today":
        return today
    # Two one-row aggregates; Delta statistics let Spark skip most of the files' rows.
    latest: list[date] = []
    frames = [(events, "event_time")]
    if transactions is not None:
        frames.append((transactions, "order_time"))
    for frame, column in frames:
        value = A.live(frame).agg(F.max(F.to_date(column)).alias("d")).collect()[0]["d"]
        if value is not None:
            latest.append(value)
    return min(max(latest), today) if latest else today


def _rows(ctx: StageContext, name: str) -> int:
    info = ctx.store.info(name)
    return int(info.num_rows) if info.num_rows is not None else 0


def run_profile(ctx: StageContext) -> None:
    """The ``profile`` stage."""
    settings = ctx.config.profile
    store = ctx.store
    rules = load_profile_rules(rules_path(ctx))
    attributes = rules.resolved()
    for name in (IDENTITY_MAP, IDENTIFIERS):
        if not store.exists(name):
            raise RuntimeError(f"{name} does not exist: run the identity stage first")

    silver = {
        t: store.read(T.silver_table(t)) for t in RECORD_TABLES if store.exists(T.silver_table(t))
    }
    if not silver:
        raise RuntimeError(
            f"none of the silver record tables {sorted(RECORD_TABLES)} exists: run silver first"
        )
    for t in sorted(set(RECORD_TABLES) - set(silver)):
        record_missing(ctx, T.silver_table(t), "its profile columns stay empty")
    events = read_or_empty(ctx, EVENTS, "engagement counts are 0")
    for name in [*(T.silver_table(t) for t in silver), IDENTITY_MAP, IDENTIFIERS]:
        ctx.run.read(name, _rows(ctx, name))
    if store.exists(EVENTS):
        ctx.run.read(EVENTS, _rows(ctx, EVENTS))

    as_of = resolve_as_of(ctx, events, silver.get("transactions"))
    before = A.day_end(as_of)
    ctx.run.metric("profile.as_of", as_of.isoformat())
    ctx.progress(f"as_of {as_of.isoformat()} (data before {before.isoformat()})")

    # Each column's type from the first table that has it, so nulls union cleanly.
    wanted = list(
        dict.fromkeys([f for a in attributes for f in a.fields] + list(AGGREGATE_COLUMNS))
    )
    types: dict[str, str] = {}
    for df in silver.values():
        for column, dtype in df.dtypes:
            types.setdefault(column, dtype)
    identity_map = store.read(IDENTITY_MAP)
    linked = A.union_all(
        [
            A.link_records(
                df,
                identity_map,
                record_table=table,
                time_column=RECORD_TABLES[table].time_field,
                columns={c: types.get(c, "string") for c in wanted},
                before=before,
            )
            for table, df in silver.items()
        ]
    ).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        core = survive(linked, attributes, extra_aggregates=A.record_aggregates())
        consent = settings.consent
        consents = A.latest_consents(
            linked.where(F.col("record_table") == "consents"),
            granted_statuses=consent.granted_statuses,
            marketing_purpose=consent.marketing_purpose,
            flags=consent.flags,
        )
        spend = A.rfm(
            linked.where(F.col("record_table") == "transactions"),
            as_of=as_of,
            fx_rates=settings.rfm.fx_rates,
        ).transform(
            lambda df: A.rfm_scores(
                df,
                bins=settings.rfm.bins,
                accuracy=settings.rfm.quantile_accuracy,
                segments=rules.rfm_segments,
                default_segment=rules.rfm_default_segment,
            )
        )
        identifiers = store.read(IDENTIFIERS)
        eng = settings.engagement
        activity = A.engagement(
            A.attribute_events(events, identifiers, id_columns=eng.identifiers, before=before),
            as_of=as_of,
            windows_days=eng.windows_days,
            session_channels=eng.session_channels,
            session_path=eng.session_path,
            page_view_types=eng.page_view_types,
            email_open_types=eng.email_open_types,
            email_click_types=eng.email_click_types,
        )
        profile = A.assemble_profile(
            core,
            identifiers=A.identifier_summary(identifiers),
            consents=consents,
            spend=spend,
            activity=activity,
            attribute_columns=[c for a in attributes for c in a.output_columns],
            consent_flags=list(consent.flags),
            windows_days=eng.windows_days,
            as_of=as_of,
            run_id=ctx.run.run_id,
        ).transform(lambda df: with_value(df, value_for_profile(ctx, as_of)))
        result = store.overwrite(PROFILE_TABLE, profile)
    finally:
        linked.unpersist()
    ctx.run.wrote(PROFILE_TABLE, result.rows_written)
    _record_metrics(ctx, list(consent.flags), eng.windows_days)


def _record_metrics(ctx: StageContext, flags: list[str], windows: list[int]) -> None:
    """Coverage of the written profile (one small aggregate over the new table)."""
    widest = max(windows)
    columns = set(ctx.store.schema(PROFILE_TABLE).fieldNames())
    contact = [F.count(c).alias(f"with_{c}") for c in ("email", "phone") if c in columns]
    stats = (
        ctx.store.read(PROFILE_TABLE)
        .agg(
            F.count(F.lit(1)).alias("customers"),
            *contact,
            F.sum((F.col("frequency") > 0).cast("long")).alias("buyers"),
            F.sum((F.col(f"sessions_{widest}d") > 0).cast("long")).alias(f"active_{widest}d"),
            F.sum("event_count").alias("events_attributed"),
            F.max("record_count").alias("max_records_per_customer"),
            *[F.sum(F.col(f).cast("long")).alias(f) for f in flags],
        )
        .collect()[0]
        .asDict()
    )
    for key, value in stats.items():
        ctx.run.metric(f"profile.{key}", int(value or 0))
    ctx.progress(
        f"{int(stats['customers'] or 0):,} customers, {int(stats['buyers'] or 0):,} buyers, "
        f"{int(stats['events_attributed'] or 0):,} events attributed"
    )
