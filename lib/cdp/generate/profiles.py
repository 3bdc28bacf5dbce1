"""Profile-like sources: CRM contacts, loyalty members, consents and support tickets."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdp.generate import _vocab as V
from cdp.generate._frame import (
    ISO_Z,
    SQL_TS,
    EmptyFile,
    SourceFrame,
    drop_label,
    fmt_ts,
    touched_after,
    with_duplicates,
)
from cdp.generate._rand import digits, hex_id, permute, pick, seq, uniform, weighted
from cdp.generate.noise import (
    EmailNoise,
    NameNoise,
    PhoneNoise,
    email_variant,
    first_name_variant,
    format_phone,
    last_name_variant,
    phone_variant,
)
from cdp.generate.persons import MAX_PERSONS, MUL_CRM_SECOND, GenContext
from cdp.generate.timeline import DAY

CRM_COLUMNS = [
    "contact_id",
    "first_name",
    "last_name",
    "email",
    "phone",
    "birth_date",
    "gender",
    "street",
    "city",
    "postcode",
    "country",
    "created_at",
    "updated_at",
    "is_deleted",
]


def crm_contacts(ctx: GenContext, persons: DataFrame) -> SourceFrame:
    """CRM export: full snapshot in drop 1; new, changed, moved and deleted contacts in drop 2.

    About 3% of people were entered twice (a second contact id with a differently typed
    name/email). Drop 2 adds the column ``preferred_language`` (drift).
    """
    s, tl = ctx.seed, ctx.timeline
    pid = F.col("person_id")
    df = persons.filter(F.col("in_crm"))
    twice = uniform(s, "crm.twice", pid) < 0.03
    df = df.withColumn(
        "contact_no",
        F.explode(F.when(twice, F.array(F.lit(0), F.lit(1))).otherwise(F.array(F.lit(0)))),
    )
    second_id = F.concat(
        F.lit("C"),
        digits(permute(pid, MUL_CRM_SECOND, ctx.offset("crm2"), MAX_PERSONS) + MAX_PERSONS, 8),
    )
    df = df.withColumn(
        "contact_id", F.when(F.col("contact_no") == 0, F.col("crm_contact_id")).otherwise(second_id)
    )
    cid = F.col("contact_id")
    created = F.when(F.col("contact_no") == 0, F.col("first_seen_ts")).otherwise(
        F.col("first_seen_ts")
        + F.floor(uniform(s, "crm.created2", cid) * (F.lit(tl.end_ts) - F.col("first_seen_ts")))
    )
    df = df.withColumn("created_ts", created.cast("long"))
    in_drop1 = F.col("created_ts") < tl.drop1_ts
    # Version 0 is last touched shortly after creation, inside the same delivery window.
    limit = F.when(in_drop1, F.lit(tl.drop1_ts - 1)).otherwise(F.lit(tl.end_ts - 1))
    df = df.withColumn(
        "v0_ts", touched_after(F.col("created_ts"), uniform(s, "crm.touch", cid), 30 * DAY, limit)
    )

    uu = uniform(s, "crm.update", cid)
    moved = F.col("moved_ts").isNotNull() & (F.col("contact_no") == 0)
    change = (
        F.when(~in_drop1, F.lit(None))
        .when(moved, F.lit("moved"))
        .when(uu < 0.012, F.lit("deleted"))
        .when(uu < 0.07, F.lit("changed"))
    )
    df = df.withColumn("change", change)
    update_ts = F.when(F.col("change") == "moved", F.col("moved_ts")).otherwise(
        F.lit(tl.drop1_ts) + F.floor(uniform(s, "crm.update.ts", cid) * (tl.end_ts - tl.drop1_ts))
    )
    df = df.withColumn("v1_ts", update_ts.cast("long"))
    df = df.withColumn(
        "version",
        F.explode(
            F.when(F.col("change").isNotNull(), F.array(F.lit(0), F.lit(1))).otherwise(
                F.array(F.lit(0))
            )
        ),
    )
    v1 = F.col("version") == 1
    is_change = v1 & (F.col("change") == "changed")
    is_moved = v1 & (F.col("change") == "moved")
    updated_ts = F.when(v1, F.col("v1_ts")).otherwise(F.col("v0_ts"))

    country = F.col("country")
    name_noise = NameNoise(nickname=0.05, typo=0.02, upper=0.02, no_accents=0.03, missing=0.005)
    first = first_name_variant(s, "crm", cid, F.col("first_name"), F.col("nickname"), name_noise)
    last = last_name_variant(
        s, "crm", cid, F.col("last_name"), NameNoise(typo=0.02, upper=0.02, no_accents=0.03)
    )
    # A "changed" version re-keys email and phone so they come out typed differently.
    vkey = F.concat(cid, F.when(is_change, F.lit("/v1")).otherwise(F.lit("")))
    email = email_variant(s, "crm", vkey, F.col("email"), EmailNoise(missing=0.04, junk=0.006))
    uses_home = F.col("landline_nsn").isNotNull() & (uniform(s, "crm.home", vkey) < 0.25)
    nsn = F.when(uses_home, F.col("landline_nsn")).otherwise(F.col("mobile_nsn"))
    phone = phone_variant(
        s, "crm", vkey, country, F.col("calling_code"), nsn, PhoneNoise(missing=0.08, junk=0.006)
    )
    ub = uniform(s, "crm.birth", cid)
    bad_birth = ub < 0.005
    birth = (
        F.when(
            bad_birth,
            pick(["31/02/1985", "unknown", "1985-13-01", "00/00/0000"], uniform(s, "crm.bb", cid)),
        )
        .when(ub < 0.06, F.lit(None))
        .otherwise(F.date_format("birth_date", "yyyy-MM-dd"))
    )
    gender = F.when(F.col("gender") == "X", pick(["U", ""], uniform(s, "crm.g", cid))).otherwise(
        F.when(uniform(s, "crm.g.missing", cid) < 0.04, F.lit("")).otherwise(F.col("gender"))
    )
    lang_by_cc = F.coalesce(*[F.when(country == c, F.lit(v)) for c, v in V.LANGUAGES.items()])
    df = df.select(
        pid.alias("_pid"),
        cid.alias("_rid"),
        drop_label(tl, updated_ts).alias("_drop"),
        F.when(bad_birth, F.lit("unparsable_date")).alias("_bad"),
        cid.alias("contact_id"),
        first.alias("first_name"),
        last.alias("last_name"),
        email.alias("email"),
        phone.alias("phone"),
        birth.alias("birth_date"),
        gender.alias("gender"),
        F.when(is_moved, F.col("new_street")).otherwise(F.col("street")).alias("street"),
        F.when(is_moved, F.col("new_city")).otherwise(F.col("city")).alias("city"),
        F.when(is_moved, F.col("new_postcode")).otherwise(F.col("postcode")).alias("postcode"),
        country.alias("country"),
        fmt_ts(F.col("created_ts"), SQL_TS).alias("created_at"),
        fmt_ts(updated_ts, SQL_TS).alias("updated_at"),
        (v1 & (F.col("change") == "deleted")).alias("is_deleted"),
        F.when(uniform(s, "crm.lang", cid) < 0.9, lang_by_cc).alias("preferred_language"),
        F.col("version"),
    )
    df = with_duplicates(df, uniform(s, "crm.dup", F.col("contact_id"), F.col("version")), 0.005)

    def payload(drop_index: int) -> list[Column]:
        cols = [F.col(c) for c in CRM_COLUMNS]
        return cols if drop_index == 0 else [*cols, F.col("preferred_language")]

    return SourceFrame(
        name="crm_contacts",
        same_payload=False,
        rows_per_person=0.9,
        frame=df,
        writer="csv",
        options={"header": "true", "sep": ",", "encoding": "UTF-8"},
        extension="csv",
        payload=payload,
        multi_version=True,
        drift={tl.drops[1]: {"added_columns": ["preferred_language"]}},
    )


def loyalty_members(ctx: GenContext, persons: DataFrame) -> SourceFrame:
    """Loyalty programme members as XML; drop 2 holds new members and tier changes."""
    s, tl = ctx.seed, ctx.timeline
    pid = F.col("person_id")
    mid = F.col("member_id")
    df = persons.filter(F.col("in_loyalty"))
    joined = F.greatest(F.col("first_seen_ts"), F.lit(tl.start_ts - 3 * 365 * DAY)) + F.floor(
        F.pow(uniform(s, "loy.join", pid), 2.0) * (F.lit(tl.end_ts) - F.col("first_seen_ts")) * 0.8
    )
    df = df.withColumn("joined_ts", F.least(joined, F.lit(tl.end_ts - 1)).cast("long"))
    upgrade = (F.col("joined_ts") < tl.drop1_ts) & (uniform(s, "loy.upgrade", pid) < 0.1)
    df = df.withColumn(
        "version",
        F.explode(F.when(upgrade, F.array(F.lit(0), F.lit(1))).otherwise(F.array(F.lit(0)))),
    )
    v1 = F.col("version") == 1
    tier_rank = F.least(
        F.floor(F.col("activity") * 3.2 + uniform(s, "loy.tier", pid) * 0.8), F.lit(2)
    ) + F.when(v1, 1).otherwise(0)
    tier = F.element_at(F.array(*[F.lit(t) for t in V.LOYALTY_TIERS]), (tier_rank + 1).cast("int"))
    v0_ts = touched_after(
        F.col("joined_ts"),
        uniform(s, "loy.touch", pid),
        7 * DAY,
        F.when(F.col("joined_ts") < tl.drop1_ts, F.lit(tl.drop1_ts - 1)).otherwise(
            F.lit(tl.end_ts - 1)
        ),
    )
    v1_ts = F.lit(tl.drop1_ts) + F.floor(uniform(s, "loy.up.ts", pid) * (tl.end_ts - tl.drop1_ts))
    updated = F.when(v1, v1_ts).otherwise(v0_ts).cast("long")

    first = first_name_variant(
        s, "loy", mid, F.col("first_name"), F.col("nickname"), NameNoise(nickname=0.1, typo=0.02)
    )
    last = last_name_variant(s, "loy", mid, F.col("last_name"), NameNoise(typo=0.02))
    un = uniform(s, "loy.nameform", mid)
    name = (
        F.when(un < 0.15, F.concat(F.upper(last), F.lit(", "), first))
        .when(un < 0.2, F.concat(F.substring(first, 1, 1), F.lit(". "), last))
        .otherwise(F.concat(first, F.lit(" "), last))
    )
    up = uniform(s, "loy.phone", mid)
    phone = (
        F.when(up < 0.08, F.lit(None))
        .when(up < 0.085, pick(V.JUNK_PHONES, uniform(s, "loy.pj", mid)))
        .when(
            up < 0.2,
            format_phone(F.col("country"), F.col("calling_code"), F.col("mobile_nsn"), "e164"),
        )
        .otherwise(
            format_phone(
                F.col("country"), F.col("calling_code"), F.col("mobile_nsn"), "international"
            )
        )
    )
    df = df.select(
        pid.alias("_pid"),
        mid.alias("_rid"),
        drop_label(tl, updated).alias("_drop"),
        F.lit(None).cast("string").alias("_bad"),
        F.lit(False).alias("_dup"),
        mid.alias("member_id"),
        F.col("card_number"),
        name.alias("name"),
        email_variant(s, "loy", mid, F.col("email"), EmailNoise(missing=0.03)).alias("email"),
        phone.alias("phone"),
        F.when(uniform(s, "loy.birth", mid) < 0.08, F.lit(None))
        .otherwise(F.date_format("birth_date", "yyyy-MM-dd"))
        .alias("birth_date"),
        tier.alias("tier"),
        fmt_ts(F.col("joined_ts"), "yyyy-MM-dd'T'HH:mm:ss").alias("joined_at"),
        fmt_ts(updated, "yyyy-MM-dd'T'HH:mm:ss").alias("updated_at"),
    )
    cols = [
        "member_id",
        "card_number",
        "name",
        "email",
        "phone",
        "birth_date",
        "tier",
        "joined_at",
        "updated_at",
    ]
    return SourceFrame(
        name="loyalty_members",
        rows_per_person=0.42,
        frame=df,
        writer="xml",
        options={"rowTag": "member", "rootTag": "members"},
        extension="xml",
        payload=lambda _i: [F.col(c) for c in cols],
        multi_version=True,
    )


def consents(ctx: GenContext, persons: DataFrame) -> SourceFrame:
    """Consent events (grants, later withdrawals) keyed by email or CRM contact id, as CSV."""
    s, tl = ctx.seed, ctx.timeline
    pid = F.col("person_id")
    df = persons.filter(uniform(s, "cons.has", pid) < 0.72)
    n = (1 + F.when(uniform(s, "cons.n", pid) < 0.2, 1).otherwise(0)).cast("int")
    df = df.withColumn("k", F.explode(seq(n)))
    key = F.concat_ws(".", pid.cast("string"), F.col("k").cast("string"))
    withdraws = uniform(s, "cons.withdraw", key) < 0.15
    df = df.withColumn(
        "event",
        F.explode(F.when(withdraws, F.array(F.lit(0), F.lit(1))).otherwise(F.array(F.lit(0)))),
    )
    start = F.greatest(F.col("first_seen_ts"), F.lit(tl.start_ts))
    granted = start + F.floor(
        uniform(s, "cons.ts", key) * F.least(F.lit(60 * DAY), F.lit(tl.end_ts) - start)
    )
    withdrawn = granted + F.floor(uniform(s, "cons.wts", key) * (F.lit(tl.end_ts) - granted))
    ts = F.when(F.col("event") == 1, withdrawn).otherwise(granted).cast("long")
    ekey = F.concat_ws(".", key, F.col("event").cast("string"))
    by_crm = F.col("in_crm") & (uniform(s, "cons.bycrm", key) < 0.35)
    consent_id = F.concat(F.lit("CNS-"), hex_id(s, "consent", ekey, length=16))
    df = df.select(
        pid.alias("_pid"),
        consent_id.alias("_rid"),
        drop_label(tl, ts).alias("_drop"),
        F.lit(None).cast("string").alias("_bad"),
        F.lit(False).alias("_dup"),
        consent_id.alias("consent_id"),
        F.when(
            ~by_crm,
            email_variant(s, "cons", key, F.col("email"), EmailNoise(missing=0.0, junk=0.004)),
        ).alias("email"),
        F.when(by_crm, F.col("crm_contact_id")).alias("crm_contact_id"),
        pick(V.CONSENT_PURPOSES, uniform(s, "cons.purpose", key)).alias("purpose"),
        weighted(
            [("email", 0.5), ("sms", 0.2), ("push", 0.15), ("web", 0.15)],
            uniform(s, "cons.ch", key),
        ).alias("channel"),
        F.when(F.col("event") == 1, F.lit("withdrawn")).otherwise(F.lit("granted")).alias("status"),
        fmt_ts(ts, ISO_Z).alias("consent_ts"),
        pick(V.CONSENT_SYSTEMS, uniform(s, "cons.sys", ekey)).alias("source_system"),
    )
    cols = [
        "consent_id",
        "email",
        "crm_contact_id",
        "purpose",
        "channel",
        "status",
        "consent_ts",
        "source_system",
    ]
    return SourceFrame(
        name="consents",
        rows_per_person=1.05,
        frame=df,
        writer="csv",
        options={"header": "true", "sep": ",", "encoding": "UTF-8"},
        extension="csv",
        payload=lambda _i: [F.col(c) for c in cols],
    )


def support_tickets(ctx: GenContext, persons: DataFrame) -> SourceFrame:
    """Support tickets as NDJSON, with free text bodies; drop 2 re-exports closed tickets."""
    s, tl = ctx.seed, ctx.timeline
    pid = F.col("person_id")
    df = persons.filter(uniform(s, "tix.has", pid) < 0.13)
    n = (1 + F.when(uniform(s, "tix.n", pid) < 0.4, 1).otherwise(0)).cast("int")
    df = df.withColumn("k", F.explode(seq(n)))
    key = F.concat_ws(".", pid.cast("string"), F.col("k").cast("string"))
    start = F.greatest(F.col("first_seen_ts"), F.lit(tl.start_ts))
    opened = (start + F.floor(uniform(s, "tix.ts", key) * (F.lit(tl.end_ts) - start))).cast("long")
    df = df.withColumn("opened_ts", opened)
    reexport = (F.col("opened_ts") < tl.drop1_ts) & (uniform(s, "tix.re", key) < 0.25)
    df = df.withColumn(
        "version",
        F.explode(F.when(reexport, F.array(F.lit(0), F.lit(1))).otherwise(F.array(F.lit(0)))),
    )
    v1 = F.col("version") == 1
    limit = F.when(F.col("opened_ts") < tl.drop1_ts, F.lit(tl.drop1_ts - 1)).otherwise(
        F.lit(tl.end_ts - 1)
    )
    v0_ts = touched_after(F.col("opened_ts"), uniform(s, "tix.upd", key), 3 * DAY, limit)
    v1_ts = F.lit(tl.drop1_ts) + F.floor(uniform(s, "tix.v1", key) * 20 * DAY)
    updated = F.when(v1, v1_ts).otherwise(v0_ts).cast("long")
    category = pick(V.TICKET_CATEGORIES, uniform(s, "tix.cat", key))
    ref = F.upper(hex_id(s, "tix.ref", key, length=8))
    subject = F.coalesce(*[F.when(category == c, F.lit(t)) for c, t in V.TICKET_SUBJECTS.items()])
    template = F.coalesce(*[F.when(category == c, F.lit(t)) for c, t in V.TICKET_BODIES.items()])
    signer = first_name_variant(
        s, "tix", key, F.col("first_name"), F.col("nickname"), NameNoise(nickname=0.4)
    )
    body = F.concat(F.replace(template, F.lit("{ref}"), ref), F.lit("\n\nThanks,\n"), signer)
    ticket_id = F.concat(F.lit("T-"), hex_id(s, "ticket", key, length=12))
    status = F.when(v1, F.lit("closed")).otherwise(
        weighted([("open", 0.3), ("pending", 0.2), ("closed", 0.5)], uniform(s, "tix.st", key))
    )
    email = email_variant(
        s,
        "tix",
        key,
        F.col("email"),
        EmailNoise(mixed_case=0.1, upper=0.05, whitespace=0.08, junk=0.01, missing=0.05),
    )
    phone = F.when(
        uniform(s, "tix.gives.phone", key) < 0.5,
        phone_variant(
            s,
            "tix",
            key,
            F.col("country"),
            F.col("calling_code"),
            F.col("mobile_nsn"),
            PhoneNoise(missing=0.0, junk=0.01),
        ),
    )
    record = F.struct(
        ticket_id.alias("ticket_id"),
        email.alias("email"),
        phone.alias("phone"),
        subject.alias("subject"),
        body.alias("body"),
        fmt_ts(F.col("opened_ts"), ISO_Z).alias("opened_at"),
        fmt_ts(updated, ISO_Z).alias("updated_at"),
        status.alias("status"),
        category.alias("category"),
    )
    df = df.select(
        pid.alias("_pid"),
        ticket_id.alias("_rid"),
        drop_label(tl, updated).alias("_drop"),
        F.lit(None).cast("string").alias("_bad"),
        F.lit(False).alias("_dup"),
        F.to_json(record, {"ignoreNullFields": "true"}).alias("value"),
    )
    return SourceFrame(
        name="support_tickets",
        rows_per_person=0.21,
        frame=df,
        writer="text",
        options={},
        extension="json",
        payload=lambda _i: [F.col("value")],
        multi_version=True,
        empty_files=(EmptyFile(1, "part-empty.json", b""),),
    )
