"""Purchases (the ground truth behind labels) and the two sources built from them.

A buyer makes a first purchase soon after first contact and repeat purchases at their own
rate until they drop out (see :func:`purchases_frame`); each purchase goes online
(``ecommerce_orders``) or to a store (``pos_transactions``) according to the person's channel
preference.
"""

from __future__ import annotations

import math

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdp.generate import _vocab as V
from cdp.generate._frame import EmptyFile, SourceFrame, drop_label, fmt_ts, with_duplicates
from cdp.generate._rand import digits, hex_id, pick, poisson, randint, seq, uniform, weighted
from cdp.generate.noise import (
    EmailNoise,
    NameNoise,
    PhoneNoise,
    email_variant,
    first_name_variant,
    last_name_variant,
    phone_variant,
)
from cdp.generate.persons import CITIES, GenContext
from cdp.generate.timeline import DAY, YEAR

_MAX_PURCHASES = 150

# Person columns the transaction sources need, carried through the explode.
_CARRY = [
    "person_id",
    "country",
    "calling_code",
    "first_name",
    "nickname",
    "last_name",
    "email",
    "mobile_nsn",
    "landline_nsn",
    "in_crm",
    "crm_contact_id",
    "has_account",
    "account_id",
    "in_loyalty",
    "card_number",
    "basket_scale",
    "city",
    "city_index",
    "home_store_id",
    "online_share",
]


def purchases_frame(ctx: GenContext, persons: DataFrame) -> DataFrame:
    """One row per purchase: person, id, kind (online/store), epoch time, basket scale.

    A buyer's first purchase is at ``first_purchase_ts``; repeat purchases follow as a Poisson
    process at ``purchase_rate`` per year until ``churn_ts`` (the drop-out), thinned by the
    season (:func:`_season`). Only what falls inside the data window is kept: a customer
    acquired before it shows up with their repeat purchases alone, as in a real export.
    """
    s, tl = ctx.seed, ctx.timeline
    pid = F.col("person_id")
    first = F.col("first_purchase_ts")
    w0 = F.greatest(first, F.lit(tl.start_ts))
    w1 = F.least(F.coalesce(F.col("churn_ts"), F.lit(tl.end_ts)), F.lit(tl.end_ts))
    years = F.greatest(w1 - w0, F.lit(0)) / YEAR
    # Candidates at the rate divided by the season's mean acceptance, so that thinning keeps
    # ``purchase_rate`` purchases a year on average.
    candidates = F.coalesce(F.col("purchase_rate") * years / _SEASON_MEAN, F.lit(0.0))
    repeats = F.least(
        poisson(candidates, uniform(s, "n.buy", pid), uniform(s, "n.buy.z", pid)),
        F.lit(_MAX_PURCHASES - 1),
    )
    df = persons.select(
        *_CARRY,
        first.alias("first_ts"),
        w0.alias("w0"),
        w1.alias("w1"),
        F.coalesce(repeats, F.lit(0)).alias("n_repeats"),
    )
    df = df.filter(F.col("first_ts").isNotNull())
    # seq 0 is the first purchase, 1..n the repeat candidates.
    df = df.withColumn("seq", F.explode(seq(F.col("n_repeats") + 1)))
    k = F.col("seq")
    repeat_ts = F.col("w0") + F.floor(uniform(s, "buy.ts", pid, k) * (F.col("w1") - F.col("w0")))
    ts = F.when(k == 0, F.col("first_ts")).otherwise(repeat_ts)
    in_window = (ts >= tl.start_ts) & (ts < tl.end_ts)
    kept = F.when(k == 0, in_window).otherwise(
        in_window & (uniform(s, "buy.season", pid, k) < _season(ts))
    )
    df = df.withColumn("ts", ts).filter(kept)
    online = uniform(s, "buy.kind", pid, k) < F.col("online_share")
    # Stores trade 08:00-21:00; online orders come in around the clock.
    in_store_hours = (
        F.floor(F.col("ts") / DAY) * DAY
        + 8 * 3600
        + F.floor(uniform(s, "buy.hour", pid, k) * 13 * 3600)
    )
    df = df.withColumn(
        "purchase_ts", F.when(online, F.col("ts")).otherwise(in_store_hours).cast("long")
    )
    df = df.withColumn("kind", F.when(online, F.lit("online")).otherwise(F.lit("store")))
    df = df.withColumn(
        "purchase_id",
        F.when(
            online, F.concat(F.lit("ORD-"), F.upper(hex_id(s, "order", pid, k, length=16)))
        ).otherwise(F.concat(F.lit("R"), F.upper(hex_id(s, "receipt", pid, k, length=16)))),
    )
    return df.drop("first_ts", "w0", "w1", "n_repeats", "ts")


# Seasonality: the acceptance of a candidate purchase peaks in mid-December and is a third of
# that in mid-June (amplitude 0.5), as in most consumer retail; its mean over a year is 2/3.
_SEASON_AMPLITUDE = 0.5
_SEASON_PEAK_DAY = 350  # day of the year
_SEASON_MEAN = 1 / (1 + _SEASON_AMPLITUDE)


def _season(ts: Column) -> Column:
    """Acceptance in (0, 1] of a purchase at epoch second ``ts``."""
    day_of_year = (ts / DAY) % 365.2425  # 1970-01-01 is day 0; the drift is under a day
    phase = 2 * math.pi * (day_of_year - _SEASON_PEAK_DAY) / 365.2425
    return (1 + _SEASON_AMPLITUDE * F.cos(phase)) / (1 + _SEASON_AMPLITUDE)


def ground_truth_purchases(purchases: DataFrame) -> DataFrame:
    """Purchases as written to ``_ground_truth/purchases``."""
    return purchases.select(
        "person_id",
        "purchase_id",
        "kind",
        F.timestamp_seconds("purchase_ts").alias("purchased_at"),
    )


def _amount_text(cents: Column, sep: str) -> Column:
    """Cents as "12.50" / "12,50"; built from integers so no locale or float format leaks in."""
    return F.concat(F.floor(cents / 100).cast("string"), F.lit(sep), digits(cents % 100, 2))


def ecommerce_orders(ctx: GenContext, purchases: DataFrame) -> SourceFrame:
    """Online orders with the buyer's billing name and nested line items. Drop 2 writes
    ``total_amount`` as a string (drift)."""
    s, tl = ctx.seed, ctx.timeline
    oid = F.col("purchase_id")
    df = purchases.filter(F.col("kind") == "online")
    n_items = (1 + F.floor(F.pow(uniform(s, "items.n", oid), 2.0) * 4)).cast("int")
    cats = F.array(*[F.lit(c) for c in V.PRODUCT_CATEGORIES])
    n_cat = len(V.PRODUCT_CATEGORIES)

    def item(i: Column) -> Column:
        cat = F.element_at(cats, (F.floor(uniform(s, "item.cat", oid, i) * n_cat) + 1).cast("int"))
        sku = F.concat(
            F.upper(F.substring(cat, 1, 3)),
            F.lit("-"),
            digits(F.floor(uniform(s, "item.sku", oid, i) * 20_000), 5),
        )
        uq = uniform(s, "item.qty", oid, i)
        qty = (1 + F.when(uq < 0.2, 1).otherwise(0) + F.when(uq < 0.05, 1).otherwise(0)).cast("int")
        price = F.round(
            F.col("basket_scale") * (0.2 + 0.9 * uniform(s, "item.price", oid, i)) / n_items, 2
        )
        return F.struct(
            sku.alias("sku"), cat.alias("category"), qty.alias("qty"), price.alias("unit_price")
        )

    df = df.withColumn("items", F.transform(F.sequence(F.lit(1), n_items), item))
    total = F.aggregate(
        "items",
        F.lit(0.0),
        lambda acc, x: acc + x["qty"].cast("double") * x["unit_price"],
    )
    df = df.withColumn("total_cents", F.round(total * 100).cast("long"))
    df = df.withColumn("total_amount", F.round(F.col("total_cents") / 100.0, 2))
    df = df.withColumn(
        "customer_id",
        F.when(F.col("has_account") & (uniform(s, "ord.acct", oid) < 0.85), F.col("account_id")),
    )
    df = df.withColumn(
        "customer_email",
        email_variant(
            s,
            "ord",
            oid,
            F.col("email"),
            EmailNoise(mixed_case=0.06, upper=0.01, whitespace=0.02, junk=0.004, missing=0.003),
        ),
    )
    # Shops export the billing name as typed at checkout: sometimes the nickname, a typo, all
    # capitals; a few orders (marketplace hand-overs, wallet payments) come without one.
    billing_first = first_name_variant(
        s,
        "ord",
        oid,
        F.col("first_name"),
        F.col("nickname"),
        NameNoise(nickname=0.1, typo=0.01, upper=0.02, no_accents=0.03),
    )
    billing_last = last_name_variant(
        s, "ord", oid, F.col("last_name"), NameNoise(typo=0.01, upper=0.02, no_accents=0.03)
    )
    df = df.withColumn(
        "billing_name",
        F.when(uniform(s, "ord.bill", oid) >= 0.03, F.concat_ws(" ", billing_first, billing_last)),
    )
    df = df.withColumn(
        "crm_contact_id",
        F.when(F.col("in_crm") & (uniform(s, "ord.crm", oid) < 0.55), F.col("crm_contact_id")),
    )
    df = df.withColumn("order_ts", F.timestamp_seconds("purchase_ts"))
    df = df.withColumn(
        "currency",
        F.coalesce(*[F.when(F.col("country") == c, F.lit(v)) for c, v in V.CURRENCIES.items()]),
    )
    df = df.withColumn(
        "channel",
        weighted([("web", 0.6), ("app", 0.3), ("marketplace", 0.1)], uniform(s, "ord.ch", oid)),
    )
    df = df.select(
        F.col("person_id").alias("_pid"),
        oid.alias("order_id"),
        drop_label(tl, F.col("purchase_ts")).alias("_drop"),
        F.lit(None).cast("string").alias("_bad"),
        "customer_id",
        "customer_email",
        "billing_name",
        "crm_contact_id",
        "order_ts",
        "currency",
        "total_amount",
        "total_cents",
        "items",
        "channel",
    ).withColumn("_rid", F.col("order_id"))
    df = with_duplicates(df, uniform(s, "ord.dup", F.col("order_id")), 0.003)

    def payload(drop_index: int) -> list[Column]:
        amount = (
            F.col("total_amount")
            if drop_index == 0
            else _amount_text(F.col("total_cents"), ".").alias("total_amount")
        )
        return [
            F.col("order_id"),
            F.col("customer_id"),
            F.col("customer_email"),
            F.col("billing_name"),
            F.col("crm_contact_id"),
            F.col("order_ts"),
            F.col("currency"),
            amount,
            F.col("items"),
            F.col("channel"),
        ]

    return SourceFrame(
        name="ecommerce_orders",
        same_payload=False,
        rows_per_person=2.9,
        frame=df,
        writer="parquet",
        options={},
        extension="parquet",
        payload=payload,
        drift={tl.drops[1]: {"changed_type": {"total_amount": ["double", "string"]}}},
    )


POS_HEADER = (
    "receipt_id;store_id;store_city;loyalty_card;customer_name;phone;txn_date;amount;"
    "currency;payment_method"
)


def pos_transactions(ctx: GenContext, purchases: DataFrame) -> SourceFrame:
    """Store receipts as ``;``-separated Latin-1 text with decimal commas and bad rows.

    Lines are assembled here (not by the CSV writer) so that rows with a wrong number of
    fields, unparsable dates and unparsable amounts can be written exactly as a broken till
    export would write them.
    """
    s, tl = ctx.seed, ctx.timeline
    rid = F.col("purchase_id")
    country = F.col("country")
    df = purchases.filter(F.col("kind") == "store")
    at_home = uniform(s, "pos.home", rid) < 0.8
    u_city = uniform(s, "pos.city", rid)
    other_city = CITIES.at(CITIES.index(country, u_city))
    other_store = F.concat(
        country,
        digits(CITIES.local_index(country, u_city), 2),
        randint(uniform(s, "pos.store", rid), 1, 4).cast("string"),
    )
    store_id = F.when(at_home, F.col("home_store_id")).otherwise(other_store)
    store_city = F.when(at_home, F.col("city")).otherwise(other_city)

    shows_card = F.col("in_loyalty") & (uniform(s, "pos.card", rid) < 0.75)
    card = F.col("card_number")
    spaced = F.concat_ws(
        " ", card.substr(1, 4), card.substr(5, 4), card.substr(9, 4), card.substr(13, 4)
    )
    loyalty = F.when(
        shows_card, F.when(uniform(s, "pos.cardfmt", rid) < 0.3, spaced).otherwise(card)
    )
    # Tills print the cardholder's name from the loyalty account, often upper-cased.
    first = first_name_variant(
        s, "pos", rid, F.col("first_name"), F.col("nickname"), NameNoise(typo=0.01)
    )
    last = last_name_variant(s, "pos", rid, F.col("last_name"), NameNoise(typo=0.01, upper=0.5))
    name = F.when(shows_card, F.concat_ws(" ", first, last))
    gives_phone = uniform(s, "pos.gives.phone", rid) < 0.15
    phone = F.when(
        gives_phone,
        phone_variant(
            s,
            "pos",
            rid,
            country,
            F.col("calling_code"),
            F.col("mobile_nsn"),
            PhoneNoise(
                e164=0.0,
                international=0.05,
                national=0.5,
                punctuated=0.05,
                digits=0.4,
                intl00=0.0,
                junk=0.03,
                missing=0.0,
            ),
        ),
    )
    cents = F.round(F.col("basket_scale") * (0.3 + 1.2 * uniform(s, "pos.amount", rid)) * 100).cast(
        "long"
    )
    txn_date = fmt_ts(F.col("purchase_ts"), "dd/MM/yyyy HH:mm")
    amount = _amount_text(cents, ",")
    currency = F.coalesce(*[F.when(country == c, F.lit(v)) for c, v in V.CURRENCIES.items()])
    payment = pick(V.POS_PAYMENTS, uniform(s, "pos.pay", rid))

    ub = uniform(s, "pos.bad", rid)
    bad = (
        F.when(ub < 0.005, F.lit("wrong_column_count"))
        .when(ub < 0.009, F.lit("unparsable_date"))
        .when(ub < 0.012, F.lit("unparsable_number"))
    )
    ubk = uniform(s, "pos.bad.kind", rid)
    bad_date = pick(
        ["31/02/2024 25:61", "2024-13-45 10:00", "??/??/???? ??:??", "00/00/0000 00:00"], ubk
    )
    bad_amount = pick(["N/A", "12,5O", "--", "#WERT!"], ubk)
    fields = {
        "receipt_id": rid,
        "store_id": store_id,
        "store_city": store_city,
        "loyalty_card": loyalty,
        "customer_name": name,
        "phone": phone,
        "txn_date": F.when(bad == "unparsable_date", bad_date).otherwise(txn_date),
        # A classic till bug: the decimal comma written as the field separator (one extra field).
        "amount": F.when(bad == "unparsable_number", bad_amount)
        .when((bad == "wrong_column_count") & (ubk < 0.5), F.regexp_replace(amount, ",", ";"))
        .otherwise(amount),
        "currency": currency,
        "payment_method": payment,
    }
    assert ";".join(fields) == POS_HEADER
    cols = [F.coalesce(c, F.lit("")) for c in fields.values()]
    full = F.concat_ws(";", *cols)
    # The other half of the short rows lose their last two fields (a truncated line).
    short = F.concat_ws(";", *cols[:-2])
    line = F.when((bad == "wrong_column_count") & (ubk >= 0.5), short).otherwise(full)
    df = df.select(
        F.col("person_id").alias("_pid"),
        rid.alias("_rid"),
        drop_label(tl, F.col("purchase_ts")).alias("_drop"),
        bad.alias("_bad"),
        line.alias("line"),
    )
    df = with_duplicates(df, uniform(s, "pos.dup", F.col("_rid")), 0.002)
    header_only = (POS_HEADER + "\n").encode("iso-8859-1")
    return SourceFrame(
        name="pos_transactions",
        rows_per_person=1.6,
        frame=df,
        writer="csv",
        # One string column whose *name* is the header line; no quoting, nothing trimmed:
        # the CSV writer then only adds the header and encodes to Latin-1.
        options={
            "header": "true",
            "sep": "\u0001",
            "quote": "",
            "escapeQuotes": "false",
            "ignoreLeadingWhiteSpace": "false",
            "ignoreTrailingWhiteSpace": "false",
            "encoding": "ISO-8859-1",
        },
        extension="csv",
        payload=lambda _i: [F.col("line").alias(POS_HEADER)],
        empty_files=(EmptyFile(1, "store_closed_header_only.csv", header_only),),
        whole_stage_codegen=False,
    )
