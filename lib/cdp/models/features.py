"""Point-in-time customer features, built from silver facts attributed through the identity map.

Every fact counts only when it happened strictly before ``as_of`` (midnight UTC starting that
day), so features at ``as_of`` are what was knowable then; a later event cannot leak in.
Silver keeps the latest version of each record, so slowly-changing person attributes
(gender, country, birth date) are those of the versions updated before ``as_of``.

Attribution:
* transactions, consents and person records through ``gold/identity_map``
  (``record_table``, ``source``, ``source_record_id``);
* events through ``gold/identity_identifiers``: the event's identifier columns are tried in the
  configured order (customer id, email, anonymous id, device id) and the first that names a
  customer wins.

The customers of ``as_of`` are those with at least one fact before it.
"""

from __future__ import annotations

from datetime import date
from functools import reduce

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from cdp import tables as T
from cdp.models.settings import ModelsConfig
from cdp.orders import IS_PURCHASE, roll_up_orders
from cdp.value.features import btyd_columns
from cdp.value.fit import BtydFit

DAY_SECONDS = 86_400.0
KEY = "customer_id"
AS_OF = "as_of"
# Columns of gold/customer_features that are not model inputs.
NON_FEATURE_COLUMNS = frozenset({KEY, AS_OF})
EMAIL_TYPES = {
    "sent": ("sent", "send", "delivered"),
    "open": ("open", "opened"),
    "click": ("click", "clicked"),
    "unsubscribe": ("unsubscribe", "unsubscribed"),
}


def cutoff_ts(as_of: date) -> Column:
    """Midnight UTC at the start of ``as_of`` (the session time zone is UTC)."""
    return F.lit(as_of.isoformat()).cast("timestamp")


def _live(df: DataFrame) -> DataFrame:
    """Drop silver tombstones (``is_deleted``)."""
    return (
        df.where(~F.coalesce(F.col("is_deleted"), F.lit(False)))
        if "is_deleted" in df.columns
        else df
    )


def _days_before(cutoff: Column, ts: Column) -> Column:
    return (cutoff.cast("double") - ts.cast("double")) / DAY_SECONDS


def attributed(records: DataFrame, identity_map: DataFrame, record_table: str) -> DataFrame:
    """Silver ``records`` of ``record_table`` with the ``customer_id`` the identity map gives them."""
    ids = identity_map.where(F.col("record_table") == record_table).select(
        "source", "source_record_id", KEY
    )
    rows = _live(records)
    if KEY in rows.columns:  # the source's own customer id is not the CDP one
        rows = rows.withColumnRenamed(KEY, "source_customer_id")
    return rows.join(ids, ["source", "source_record_id"])


def attributed_orders(transactions: DataFrame, identity_map: DataFrame) -> DataFrame:
    """customer_id, order_time, amount (double), is_purchase, channel, items of every order of
    the live transactions (:mod:`cdp.orders`: the lines of one order roll up into it; a
    refund or cancellation is an order that is not a purchase). ``items``: the order's rows'
    item lists (JSON strings)."""
    lines = attributed(transactions, identity_map, "transactions").where(
        F.col("order_time").isNotNull()
    )
    return roll_up_orders(
        lines,
        time_column="order_time",
        amount=F.col("amount"),
        extra={
            "channel": F.min("channel"),
            "items": F.collect_list(F.col("items").cast("string")),
        },
    )


def attributed_events(
    events: DataFrame, identifiers: DataFrame, settings: ModelsConfig
) -> DataFrame:
    """customer_id, event_type, event_time, channel of every event that reaches a customer.

    The event's identifier columns are tried in ``settings.event_identifiers`` order; the
    first one found in ``identifiers`` decides (ties: the smallest customer id, so the result
    is deterministic).
    """
    ev = _live(events).where(F.col("event_time").isNotNull())
    payload = [
        F.col(c) for c in ("source", "source_record_id", "event_type", "event_time", "channel")
    ]
    candidates = []
    for priority, (column, id_type) in enumerate(settings.event_identifiers.items()):
        if column not in ev.columns:
            continue
        candidates.append(
            ev.where(F.col(column).isNotNull()).select(
                *payload,
                F.lit(id_type).alias("id_type"),
                F.col(column).cast("string").alias("id_value"),
                F.lit(priority).alias("_priority"),
            )
        )
    if not candidates:
        raise ValueError(
            f"{T.EVENTS.name} has none of the identifier columns {list(settings.event_identifiers)}"
        )
    cands = reduce(DataFrame.unionByName, candidates)
    ids = identifiers.select("id_type", "id_value", KEY).distinct()
    best = (
        cands.join(ids, ["id_type", "id_value"])
        .groupBy("source", "source_record_id")
        .agg(F.min(F.struct("_priority", KEY, "event_type", "event_time", "channel")).alias("b"))
    )
    return best.select(
        F.col(f"b.{KEY}").alias(KEY),
        F.col("b.event_type").alias("event_type"),
        F.col("b.event_time").alias("event_time"),
        F.col("b.channel").alias("channel"),
    )


def _count_if(cond: Column) -> Column:
    return F.sum(F.when(cond, 1).otherwise(0)).cast("int")


def _sum_if(cond: Column, value: Column) -> Column:
    return F.sum(F.when(cond, value).otherwise(F.lit(0.0))).cast("double")


def transaction_features(tx: DataFrame, as_of: date, windows: list[int]) -> DataFrame:
    """RFM, tenure, inter-purchase intervals, spend trend, category and channel mix.

    ``tx``: attributed orders (:func:`attributed_orders`). Counts, recency, intervals and the
    channel and category mix are over purchases; spend is net (a refund lowers it); tenure
    starts at the first order of any kind."""
    cutoff = cutoff_ts(as_of)
    tx = tx.where(F.col("order_time") < cutoff).withColumn(
        "_age_days", _days_before(cutoff, F.col("order_time"))
    )
    age = F.col("_age_days")
    buy = F.col(IS_PURCHASE)
    amount = F.coalesce(F.col("amount"), F.lit(0.0))
    aggs: list[Column] = [
        _count_if(buy).alias("orders_total"),
        F.sum(amount).cast("double").alias("spend_total"),
        F.min(F.when(buy, age)).alias("recency_days"),
        F.max(F.when(buy, age)).alias("days_since_first_purchase"),
        F.max(age).alias("_first_tx_days"),
        _count_if(buy & (F.col("channel") == "store")).alias("_store_orders"),
    ]
    for w in sorted({*windows, 180, 365}):
        aggs.append(_count_if(buy & (age <= w)).alias(f"orders_{w}d"))
        aggs.append(_sum_if(age <= w, amount).alias(f"spend_{w}d"))
    aggs.append(_sum_if((age > 90) & (age <= 180), amount).alias("_spend_prev_90d"))
    per = tx.groupBy(KEY).agg(*aggs)
    orders = F.col("orders_total")
    per = (
        per.withColumn("avg_order_value", F.when(orders > 0, F.col("spend_total") / orders))
        .withColumn("store_order_share", F.when(orders > 0, F.col("_store_orders") / orders))
        .withColumn("spend_trend_90d", F.col("spend_90d") - F.col("_spend_prev_90d"))
        .withColumn(
            "mean_days_between_orders",
            F.when(
                orders > 1,
                (F.col("days_since_first_purchase") - F.col("recency_days")) / (orders - 1),
            ),
        )
        .drop("_store_orders", "_spend_prev_90d")
    )
    purchases = tx.where(buy)
    # Spread of the gaps between consecutive orders (regular buyers vs one-off bursts).
    gaps = (
        purchases.select(KEY, "order_time", "_age_days")
        .withColumn(
            "_gap",
            F.lag("_age_days", 1).over(Window.partitionBy(KEY).orderBy("order_time", "_age_days"))
            - F.col("_age_days"),
        )
        .groupBy(KEY)
        .agg(F.stddev_samp("_gap").alias("std_days_between_orders"))
    )
    # Category diversity: each order line's items are a JSON array of structs with a category.
    cats = (
        purchases.select(KEY, F.explode("items").alias("_line"))
        .select(
            KEY,
            F.explode_outer(F.from_json(F.col("_line"), "array<struct<category:string>>")).alias(
                "_item"
            ),
        )
        .where(F.col("_item.category").isNotNull())
        .groupBy(KEY)
        .agg(F.countDistinct(F.lower(F.col("_item.category"))).cast("int").alias("category_count"))
    )
    return (
        per.join(gaps, KEY, "left")
        .join(cats, KEY, "left")
        .withColumn("category_count", F.coalesce("category_count", F.lit(0)))
    )


def event_features(ev: DataFrame, as_of: date, settings: ModelsConfig) -> DataFrame:
    """Web/app and email engagement over the configured windows, and support contacts."""
    cutoff = cutoff_ts(as_of)
    ev = ev.where(F.col("event_time") < cutoff).withColumn(
        "_age_days", _days_before(cutoff, F.col("event_time"))
    )
    age = F.col("_age_days")
    etype = F.lower(F.col("event_type"))
    channel = F.lower(F.col("channel"))
    web = channel.isin(*[c.lower() for c in settings.web_channels])
    email = channel == settings.email_channel.lower()
    support = F.col("event_type").isin(*settings.support_event_types)
    is_ = {k: email & etype.isin(*v) for k, v in EMAIL_TYPES.items()}
    aggs: list[Column] = [
        F.max("_age_days").alias("_first_event_days"),
        F.min(F.when(web, age)).alias("days_since_last_web_event"),
        F.min(F.when(is_["open"], age)).alias("days_since_last_email_open"),
        _count_if(support).alias("support_contacts_total"),
        _count_if(support & (age <= 365)).alias("support_contacts_365d"),
        _count_if(is_["unsubscribe"]).alias("email_unsubscribes_total"),
        _count_if(web & etype.isin("add_to_cart", "checkout") & (age <= 30)).alias(
            "cart_events_30d"
        ),
        _count_if(web & (etype == "product_view") & (age <= 30)).alias("product_views_30d"),
    ]
    for w in settings.windows_days:
        within = age <= w
        aggs += [
            _count_if(web & within).alias(f"web_events_{w}d"),
            F.countDistinct(F.when(web & within, F.to_date("event_time")))
            .cast("int")
            .alias(f"web_active_days_{w}d"),
            _count_if(is_["sent"] & within).alias(f"emails_sent_{w}d"),
            _count_if(is_["open"] & within).alias(f"email_opens_{w}d"),
            _count_if(is_["click"] & within).alias(f"email_clicks_{w}d"),
            _count_if(support & within).alias(f"support_contacts_{w}d"),
        ]
    longest = max(settings.windows_days)
    out = ev.groupBy(KEY).agg(*aggs)
    return out.withColumn(
        f"email_open_rate_{longest}d",
        F.when(
            F.col(f"emails_sent_{longest}d") > 0,
            F.col(f"email_opens_{longest}d") / F.col(f"emails_sent_{longest}d"),
        ),
    )


def consent_features(cons: DataFrame, as_of: date, settings: ModelsConfig) -> DataFrame:
    """The latest consent status before ``as_of`` of each configured (purpose, channel)."""
    cutoff = cutoff_ts(as_of)
    granted = [s.lower() for s in settings.granted_statuses]
    latest = (
        cons.where(F.col("consent_time") < cutoff)
        .select(
            KEY,
            F.lower("purpose").alias("purpose"),
            F.lower("channel").alias("channel"),
            F.struct(
                F.col("consent_time"),
                F.col("source_record_id"),
                F.lower(F.col("status")).isin(*granted).cast("int").alias("flag"),
            ).alias("s"),
        )
        .groupBy(KEY, "purpose", "channel")
        .agg(F.max("s").alias("s"))
    )
    aggs: list[Column] = [F.min("s.consent_time").alias("_first_consent_at")]
    for pair in settings.consent_flags:
        cond = (F.col("purpose") == pair.purpose.lower()) & (
            F.col("channel") == pair.channel.lower()
        )
        aggs.append(
            F.max(F.when(cond, F.col("s.flag"))).alias(_consent_name(pair.purpose, pair.channel))
        )
    out = latest.groupBy(KEY).agg(*aggs)
    return out.withColumn(
        "_first_consent_days", _days_before(cutoff, F.col("_first_consent_at"))
    ).drop("_first_consent_at")


def _consent_name(purpose: str, channel: str) -> str:
    clean = "".join(c if c.isalnum() else "_" for c in f"{purpose}_{channel}".lower())
    return f"consent_{clean}"


def demographic_features(persons: DataFrame, as_of: date) -> DataFrame:
    """Age, gender and country from the newest person-record version before ``as_of``."""
    cutoff = cutoff_ts(as_of)
    rows = persons.where(F.col("updated_at").isNull() | (F.col("updated_at") < cutoff))
    order = F.coalesce(F.col("updated_at"), F.lit(0).cast("timestamp"))

    def newest(column: str, value: Column) -> Column:
        return (
            F.max(
                F.when(
                    value.isNotNull(), F.struct(order, F.col("source_record_id"), value.alias("v"))
                )
            )
            .getField("v")
            .alias(column)
        )

    birth = F.col("birth_date").cast("date")
    age = F.floor(F.months_between(F.lit(as_of.isoformat()).cast("date"), birth) / 12)
    return rows.groupBy(KEY).agg(
        newest("age_years", F.when((age >= 0) & (age <= 120), age.cast("double"))),
        newest("gender", F.nullif(F.upper(F.trim(F.col("gender"))), F.lit(""))),
        newest("country", F.nullif(F.upper(F.trim(F.col("country"))), F.lit(""))),
    )


# The silver input (a key of cdp.models.inputs.INPUT_TABLES) each feature group comes from;
# the features of an input without rows are left out of the models (see feature_inputs).
FEATURE_INPUTS = ("transactions", "events", "consents", "persons")


def feature_parts(
    *,
    transactions: DataFrame,
    events: DataFrame,
    consents: DataFrame,
    persons: DataFrame,
    identity_map: DataFrame,
    identifiers: DataFrame,
    as_of: date,
    settings: ModelsConfig | None = None,
    btyd: BtydFit | None = None,
) -> dict[str, DataFrame]:
    """One frame per input of :data:`FEATURE_INPUTS`: ``customer_id`` and the features that
    input gives (before the join; not computed until read). ``btyd``: the BG/NBD fitted
    before ``as_of`` that gives the BTYD features (:mod:`cdp.value.features`; None: those
    columns are null)."""
    settings = settings or ModelsConfig()
    tx = attributed_orders(transactions, identity_map)
    return {
        "transactions": btyd_columns(
            transaction_features(tx, as_of, settings.windows_days),
            tx,
            as_of,
            btyd,
            settings.labels.horizon_days,
        ),
        "events": event_features(attributed_events(events, identifiers, settings), as_of, settings),
        "consents": consent_features(
            attributed(consents, identity_map, "consents"), as_of, settings
        ),
        "persons": demographic_features(attributed(persons, identity_map, "person_records"), as_of),
    }


def feature_inputs(parts: dict[str, DataFrame]) -> dict[str, list[str]]:
    """The feature columns of gold/customer_features each input gives, from the parts'
    schemas (no Spark job). ``has_purchased`` comes from transactions; ``tenure_days`` takes
    the earliest fact of any input, so it belongs to none."""
    out = {
        key: sorted(c for c in df.columns if c != KEY and not c.startswith("_"))
        for key, df in parts.items()
    }
    out["transactions"] = sorted([*out["transactions"], "has_purchased"])
    return out


def build_features(
    *,
    transactions: DataFrame,
    events: DataFrame,
    consents: DataFrame,
    persons: DataFrame,
    identity_map: DataFrame,
    identifiers: DataFrame,
    as_of: date,
    settings: ModelsConfig | None = None,
) -> DataFrame:
    """One row per customer with a fact before ``as_of``: ``customer_id``, ``as_of``, features.

    Counts are 0 where a customer has no such fact; times since something that never
    happened (``recency_days`` of a customer who never bought) are null.
    """
    parts = feature_parts(
        transactions=transactions,
        events=events,
        consents=consents,
        persons=persons,
        identity_map=identity_map,
        identifiers=identifiers,
        as_of=as_of,
        settings=settings,
    )
    return join_features(parts, as_of)


def join_features(parts: dict[str, DataFrame], as_of: date) -> DataFrame:
    """The parts of :func:`feature_parts` joined into rows of gold/customer_features."""
    tx, ev, co, de = (parts[k] for k in FEATURE_INPUTS)
    base = reduce(DataFrame.unionByName, [df.select(KEY) for df in (tx, ev, co, de)]).distinct()
    out = (
        base.join(tx, KEY, "left").join(ev, KEY, "left").join(co, KEY, "left").join(de, KEY, "left")
    )
    out = out.withColumn(
        "tenure_days",
        F.greatest("_first_tx_days", "_first_event_days", "_first_consent_days"),
    ).withColumn("has_purchased", (F.coalesce(F.col("orders_total"), F.lit(0)) > 0).cast("int"))
    count_like = [
        f.name
        for f in out.schema.fields
        if f.name.startswith(
            (
                "orders_",
                "spend_",
                "web_events_",
                "web_active_days_",
                "emails_sent_",
                "email_opens_",
                "email_clicks_",
                "support_contacts_",
                "email_unsubscribes",
                "cart_events",
                "product_views",
                "category_count",
            )
        )
        and f.name != "spend_trend_90d"
    ]
    out = out.fillna(0, subset=count_like).fillna(0.0, subset=["spend_trend_90d"])
    features = sorted(
        c for c in out.columns if c not in NON_FEATURE_COLUMNS and not c.startswith("_")
    )
    return out.select(
        F.col(KEY).cast("string").alias(KEY),
        F.lit(as_of.isoformat()).cast("date").alias(AS_OF),
        *features,
    )


def is_active(lookback_days: int) -> Column:
    """A purchase in ``[as_of - lookback_days, as_of)``, from the features themselves."""
    return F.col("recency_days").isNotNull() & (F.col("recency_days") <= float(lookback_days))
