"""Behavioural event sources: web/app clickstream and email engagement.

Web: each person browses from one to three cookies. A cookie that belongs to someone with a
shop account usually logs in at some session; its earlier sessions are anonymous, later
ones carry ``user.customer_id``. Visitors who are not people in the person table (prospects,
bots) add purely anonymous cookies. Email: subscribers receive campaign sends; opens and
clicks depend on activity and fade after churn.
"""

from __future__ import annotations

import math

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdp.generate import _vocab as V
from cdp.generate._frame import ISO_MS_Z, ISO_Z, SourceFrame, drop_label, fmt_ts, with_duplicates
from cdp.generate._rand import hex_id, pick, pick_at, seq, uniform, uuid_like, weighted
from cdp.generate.noise import EmailNoise, email_variant
from cdp.generate.persons import GenContext
from cdp.generate.timeline import DAY, YEAR

WEB_VISITOR_SHARE = 0.3  # anonymous visitors per person


def _person_cookies(ctx: GenContext, persons: DataFrame) -> DataFrame:
    s, tl = ctx.seed, ctx.timeline
    pid = F.col("person_id")
    df = persons.filter(F.col("web_user"))
    un = uniform(s, "web.cookies", pid)
    n_cookies = (1 + F.when(un < 0.45, 1).otherwise(0) + F.when(un < 0.15, 1).otherwise(0)).cast(
        "int"
    )
    df = df.withColumn("n_cookies", n_cookies).withColumn("c", F.explode(seq(n_cookies)))
    c = F.col("c")
    ckey = F.concat(F.lit("p"), pid.cast("string"), F.lit("."), c.cast("string"))
    # Browsing starts before first purchase and fades out shortly after churn.
    cw0 = F.greatest(F.col("first_seen_ts") - 90 * DAY, F.lit(tl.start_ts))
    cw1 = F.least(F.coalesce(F.col("churn_ts") + 45 * DAY, F.lit(tl.end_ts)), F.lit(tl.end_ts))
    share = (
        F.when(F.col("n_cookies") == 1, 1.0)
        .when(F.col("n_cookies") == 2, F.when(c == 0, 0.65).otherwise(0.35))
        .otherwise(F.when(c == 0, 0.55).when(c == 1, 0.3).otherwise(0.15))
    )
    rate = 0.5 + 5.0 * F.pow(F.col("activity"), 1.2)
    years = F.greatest(cw1 - cw0, F.lit(0)) / YEAR
    n_sessions = F.floor(
        rate * years * share * (0.6 + 0.8 * uniform(s, "web.ns", ckey))
        + uniform(s, "web.nsf", ckey)
    ).cast("int")
    identified = (
        F.col("has_account")
        & (uniform(s, "web.ident", ckey) < F.when(c == 0, 0.85).otherwise(0.5))
        & (n_sessions > 0)
    )
    # Cookie 1 of some people is the same device after clearing cookies.
    same_device = (c == 1) & (uniform(s, "web.samedev", pid) < 0.2)
    device_key = F.concat(
        F.lit("p"),
        pid.cast("string"),
        F.lit("."),
        F.when(same_device, F.lit(0)).otherwise(c).cast("string"),
    )
    return df.select(
        pid.alias("_pid"),
        ckey.alias("cookie_key"),
        device_key.alias("device_key"),
        cw0.cast("long").alias("cw0"),
        cw1.cast("long").alias("cw1"),
        n_sessions.alias("n_sessions"),
        identified.alias("identified"),
        F.floor(F.pow(uniform(s, "web.loginat", ckey), 0.7) * n_sessions)
        .cast("int")
        .alias("login_k"),
        ((c == 0) & (uniform(s, "web.signup", ckey) < 0.3)).alias("signs_up"),
        F.col("account_id"),
        F.col("email"),
    )


def _visitor_cookies(ctx: GenContext) -> DataFrame:
    s, tl = ctx.seed, ctx.timeline
    n_visitors = int(math.ceil(ctx.persons * WEB_VISITOR_SHARE))
    df = ctx.spark.range(n_visitors, numPartitions=ctx.partitions)
    ckey = F.concat(F.lit("v"), F.col("id").cast("string"))
    return df.select(
        F.lit(None).cast("long").alias("_pid"),
        ckey.alias("cookie_key"),
        ckey.alias("device_key"),
        F.lit(tl.start_ts).cast("long").alias("cw0"),
        F.lit(tl.end_ts).cast("long").alias("cw1"),
        (1 + F.floor(F.pow(uniform(s, "vis.ns", ckey), 2.0) * 3)).cast("int").alias("n_sessions"),
        F.lit(False).alias("identified"),
        F.lit(0).alias("login_k"),
        F.lit(False).alias("signs_up"),
        F.lit(None).cast("string").alias("account_id"),
        F.lit(None).cast("string").alias("email"),
    )


def web_events(ctx: GenContext, persons: DataFrame) -> SourceFrame:
    """Clickstream as gzipped NDJSON with ~1% truncated lines; drop 2 adds ``device.browser``."""
    s, tl = ctx.seed, ctx.timeline
    cookies = _person_cookies(ctx, persons).unionByName(_visitor_cookies(ctx))
    ck = F.col("cookie_key")
    # Per-cookie and per-session values are computed before exploding, once per cookie or
    # session instead of once per event (md5 is the costliest expression here).
    dev_idx = F.floor(uniform(s, "web.device", F.col("device_key")) * len(V.DEVICE_TYPES))
    cookies = cookies.select(
        "*",
        uuid_like(s, "web.cookie", ck).alias("anonymous_id"),
        uuid_like(s, "web.device.id", F.col("device_key")).alias("device_id"),
        pick_at([t for t, _ in V.DEVICE_TYPES], dev_idx.cast("int")).alias("device_type"),
        pick_at([o for _, o in V.DEVICE_TYPES], dev_idx.cast("int")).alias("device_os"),
        pick(V.BROWSERS, uniform(s, "web.browser", F.col("device_key"))).alias("browser_name"),
    )
    df = cookies.withColumn("k", F.explode(seq(F.col("n_sessions"))))
    k = F.col("k")
    skey = F.concat(ck, F.lit("."), k.cast("string"))
    # Sessions are spread evenly over the cookie's life so that a higher session number
    # is a later session (needed for "anonymous first, logged in later").
    session_ts = F.col("cw0") + F.floor(
        (k + uniform(s, "web.sts", skey)) / F.col("n_sessions") * (F.col("cw1") - F.col("cw0"))
    )
    n_events = (1 + F.floor(F.pow(uniform(s, "web.ne", skey), 1.4) * 7)).cast("int")
    df = df.select(
        "*",
        skey.alias("session_key"),
        session_ts.cast("long").alias("session_ts"),
        n_events.alias("n_events"),
        hex_id(s, "web.session", skey, length=16).alias("session_id"),
        # Milliseconds: events in a session are 20 s to 3 min apart.
        F.floor(20_000 + uniform(s, "web.gap", skey) * 160_000).alias("gap_ms"),
    )
    df = df.withColumn("j", F.explode(seq(F.col("n_events"))))
    j = F.col("j")
    ekey = F.concat(F.col("session_key"), F.lit("."), j.cast("string"))
    login_j = F.least(F.lit(1), F.col("n_events") - 1)
    is_login_session = F.col("identified") & (k == F.col("login_k"))
    is_login = is_login_session & (j == login_j)
    identified = F.col("identified") & (
        (k > F.col("login_k")) | (is_login_session & (j >= login_j))
    )
    event_type = (
        F.when(is_login, F.when(F.col("signs_up"), F.lit("signup")).otherwise(F.lit("login")))
        .when(j == 0, F.lit("page_view"))
        .otherwise(
            weighted(
                [
                    ("page_view", 0.45),
                    ("product_view", 0.3),
                    ("add_to_cart", 0.12),
                    ("search", 0.08),
                    ("checkout", 0.05),
                ],
                uniform(s, "web.type", ekey),
            )
        )
    )
    event_ms = (F.col("session_ts") * 1000 + j * F.col("gap_ms")).cast("long")
    category = pick(V.PRODUCT_CATEGORIES, uniform(s, "web.cat", ekey))
    page_kind = pick(V.WEB_PAGES, uniform(s, "web.page", ekey))
    user_email = F.when(
        is_login,
        email_variant(
            s,
            "web",
            ekey,
            F.col("email"),
            EmailNoise(mixed_case=0.1, upper=0.02, whitespace=0.02, junk=0.0, missing=0.3),
        ),
    )
    # Three steps: scalar values per event, then the JSON document, then the (possibly
    # truncated) line; each step reads the previous one's named columns.
    drop = drop_label(tl, F.floor(event_ms / 1000))
    df = df.select(
        # Cookies that never identify stay anonymous in the ground truth, even for people.
        F.when(F.col("identified"), F.col("_pid")).alias("_pid"),
        uuid_like(s, "web.event", ekey).alias("_rid"),
        drop.alias("_drop"),
        ekey.alias("_key"),
        F.date_format(F.timestamp_millis(event_ms), ISO_MS_Z).alias("event_ts"),
        "anonymous_id",
        "session_id",
        event_type.alias("event_type"),
        "device_id",
        "device_os",
        "device_type",
        F.when(drop == tl.drops[1], F.col("browser_name")).alias("browser"),
        F.when(identified, F.col("account_id")).alias("customer_id"),
        identified.alias("identified_event"),
        user_email.alias("user_email"),
        F.concat(F.lit("https://shop.example.com/"), page_kind, F.lit("/"), category).alias("url"),
        category.alias("category"),
        (uniform(s, "web.bad", ekey) < 0.01).alias("malformed"),
        uniform(s, "web.cut", ekey).alias("cut_at"),
    )
    c = F.col
    record = F.struct(
        c("_rid").alias("event_id"),
        c("event_ts"),
        c("anonymous_id"),
        c("session_id"),
        c("event_type"),
        F.struct(
            c("device_id").alias("id"),
            c("device_os").alias("os"),
            c("device_type").alias("type"),
            c("browser"),
        ).alias("device"),
        F.when(
            c("identified_event"),
            F.struct(c("customer_id"), c("user_email").alias("email")),
        ).alias("user"),
        F.struct(c("url"), c("category")).alias("page"),
    )
    df = df.select(
        "_pid",
        "_rid",
        "_drop",
        "_key",
        "malformed",
        "cut_at",
        F.to_json(record, {"ignoreNullFields": "true"}).alias("json"),
    )
    cut = F.floor(F.length("json") * (0.3 + 0.5 * c("cut_at"))).cast("int")
    df = df.select(
        "_pid",
        "_rid",
        "_drop",
        F.when(c("malformed"), F.lit("malformed_json")).alias("_bad"),
        F.when(c("malformed"), c("json").substr(F.lit(1), cut)).otherwise(c("json")).alias("value"),
        "_key",
    )
    df = with_duplicates(df, uniform(s, "web.dup", F.col("_key")), 0.003).drop("_key")
    return SourceFrame(
        name="web_events",
        rows_per_person=11.0,
        frame=df,
        writer="text",
        options={"compression": "gzip"},
        extension="json.gz",
        payload=lambda _i: [F.col("value")],
        drift={tl.drops[1]: {"added_columns": ["device.browser"]}},
    )


def email_engagement(ctx: GenContext, persons: DataFrame) -> SourceFrame:
    """ESP engagement export (NDJSON); drop 2 renames ``campaign_id`` to ``campaign``."""
    s, tl = ctx.seed, ctx.timeline
    pid = F.col("person_id")
    df = persons.filter(F.col("email_subscriber"))
    w0 = F.greatest(F.col("first_seen_ts"), F.lit(tl.start_ts))
    weeks = F.greatest(F.lit(tl.end_ts) - w0, F.lit(0)) / (7 * DAY)
    per_week = 0.025 + 0.07 * uniform(s, "em.freq", pid)
    n = F.floor(weeks * per_week + uniform(s, "em.nf", pid)).cast("int")
    unsubscribes = uniform(s, "em.unsub", pid) < 0.06
    df = df.select(
        "person_id",
        "email",
        "activity",
        "churn_ts",
        w0.cast("long").alias("w0"),
        n.alias("n_msgs"),
        unsubscribes.alias("unsubscribes"),
    )
    df = df.withColumn("m", F.explode(seq(F.col("n_msgs"))))
    m = F.col("m")
    mkey = F.concat(pid.cast("string"), F.lit("."), m.cast("string"))
    first_week = F.ceil((F.col("w0") - tl.start_ts) / (7 * DAY))
    last_week = F.floor(F.lit((tl.end_ts - 1 - tl.start_ts) / (7 * DAY)))
    span = F.greatest(last_week - first_week, F.lit(0))
    week = (first_week + F.floor((m + uniform(s, "em.week", mkey)) / F.col("n_msgs") * span)).cast(
        "long"
    )
    # Campaigns go out on the same weekday each week, at 09:00 UTC plus send-queue delay.
    sent = (
        F.lit(tl.start_ts)
        + week * (7 * DAY)
        + 9 * 3600
        + F.floor(uniform(s, "em.delay", mkey) * 4 * 3600)
    )
    campaign_id = F.concat(F.lit("CMP-"), fmt_ts(F.lit(tl.start_ts) + week * (7 * DAY), "yyyyMMdd"))
    churned = F.col("churn_ts").isNotNull() & (sent > F.col("churn_ts"))
    p_open = (0.08 + 0.6 * F.col("activity")) * F.when(churned, 0.25).otherwise(1.0)
    bounced = uniform(s, "em.bounce", mkey) < 0.015
    opened = ~bounced & (uniform(s, "em.open", mkey) < p_open)
    clicked = opened & (uniform(s, "em.click", mkey) < 0.15 + 0.4 * F.col("activity"))
    unsub = opened & F.col("unsubscribes") & (m == F.col("n_msgs") - 1)
    open_ts = sent + F.floor(60 + F.pow(uniform(s, "em.open.ts", mkey), 3.0) * 3 * DAY)
    click_ts = open_ts + F.floor(5 + uniform(s, "em.click.ts", mkey) * 600)

    def ev(name: str, ts: Column, cond: Column | None = None) -> Column:
        value = F.struct(F.lit(name).alias("event"), ts.cast("long").alias("ts"))
        return value if cond is None else F.when(cond, value)

    events = F.filter(
        F.array(
            ev("sent", sent),
            ev("bounce", sent + 30, bounced),
            ev("open", open_ts, opened),
            ev("click", click_ts, clicked),
            ev("unsubscribe", click_ts + 20, unsub),
        ),
        lambda x: x.isNotNull(),
    )
    # Per-message values (md5 id, address as typed) are computed once, before exploding.
    df = df.select(
        "person_id",
        mkey.alias("mkey"),
        campaign_id.alias("campaign_id"),
        uuid_like(s, "email.message", mkey).alias("message_id"),
        email_variant(
            s,
            "em",
            mkey,
            F.col("email"),
            EmailNoise(mixed_case=0.02, upper=0.01, whitespace=0.01, junk=0.002, missing=0.0),
        ).alias("email"),
        events.alias("events"),
    )
    df = df.withColumn("e", F.explode("events"))
    rkey = F.concat(F.col("mkey"), F.lit("."), F.col("e.event"))
    message_id = F.col("message_id")
    event_ts = F.col("e.ts")
    bad_date = uniform(s, "em.bad", rkey) < 0.003
    ts_text = F.when(
        bad_date,
        pick(
            ["2024-02-30T25:61:00Z", "yesterday", "0000-00-00T00:00:00Z"],
            uniform(s, "em.badv", rkey),
        ),
    ).otherwise(fmt_ts(event_ts, ISO_Z))
    email = F.col("email")
    drop = drop_label(tl, event_ts)
    # Drift: the ESP renamed campaign_id to campaign in its later export.
    in_drop2 = drop == tl.drops[1]
    record = F.struct(
        message_id.alias("message_id"),
        email.alias("email"),
        F.when(~in_drop2, F.col("campaign_id")).alias("campaign_id"),
        F.when(in_drop2, F.col("campaign_id")).alias("campaign"),
        F.col("e.event").alias("event"),
        ts_text.alias("event_ts"),
    )
    df = df.select(
        pid.alias("_pid"),
        F.concat(message_id, F.lit(":"), F.col("e.event")).alias("_rid"),
        drop.alias("_drop"),
        F.when(bad_date, F.lit("unparsable_date")).alias("_bad"),
        F.to_json(record, {"ignoreNullFields": "true"}).alias("value"),
        rkey.alias("_key"),
    )
    df = with_duplicates(df, uniform(s, "em.dup", F.col("_key")), 0.005).drop("_key")
    return SourceFrame(
        name="email_engagement",
        rows_per_person=4.1,
        frame=df,
        writer="text",
        options={},
        extension="json",
        payload=lambda _i: [F.col("value")],
        drift={tl.drops[1]: {"renamed_columns": {"campaign_id": "campaign"}}},
    )
