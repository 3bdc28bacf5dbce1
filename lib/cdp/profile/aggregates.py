"""Per-customer aggregates of the golden profile: linked records, identifiers, consents, RFM
and engagement, and the assembly of ``gold/customer_profile``.

Every function is a pure ``DataFrame`` transformation (no session, no table access, no
collect); the stage reads the tables and hands them in.

Point in time: the stage passes ``before`` (the start of the day after ``as_of``, UTC) so a
profile built for a past ``as_of`` sees only what was known by the end of that day.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timedelta, timezone

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from cdp.orders import IS_PURCHASE, roll_up_orders
from cdp.privacy.consent import consent_granted
from cdp.profile.survivorship import DEFAULT_SEGMENTS, RfmSegment

DELETED_FLAGS = ("is_deleted", "_deleted")
_LINK_COLUMNS = ("customer_id", "record_table", "source", "source_record_id", "record_time")

CONSENT_TYPE = ArrayType(
    StructType(
        [
            StructField("purpose", StringType()),
            StructField("channel", StringType()),
            StructField("status", StringType()),
            StructField("consent_time", TimestampType()),
            StructField("source", StringType()),
        ]
    )
)
IDENTIFIER_TYPE = ArrayType(
    StructType([StructField("id_type", StringType()), StructField("id_value", StringType())])
)


def day_end(as_of: date) -> datetime:
    """The first instant after ``as_of`` (UTC): data at or after it is not yet known."""
    return datetime.combine(as_of + timedelta(days=1), time(0), tzinfo=timezone.utc)


def live(df: DataFrame) -> DataFrame:
    """Rows that are not tombstones (silver keeps deletions as ``is_deleted = true``)."""
    out = df
    for flag in DELETED_FLAGS:
        if flag in df.columns:
            out = out.where(~F.coalesce(F.col(flag), F.lit(False)))
    return out


def link_records(
    records: DataFrame,
    identity_map: DataFrame,
    *,
    record_table: str,
    time_column: str,
    columns: Mapping[str, str],
    before: datetime | None = None,
) -> DataFrame:
    """Live silver rows of ``record_table`` with the customer they belong to.

    Output: ``customer_id, record_table, source, source_record_id, record_time`` and
    ``columns`` (name -> Spark SQL type given to the nulls of a column the table lacks), so
    frames of different tables union by name. Records not (yet) in the identity map are left
    out; with ``before``, so are records stamped at or after it (untimed records are kept).
    """
    rows = live(records)
    if before is not None:
        t = F.col(time_column)
        rows = rows.where(t.isNull() | (t < F.lit(before)))
    links = identity_map.where(F.col("record_table") == record_table).select(
        "source", "source_record_id", "customer_id"
    )
    # Only the columns used, and never the record's own customer_id (a source system's
    # account id, an identifier) next to the resolved one.
    fields = [c for c in columns if c in records.columns and c not in _LINK_COLUMNS]
    picked = rows.select(
        "source",
        "source_record_id",
        F.col(time_column).cast("timestamp").alias("record_time"),
        *fields,
    )
    return picked.join(links, ["source", "source_record_id"]).select(
        "customer_id",
        F.lit(record_table).alias("record_table"),
        "source",
        "source_record_id",
        "record_time",
        *[
            (F.col(c) if c in fields else F.lit(None).cast(dtype)).alias(c)
            for c, dtype in columns.items()
            if c not in _LINK_COLUMNS
        ],
    )


def union_all(frames: Sequence[DataFrame]) -> DataFrame:
    """Union by name; a column missing from a frame is null there."""
    out = frames[0]
    for f in frames[1:]:
        out = out.unionByName(f, allowMissingColumns=True)
    return out


def record_aggregates(email: str = "email", phone: str = "phone") -> list[Column]:
    """Aggregates over a customer's linked records (for :func:`survive`'s one pass):
    ``record_count``, ``source_count``, ``sources``, first/last record time and the emails
    and phones the records carry."""
    return [
        F.count(F.lit(1)).alias("record_count"),
        F.count_distinct("source").alias("source_count"),
        F.array_sort(F.collect_set("source")).alias("sources"),
        F.min("record_time").alias("records_first_seen"),
        F.max("record_time").alias("records_last_seen"),
        F.collect_set(email).alias("record_emails"),
        F.collect_set(phone).alias("record_phones"),
    ]


def identifier_summary(identifiers: DataFrame) -> DataFrame:
    """``customer_id, identifiers, identifier_emails, identifier_phones`` from
    ``gold/identity_identifiers`` (sorted, distinct)."""
    ids = identifiers.where(F.col("id_value").isNotNull() & (F.col("id_value") != ""))
    return ids.groupBy("customer_id").agg(
        F.array_sort(F.collect_set(F.struct("id_type", "id_value"))).alias("identifiers"),
        F.collect_set(F.when(F.col("id_type") == "email", F.col("id_value"))).alias(
            "identifier_emails"
        ),
        F.collect_set(F.when(F.col("id_type") == "phone", F.col("id_value"))).alias(
            "identifier_phones"
        ),
    )


def latest_consents(
    consents: DataFrame,
    *,
    granted_statuses: Sequence[str],
    marketing_purpose: str = "marketing",
    flags: Mapping[str, str] | None = None,
) -> DataFrame:
    """``customer_id, consents, <flag>...`` from linked consent records.

    ``consents`` has ``customer_id, source, source_record_id, record_time, purpose, channel,
    status``. Per (customer, purpose, channel) the latest record wins; on the same time a
    refusal beats a grant (the safe reading), then the larger source record id. ``consents``
    is sorted by purpose and channel. Each flag (column -> channel) is true only when the
    latest statement for (``marketing_purpose``, channel), counting those on purpose or
    channel ``all`` (:func:`cdp.privacy.consent.consent_granted`), is a grant.
    """
    granted = [s.lower() for s in granted_statuses]
    valid = consents.where(
        F.col("purpose").isNotNull() & F.col("channel").isNotNull() & F.col("status").isNotNull()
    )
    latest = valid.groupBy("customer_id", "purpose", "channel").agg(
        F.max(
            F.struct(
                F.coalesce(F.unix_micros("record_time"), F.lit(-(2**63))).alias("t"),
                (~F.lower("status").isin(*granted)).alias("refusal"),
                F.col("source_record_id").alias("rid"),
                F.col("source").alias("src"),
                F.col("status").alias("status"),
                F.col("record_time").alias("time"),
            )
        ).alias("m")
    )
    per_customer = latest.groupBy("customer_id").agg(
        F.array_sort(
            F.collect_list(
                F.struct(
                    F.col("purpose"),
                    F.col("channel"),
                    F.col("m.status").alias("status"),
                    F.col("m.time").alias("consent_time"),
                    F.col("m.src").alias("source"),
                )
            )
        ).alias("consents")
    )

    def granted_for(channel: str) -> Column:
        # The shared condition: statements on purpose or channel "all" count too, so an
        # unreadable statement kept by silver as a withdrawal of everything clears the flag.
        return consent_granted(F.col("consents"), marketing_purpose, channel, granted)

    flag_columns = [granted_for(channel).alias(name) for name, channel in (flags or {}).items()]
    return per_customer.select("customer_id", "consents", *flag_columns)


def _convert(amount: Column, currency: Column, fx_rates: Mapping[str, float]) -> Column:
    value = amount.cast("double")
    if not fx_rates:
        return value
    rate = F.element_at(
        F.create_map(*[x for k, v in sorted(fx_rates.items()) for x in (F.lit(k), F.lit(v))]),
        F.upper(currency),
    )
    return F.when(F.upper(currency).isin(*fx_rates), value * rate)


def rfm(
    transactions: DataFrame, *, as_of: date, fx_rates: Mapping[str, float] | None = None
) -> DataFrame:
    """Spend per customer from linked transaction records.

    Output: ``customer_id, last_purchase_at, recency_days, frequency, monetary,
    avg_order_value`` for every customer with a purchase. The records roll up into orders
    (:mod:`cdp.orders`: source and order id, else source record id; the lines of an invoice
    are one order) and ``frequency`` counts the purchases among them: a refund or a
    cancellation (an order of negative amount) is no purchase and no last purchase, though
    it lowers ``monetary``, the net of the amounts (converted with ``fx_rates`` when given;
    an amount in a currency with no rate counts as unknown). ``recency_days`` counts days
    from the last purchase's date to ``as_of``.
    """
    spend = _convert(F.col("amount"), F.col("currency"), fx_rates or {})
    orders = roll_up_orders(transactions, time_column="record_time", amount=spend)
    buy = F.col(IS_PURCHASE)
    per = (
        orders.groupBy("customer_id")
        .agg(
            F.max(F.when(buy, F.col("record_time"))).alias("last_purchase_at"),
            F.sum(buy.cast("long")).alias("frequency"),
            F.sum("amount").alias("monetary"),
        )
        .where(F.col("frequency") > 0)
    )
    return per.select(
        "customer_id",
        "last_purchase_at",
        F.datediff(F.lit(as_of), F.to_date("last_purchase_at")).alias("recency_days"),
        F.col("frequency").cast("long").alias("frequency"),
        F.round("monetary", 2).alias("monetary"),
        F.round(F.col("monetary") / F.col("frequency"), 2).alias("avg_order_value"),
    )


def _score(value: Column, cuts: Column, *, lower_is_better: bool) -> Column:
    """1..len(cuts)+1 from the number of cut points the value exceeds; ties share a score.
    Lower-is-better values (recency) are scored from the top, so both run the same way."""
    above = F.size(F.filter(cuts, lambda c: value > c))
    score = (F.size(cuts) + 1 - above) if lower_is_better else (above + 1)
    return F.when(value.isNotNull() & cuts.isNotNull(), score).cast("int")


def _in_range(score: Column, bounds: tuple[int, int] | None) -> Column:
    if bounds is None:
        return F.lit(True)
    return F.coalesce(score.between(bounds[0], bounds[1]), F.lit(False))


def rfm_scores(
    df: DataFrame,
    *,
    bins: int = 5,
    accuracy: int = 10_000,
    segments: Sequence[RfmSegment] = DEFAULT_SEGMENTS,
    default_segment: str = "needs_attention",
    no_purchase: str = "no_purchase",
) -> DataFrame:
    """Add ``r_score, f_score, m_score`` (1..``bins``) and ``rfm_segment``.

    Cut points are approximate quantiles (``percentile_approx``) over buying customers,
    computed in a one-row aggregate joined back (nothing is collected). A score counts the
    cut points a value beats, so equal values always share a score (``ntile`` would split
    ties at random, e.g. the many one-order customers). Recency scores high when recent.
    Non-buyers (``frequency`` 0 or null) get null scores and segment ``no_purchase``.
    """
    probs = [i / bins for i in range(1, bins)]
    buyers = F.coalesce(F.col("frequency"), F.lit(0)) > 0
    cuts = df.where(buyers).agg(
        F.percentile_approx("recency_days", probs, accuracy).alias("__q_r"),
        F.percentile_approx("frequency", probs, accuracy).alias("__q_f"),
        F.percentile_approx("monetary", probs, accuracy).alias("__q_m"),
    )
    scored = df.crossJoin(F.broadcast(cuts)).withColumns(
        {
            "r_score": F.when(
                buyers, _score(F.col("recency_days"), F.col("__q_r"), lower_is_better=True)
            ),
            "f_score": F.when(
                buyers, _score(F.col("frequency"), F.col("__q_f"), lower_is_better=False)
            ),
            "m_score": F.when(
                buyers, _score(F.col("monetary"), F.col("__q_m"), lower_is_better=False)
            ),
        }
    )
    segment: Column = F.lit(default_segment)
    for seg in reversed(segments):  # the first matching segment wins
        match = (
            _in_range(F.col("r_score"), seg.r)
            & _in_range(F.col("f_score"), seg.f)
            & _in_range(F.col("m_score"), seg.m)
        )
        segment = F.when(match, F.lit(seg.name)).otherwise(segment)
    return scored.withColumn(
        "rfm_segment", F.when(buyers, segment).otherwise(F.lit(no_purchase))
    ).drop("__q_r", "__q_f", "__q_m")


def attribute_events(
    events: DataFrame,
    identifiers: DataFrame,
    *,
    id_columns: Mapping[str, str],
    before: datetime | None = None,
) -> DataFrame:
    """Live, timed events with the customer they belong to (``customer_id``); unattributed
    events are left out.

    ``id_columns`` maps event columns to ``gold/identity_identifiers`` id types, strongest
    first: each event goes to the customer its strongest matching identifier names (then the
    smallest customer id, should one value belong to several). Output keeps ``source,
    source_record_id, event_type, event_time, channel, properties``.
    """
    rows = live(events).where(F.col("event_time").isNotNull())
    if before is not None:
        rows = rows.where(F.col("event_time") < F.lit(before))
    present = [(c, t) for c, t in id_columns.items() if c in events.columns]
    if not present:
        raise ValueError(f"events have none of the identifier columns {list(id_columns)}")
    keep = ["source", "source_record_id", "event_type", "event_time", "channel", "properties"]
    types = dict(events.dtypes)

    def kept(c: str) -> Column:
        if c not in types:
            return F.lit(None).cast("string").alias(c)
        if c == "properties" and types[c].startswith(("struct", "map", "array")):
            return F.to_json(F.col(c)).alias(c)  # sessions are read from JSON text
        return F.col(c)

    keep_cols = [kept(c) for c in keep]
    ids = F.array(
        *[
            F.struct(
                F.lit(i).alias("rank"),
                F.lit(id_type).alias("id_type"),
                F.col(col).cast("string").alias("id_value"),
            )
            for i, (col, id_type) in enumerate(present)
        ]
    )
    pairs = (
        rows.select(*keep_cols, F.explode(ids).alias("__id"))
        .where(F.col("__id.id_value").isNotNull())
        .select(*keep, "__id.*")
    )
    lookup = identifiers.select("id_type", "id_value", "customer_id")
    matched = pairs.join(lookup, ["id_type", "id_value"])
    # The key columns are the event's; the rest depend on it, so grouping by them is free.
    best = matched.groupBy(*keep).agg(F.min(F.struct("rank", "customer_id")).alias("__m"))
    return best.select(F.col("__m.customer_id").alias("customer_id"), *keep)


def engagement(
    events: DataFrame,
    *,
    as_of: date,
    windows_days: Sequence[int],
    session_channels: Sequence[str],
    session_path: str = "$.session_id",
    page_view_types: Sequence[str],
    email_open_types: Sequence[str],
    email_click_types: Sequence[str],
) -> DataFrame:
    """Activity per customer from attributed events (see :func:`attribute_events`).

    Output: ``customer_id, event_count, events_first_seen, events_last_seen`` and per window
    ``w`` (the ``w`` days ending with ``as_of``): ``sessions_<w>d`` (distinct sessions on
    ``session_channels``; an event without a session id stands for its channel-day),
    ``page_views_<w>d``, ``email_opens_<w>d``, ``email_clicks_<w>d``. Events after ``as_of``
    are not counted.
    """
    end = day_end(as_of)
    etype = F.lower(F.col("event_type"))
    session_id = F.get_json_object(F.col("properties").cast("string"), session_path)
    day_key = F.concat_ws(
        ":", F.lit("day"), F.col("channel"), F.to_date("event_time").cast("string")
    )
    df = events.where(F.col("event_time") < F.lit(end)).select(
        "customer_id",
        "event_time",
        F.when(
            F.lower(F.col("channel")).isin(*[c.lower() for c in session_channels]),
            F.coalesce(session_id, day_key),
        ).alias("__session"),
        etype.isin(*[t.lower() for t in page_view_types]).alias("__pv"),
        etype.isin(*[t.lower() for t in email_open_types]).alias("__open"),
        etype.isin(*[t.lower() for t in email_click_types]).alias("__click"),
    )
    aggs: list[Column] = [
        F.count(F.lit(1)).alias("event_count"),
        F.min("event_time").alias("events_first_seen"),
        F.max("event_time").alias("events_last_seen"),
    ]
    for w in windows_days:
        start = end - timedelta(days=w)
        inside = F.col("event_time") >= F.lit(start)

        def count_if(flag: str, inside: Column = inside) -> Column:
            return F.sum(F.when(inside & F.col(flag), 1).otherwise(0)).cast("long")

        aggs += [
            F.count_distinct(F.when(inside, F.col("__session"))).alias(f"sessions_{w}d"),
            count_if("__pv").alias(f"page_views_{w}d"),
            count_if("__open").alias(f"email_opens_{w}d"),
            count_if("__click").alias(f"email_clicks_{w}d"),
        ]
    return df.groupBy("customer_id").agg(*aggs)


def engagement_columns(windows_days: Sequence[int]) -> list[str]:
    return [
        f"{m}_{w}d"
        for w in windows_days
        for m in ("sessions", "page_views", "email_opens", "email_clicks")
    ]


def _sorted_union(*cols: str) -> Column:
    empty = F.array().cast(ArrayType(StringType()))
    parts = [F.coalesce(F.col(c), empty) for c in cols]
    return F.array_sort(F.array_distinct(F.filter(F.concat(*parts), lambda x: x.isNotNull())))


def assemble_profile(
    core: DataFrame,
    *,
    identifiers: DataFrame,
    consents: DataFrame,
    spend: DataFrame,
    activity: DataFrame,
    attribute_columns: Sequence[str],
    consent_flags: Sequence[str],
    windows_days: Sequence[int],
    as_of: date,
    run_id: str,
) -> DataFrame:
    """Join the parts into one row per customer of ``core`` (customers with a live linked
    record) and put the columns in their documented order.

    ``core``: :func:`survive` output with :func:`record_aggregates`; ``identifiers``:
    :func:`identifier_summary`; ``consents``: :func:`latest_consents`; ``spend``:
    :func:`rfm` then :func:`rfm_scores` (may lack non-buyers); ``activity``:
    :func:`engagement`.
    """
    joined = (
        core.join(identifiers, "customer_id", "left")
        .join(consents, "customer_id", "left")
        .join(spend, "customer_id", "left")
        .join(activity, "customer_id", "left")
    )
    zero = F.lit(0).cast("long")
    buyers = F.coalesce(F.col("frequency"), zero) > 0
    return joined.select(
        "customer_id",
        *attribute_columns,
        _sorted_union("record_emails", "identifier_emails").alias("emails"),
        _sorted_union("record_phones", "identifier_phones").alias("phones"),
        F.coalesce("identifiers", F.array().cast(IDENTIFIER_TYPE)).alias("identifiers"),
        F.col("record_count").cast("long").alias("record_count"),
        F.col("source_count").cast("long").alias("source_count"),
        "sources",
        F.least("records_first_seen", "events_first_seen").alias("first_seen"),
        F.greatest("records_last_seen", "events_last_seen").alias("last_seen"),
        F.coalesce("consents", F.array().cast(CONSENT_TYPE)).alias("consents"),
        *[F.coalesce(F.col(f), F.lit(False)).alias(f) for f in consent_flags],
        "last_purchase_at",
        "recency_days",
        F.coalesce("frequency", zero).alias("frequency"),
        F.when(buyers, F.col("monetary")).otherwise(F.lit(0.0)).alias("monetary"),
        "avg_order_value",
        "r_score",
        "f_score",
        "m_score",
        F.coalesce("rfm_segment", F.lit("no_purchase")).alias("rfm_segment"),
        F.coalesce("event_count", zero).alias("event_count"),
        *[F.coalesce(F.col(c), zero).alias(c) for c in engagement_columns(windows_days)],
        F.lit(as_of).alias("as_of"),
        F.lit(run_id).alias("profile_run_id"),
    )
