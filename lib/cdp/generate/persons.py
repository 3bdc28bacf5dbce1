"""The ground-truth person table, as one chain of column expressions over ``spark.range``.

Every attribute is a pure function of ``(seed, person_id)`` or ``(seed, household_id)``, so a
household member's shared attributes (address, landline, surname, a shared email) are
recomputed from the household id instead of joined, and every source builder can rebuild
the table from scratch for the price of a few hashes per row.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp.generate import _vocab as V
from cdp.generate._rand import (
    Vocab,
    digits,
    exponential,
    permute,
    pick,
    randint,
    standard_normal,
    uniform,
    weighted,
)
from cdp.generate.timeline import DAY, YEAR, Timeline

# Identifiers derived from a permutation of the person id are unique below this bound.
MAX_PERSONS = 8_000_000
_MOD = MAX_PERSONS  # = 2^9 * 5^6: multipliers below are odd and not multiples of 5.
_MUL_MOBILE = 5_393_869
_MUL_LANDLINE = 2_718_281
_MUL_EMAIL = 3_141_593
_MUL_CRM = 6_972_593
_MUL_ACCOUNT = 4_398_047
_MUL_MEMBER = 1_618_033
_MUL_CARD = 7_346_519
MUL_CRM_SECOND = 2_236_067


@dataclass(frozen=True)
class GenContext:
    """What every builder needs: the session, the seed, the size and the calendar."""

    spark: SparkSession
    seed: int
    persons: int
    timeline: Timeline
    partitions: int

    def offset(self, salt: str) -> int:
        """A seed-dependent offset for the identifier permutations."""
        return (self.seed * 7919 + sum(ord(c) * 31**i for i, c in enumerate(salt))) % _MOD


def _by_country(country: Column, values: dict[str, Column]) -> Column:
    expr: Column | None = None
    for cc, value in values.items():
        expr = F.when(country == cc, value) if expr is None else expr.when(country == cc, value)
    assert expr is not None
    return expr


_FIRST_GROUPS = {
    f"{cc}{g}": [n for n in names if n[2] == g]
    for cc, names in V.FIRST_NAMES.items()
    for g in ("F", "M")
}
_FIRST = Vocab({k: [n[0] for n in v] for k, v in _FIRST_GROUPS.items()})
_NICKNAMES = [n[1] for v in _FIRST_GROUPS.values() for n in v]
_LAST = Vocab(V.LAST_NAMES)
_STREETS = Vocab(V.STREETS)
CITIES = Vocab({cc: [c for c, _ in cities] for cc, cities in V.CITIES.items()})
_POSTCODE_PREFIXES = [p for cities in V.CITIES.values() for _, p in cities]


def _first_name_index(seed: int, ident: Column, name_gender: Column, country: Column) -> Column:
    """Index into :data:`_FIRST` (and the parallel nicknames) for the person ``ident``."""
    return _FIRST.index(F.concat(country, name_gender), uniform(seed, "first", ident))


def _gender(seed: int, ident: Column) -> Column:
    return weighted([("F", 0.49), ("M", 0.49), ("X", 0.02)], uniform(seed, "gender", ident))


def _name_gender(seed: int, ident: Column, gender: Column) -> Column:
    # People outside the binary still need a given name from one of the two lists.
    return F.when(gender == "X", pick(["F", "M"], uniform(seed, "ngender", ident))).otherwise(
        gender
    )


def ascii_fold(text: Column) -> Column:
    """Lower-case, accents removed, spaces/apostrophes/hyphens dropped: for email local parts."""
    lowered = F.regexp_replace(F.lower(text), "ß", "ss")
    folded = F.translate(lowered, "àáâäãåçèéêëìíîïñòóôöõøùúûüýÿ", "aaaaaaceeeeiiiinoooooouuuuyy")
    return F.regexp_replace(folded, "[^a-z0-9]", "")


def _email(
    seed: int, ctx: GenContext, ident: Column, first: Column, last: Column, country: Column
) -> Column:
    num = permute(ident, _MUL_EMAIL, ctx.offset("email"), _MOD).cast("string")
    f, la = ascii_fold(first), ascii_fold(last)
    u = uniform(seed, "email.pattern", ident)
    local = (
        F.when(u < 0.35, F.concat(f, F.lit("."), la, num))
        .when(u < 0.55, F.concat(F.substring(f, 1, 1), la, num))
        .when(u < 0.7, F.concat(f, F.lit("_"), la, num))
        .when(u < 0.85, F.concat(f, num))
        .otherwise(F.concat(la, F.lit("."), f, num))
    )
    local_domain = _by_country(country, {cc: F.lit(d) for cc, d in V.EMAIL_DOMAINS_LOCAL.items()})
    ud = uniform(seed, "email.domain", ident)
    domain = F.when(ud < 0.3, local_domain).otherwise(
        pick(V.EMAIL_DOMAINS_COMMON, (ud - 0.3) / 0.7)
    )
    return F.concat(local, F.lit("@"), domain)


def _digit(seed: int, salt: str, ident: Column, lo: int = 0, hi: int = 10) -> Column:
    return randint(uniform(seed, salt, ident), lo, hi).cast("string")


def _mobile_nsn(ctx: GenContext, pid: Column, country: Column) -> Column:
    """National significant number of a personal mobile, unique per person."""
    s = ctx.seed
    u = permute(pid, _MUL_MOBILE, ctx.offset("mobile"), _MOD)
    u7 = digits(u, 7)
    return _by_country(
        country,
        {
            "GB": F.concat(F.lit("7"), _digit(s, "m1", pid, 4, 10), _digit(s, "m2", pid), u7),
            "US": F.concat(
                pick(V.US_MOBILE_AREAS, uniform(s, "m.area", pid)),
                (F.floor(u / 10_000) + 200).cast("string"),
                digits(u % 10_000, 4),
            ),
            "DE": F.concat(
                pick(
                    ["151", "152", "157", "160", "170", "171", "175", "176"], uniform(s, "m1", pid)
                ),
                u7,
                _digit(s, "m2", pid),
            ),
            "FR": F.concat(
                pick(["6", "7"], uniform(s, "m1", pid)), _digit(s, "m2", pid, 1, 10), u7
            ),
            "NL": F.concat(F.lit("6"), _digit(s, "m2", pid, 1, 6), u7),
        },
    )


def _landline_nsn(ctx: GenContext, hid: Column, country: Column) -> Column:
    """National significant number of a household's landline, unique per household."""
    s = ctx.seed
    u = permute(hid, _MUL_LANDLINE, ctx.offset("landline"), _MOD)
    u7 = digits(u, 7)
    return _by_country(
        country,
        {
            "GB": F.concat(F.lit("20"), pick(["3", "7", "8"], uniform(s, "l1", hid)), u7),
            "US": F.concat(
                pick(V.US_LANDLINE_AREAS, uniform(s, "l.area", hid)),
                (F.floor(u / 10_000) + 200).cast("string"),
                digits(u % 10_000, 4),
            ),
            "DE": F.concat(F.lit("30"), u7, _digit(s, "l2", hid)),
            "FR": F.concat(F.lit("1"), _digit(s, "l2", hid, 1, 10), u7),
            "NL": F.concat(F.lit("20"), u7),
        },
    )


_POSTCODE_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"


def _letter(seed: int, salt: str, ident: Column) -> Column:
    return pick(list(_POSTCODE_LETTERS), uniform(seed, salt, ident))


def _address(
    seed: int, hid: Column, country: Column, salt: str
) -> tuple[Column, Column, Column, Column]:
    """(address line, city, postcode, city index) of a household; ``salt`` tells homes apart."""
    u_city = uniform(seed, f"{salt}.city", hid)
    city_idx = CITIES.index(country, u_city)
    city = CITIES.at(city_idx)
    prefix = CITIES.at(city_idx, _POSTCODE_PREFIXES)
    street = _STREETS.at(_STREETS.index(country, uniform(seed, f"{salt}.street", hid)))
    number = randint(uniform(seed, f"{salt}.no", hid), 1, 200).cast("string")
    line = F.when(country.isin("DE", "NL"), F.concat(street, F.lit(" "), number)).otherwise(
        F.concat(number, F.lit(" "), street)
    )
    d1, d2, d3 = (_digit(seed, f"{salt}.pc{i}", hid) for i in (1, 2, 3))
    l1, l2 = (_letter(seed, f"{salt}.pl{i}", hid) for i in (1, 2))
    district = randint(uniform(seed, f"{salt}.pcd", hid), 1, 21).cast("string")
    # Paris arrondissements are 75001..75020; elsewhere in France any two digits.
    arrondissement = digits(randint(uniform(seed, f"{salt}.arr", hid), 1, 21), 2)
    postcode = (
        F.when(country == "GB", F.concat(prefix, district, F.lit(" "), d1, l1, l2))
        .when(country == "NL", F.concat(prefix, d1, d2, F.lit(" "), l1, l2))
        .when(country == "DE", F.concat(prefix, d1, d2, d3))
        .when(
            country == "FR",
            F.concat(prefix, F.when(prefix == "750", arrondissement).otherwise(F.concat(d1, d2))),
        )
        .otherwise(F.concat(prefix, d1, d2))
    )
    return line, city, postcode, CITIES.local_index(country, u_city)


def persons_frame(ctx: GenContext) -> DataFrame:
    """All person attributes, public (ground truth) and internal (used by source builders).

    Internal columns: nicknames, phone parts, behavioural parameters, per-source membership
    flags and per-source identifiers. Timestamps are epoch seconds (``*_ts``) until output.
    """
    s, tl = ctx.seed, ctx.timeline
    df = ctx.spark.range(ctx.persons, numPartitions=ctx.partitions).withColumnRenamed(
        "id", "person_id"
    )
    pid = F.col("person_id")
    # About a quarter of people live with the previous person id (two-person households).
    joins = (pid % 2 == 1) & (uniform(s, "household", pid) < 0.5)
    df = df.withColumn("household_id", F.when(joins, pid - 1).otherwise(pid))
    hid = F.col("household_id")
    df = df.withColumn("is_household_head", hid == pid)
    df = df.withColumn(
        "country",
        weighted(
            list(zip(V.COUNTRIES, V.COUNTRY_WEIGHTS, strict=True)), uniform(s, "country", hid)
        ),
    )
    country = F.col("country")
    df = df.withColumn("gender", _gender(s, pid))
    df = df.withColumn("name_gender", _name_gender(s, pid, F.col("gender")))
    df = df.withColumn("first_idx", _first_name_index(s, pid, F.col("name_gender"), country))
    df = df.withColumn("first_name", _FIRST.at(F.col("first_idx")))
    df = df.withColumn("nickname", _FIRST.at(F.col("first_idx"), _NICKNAMES))
    family = _LAST.at(_LAST.index(country, uniform(s, "last", hid)))
    own = _LAST.at(_LAST.index(country, uniform(s, "last", pid)))
    df = df.withColumn(
        "last_name",
        F.when(
            F.col("is_household_head") | (uniform(s, "keeps.name", pid) < 0.75), family
        ).otherwise(own),
    )
    age_days = F.floor((18 + 67 * F.pow(uniform(s, "age", pid), 1.4)) * 365.25).cast("int")
    df = df.withColumn("birth_date", F.date_sub(F.lit(tl.end.isoformat()).cast("date"), age_days))

    own_email = _email(s, ctx, pid, F.col("first_name"), F.col("last_name"), country)
    head_gender = _name_gender(s, hid, _gender(s, hid))
    head_first = _FIRST.at(_first_name_index(s, hid, head_gender, country))
    head_email = _email(s, ctx, hid, head_first, family, country)
    # Some partners use the household's one email address.
    df = df.withColumn(
        "shares_email", ~F.col("is_household_head") & (uniform(s, "share.email", pid) < 0.2)
    )
    df = df.withColumn("email", F.when(F.col("shares_email"), head_email).otherwise(own_email))

    df = df.withColumn(
        "calling_code", _by_country(country, {c: F.lit(v) for c, v in V.CALLING_CODES.items()})
    )
    df = df.withColumn("mobile_nsn", _mobile_nsn(ctx, pid, country))
    df = df.withColumn(
        "landline_nsn",
        F.when(uniform(s, "has.landline", hid) < 0.6, _landline_nsn(ctx, hid, country)),
    )
    df = df.withColumn("phone", F.concat(F.lit("+"), F.col("calling_code"), F.col("mobile_nsn")))
    df = df.withColumn(
        "home_phone", F.concat(F.lit("+"), F.col("calling_code"), F.col("landline_nsn"))
    )

    line, city, postcode, city_index = _address(s, hid, country, "addr")
    df = df.withColumn("street", line).withColumn("city", city).withColumn("postcode", postcode)
    df = df.withColumn("city_index", city_index)
    moves = uniform(s, "moves", hid) < 0.1
    move_ts = F.lit(tl.drop1_ts) + F.floor(uniform(s, "move.ts", hid) * (tl.end_ts - tl.drop1_ts))
    df = df.withColumn("moved_ts", F.when(moves, move_ts.cast("long")))
    line2, city2, postcode2, _ = _address(s, hid, country, "addr2")
    moved = F.col("moved_ts").isNotNull()
    df = (
        df.withColumn("new_street", F.when(moved, line2))
        .withColumn("new_city", F.when(moved, city2))
        .withColumn("new_postcode", F.when(moved, postcode2))
    )

    # Behaviour. `activity` drives purchase frequency, spend, browsing and email engagement.
    # Buying has the shape real retail logs show (and BTYD models assume): a first purchase
    # soon after first contact, repeat purchases at a rate that differs a lot between people
    # of the same activity (log-normal), and a silent drop-out after an exponential lifetime
    # (`churn_ts`), so most buyers buy once or twice and a few buy often. Browsing and e-mail
    # fade after `churn_ts` too: engagement tells of a drop-out that recency cannot see yet.
    # People who never buy lose interest at a uniform date, more often the less active.
    df = df.withColumn("activity", F.pow(uniform(s, "activity", pid), 1.5))
    act = F.col("activity")
    first_seen = (tl.start_ts - 365 * DAY) + F.floor(
        uniform(s, "first.seen", pid) * ((tl.end_ts - 30 * DAY) - (tl.start_ts - 365 * DAY))
    )
    df = df.withColumn("first_seen_ts", first_seen.cast("long"))
    buyer = uniform(s, "buyer", pid) < 0.88
    spread = standard_normal(uniform(s, "rate.z1", pid), uniform(s, "rate.z2", pid))
    # exp(sigma * z - sigma^2 / 2): a log-normal factor with mean 1 (sigma 1).
    rate = (0.3 + 4.5 * F.pow(act, 1.2)) * F.exp(1.0 * spread - 0.5)
    df = df.withColumn("purchase_rate", F.when(buyer, rate).otherwise(F.lit(0.0)))
    first_buy = F.col("first_seen_ts") + F.floor(
        exponential(uniform(s, "first.buy", pid), 21 * DAY)
    )
    df = df.withColumn("first_purchase_ts", F.when(buyer, first_buy.cast("long")))
    lifetime = exponential(uniform(s, "lifetime", pid), (0.4 + 3.0 * act) * YEAR)
    buyer_churn = F.col("first_purchase_ts") + F.floor(lifetime)
    churns = uniform(s, "churns", pid) < (0.2 + 0.4 * (1 - act))
    browser_churn = F.when(
        churns,
        F.col("first_seen_ts")
        + 60 * DAY
        + F.floor(
            uniform(s, "churn.ts", pid)
            * (F.lit(tl.end_ts + 200 * DAY) - F.col("first_seen_ts") - 60 * DAY)
        ),
    )
    churn_at = F.when(buyer, buyer_churn).otherwise(browser_churn)
    df = df.withColumn("churn_ts", F.when(churn_at < tl.end_ts, churn_at.cast("long")))
    uo = uniform(s, "online.share", pid)
    df = df.withColumn(
        "online_share", F.when(uo < 0.3, 1.0).when(uo < 0.5, 0.0).otherwise(F.lit(0.7))
    )
    df = df.withColumn(
        "basket_scale", 20.0 + 100.0 * F.pow(uniform(s, "basket", pid), 2.0) + 40.0 * act
    )

    # Membership in each system and the identifiers each system gives the person.
    df = df.withColumn("in_crm", uniform(s, "in.crm", pid) < 0.74)
    df = df.withColumn(
        "crm_contact_id",
        F.concat(F.lit("C"), digits(permute(pid, _MUL_CRM, ctx.offset("crm"), _MOD), 8)),
    )
    df = df.withColumn("has_account", uniform(s, "has.account", pid) < 0.7)
    df = df.withColumn(
        "account_id",
        F.concat(F.lit("CU"), digits(permute(pid, _MUL_ACCOUNT, ctx.offset("acct"), _MOD), 7)),
    )
    df = df.withColumn(
        "in_loyalty",
        uniform(s, "in.loyalty", pid) < (0.25 + 0.35 * (1 - F.col("online_share"))),
    )
    df = df.withColumn(
        "member_id",
        F.concat(F.lit("LM"), digits(permute(pid, _MUL_MEMBER, ctx.offset("member"), _MOD), 7)),
    )
    df = df.withColumn(
        "card_number",
        F.concat(
            F.lit("6034"),
            digits(permute(pid, _MUL_CARD, ctx.offset("card"), _MOD), 7),
            digits(randint(uniform(s, "card.tail", pid), 0, 100_000), 5),
        ),
    )
    df = df.withColumn("email_subscriber", uniform(s, "email.sub", pid) < 0.7)
    df = df.withColumn("web_user", uniform(s, "web.user", pid) < 0.9)
    df = df.withColumn(
        "home_store_id",
        F.concat(
            country,
            digits(F.col("city_index"), 2),
            randint(uniform(s, "store", pid), 1, 4).cast("string"),
        ),
    )
    return df


PUBLIC_COLUMNS: list[str] = [
    "person_id",
    "household_id",
    "is_household_head",
    "country",
    "gender",
    "first_name",
    "nickname",
    "last_name",
    "birth_date",
    "email",
    "phone",
    "home_phone",
    "street",
    "city",
    "postcode",
    "moved_at",
    "new_street",
    "new_city",
    "new_postcode",
    "activity",
    "first_seen_at",
    "churned_at",
    "purchase_rate",
    "online_share",
    "basket_scale",
    "in_crm",
    "crm_contact_id",
    "has_account",
    "account_id",
    "in_loyalty",
    "member_id",
    "card_number",
    "email_subscriber",
    "web_user",
    "home_store_id",
]


def ground_truth_persons(persons: DataFrame) -> DataFrame:
    """The person table as written to ``_ground_truth/persons``."""
    out = (
        persons.withColumn("moved_at", F.timestamp_seconds("moved_ts"))
        .withColumn("first_seen_at", F.timestamp_seconds("first_seen_ts"))
        .withColumn("churned_at", F.timestamp_seconds("churn_ts"))
    )
    return out.select(*PUBLIC_COLUMNS)
