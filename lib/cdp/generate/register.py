"""A person register: a public-sector style export (electoral roll, patient index, benefits
register) in which one person appears several times and no record carries an identifier
that another source has: no email, no phone, no CRM, loyalty or customer id.

Who is in it: about 35% of persons (a draw per person, so the share holds at any size), each
with 1 to 4 records (1: 50%, 2: 30%, 3: 13%, 4: 7%; 1.77 on average), so about 0.62 records
per person and duplicates of one person within the register. Membership does not depend on
the other sources, so most register persons are also CRM contacts, loyalty members or
buyers, under the same ground-truth person ids. Names come from the persons table, which
draws them from a small vocabulary: different people with the same first and last name (and
sometimes the same birth year or city) occur naturally, and household members share an
address and usually a surname.

Columns: ``register_id`` (the record's own id, unique), ``national_id``, ``first_name``,
``last_name``, ``birth_date`` (``yyyy-MM-dd``), ``gender``, ``address``, ``city``,
``postcode``, ``country`` (ISO alpha-2), ``registered_at`` (``yyyy-MM-dd HH:mm:ss``, UTC).
Records are delivered in the drop of their ``registered_at``.

``national_id`` is a national-insurance-like number ("AB123456C": two letters, six digits, a
letter A-D), the same on every record of one person where present, present on 35% of records
and written with varying blanks and case ("AB 12 34 56 C", "ab123456c", "AB 123456 C").

Noise, each an independent draw per record (the rates are :class:`RegisterNoise`'s defaults):

* first name: missing 2%; nickname or short form 8% (only changes names that have one);
  then at most one character error: keyboard typo (adjacent key) 2%, OCR confusion (rn/m,
  l/1/I, O/0, S/5, cl/d, ...) 1.5%, phonetic spelling (ph/f, ck/k, ie/y, ei/ie, ü/ue,
  double/single letter, ...) 2.5%, two adjacent letters transposed 2%; then accents stripped
  4% or added 1%; then upper case 4% or lower case 2%;
* last name: the same, without nicknames and missing 1%;
* first and last name swapped: 1.5%;
* birth date: missing 3%; day and month swapped 5% of the records whose day is at most 12 and
  differs from the month (about 1.8% of all); year off by one 1.5%; last digit of the year
  mistyped 1% (dates stay valid: 29 February becomes the 28th in a common year);
* gender: given on 75% of records ("M", "F", "X"; lower case on 5% of those);
* address: a real move: 30% of households have a previous address, held on the records
  registered before their move date; households that move during the data window (the
  persons table's move, as in the CRM) have the new address on records registered after it;
  street missing 3%, abbreviated ("Road" -> "Rd", "Straße" -> "Str.") 10%, upper case 5%,
  keyboard typo 1%; city missing 2%, upper case 8%, accents stripped 5%; postcode missing 4%,
  lower case 3%, blanks removed 4%, OCR confusion 1%.

No row is malformed and no row is delivered twice: the duplicates are distinct records of one
person, which only identity resolution can bring together.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdp.generate._frame import SQL_TS, SourceFrame, drop_label, fmt_ts
from cdp.generate._rand import digits, permute, pick, pick_at, randint, seq, uniform, weighted
from cdp.generate.noise import (
    add_accent,
    keyboard_typo,
    ocr_confusion,
    phonetic_variant,
    strip_accents,
    typo,
)
from cdp.generate.persons import MAX_PERSONS, GenContext, _address
from cdp.generate.timeline import DAY

REGISTER_COLUMNS = [
    "register_id",
    "national_id",
    "first_name",
    "last_name",
    "birth_date",
    "gender",
    "address",
    "city",
    "postcode",
    "country",
    "registered_at",
]
IN_REGISTER = 0.35
RECORDS_PER_PERSON: tuple[tuple[str, float], ...] = (
    ("1", 0.50),
    ("2", 0.30),
    ("3", 0.13),
    ("4", 0.07),
)
_MAX_RECORDS = len(RECORDS_PER_PERSON)
# Register ids are a permutation of person_id * 4 + record number over [0, 4 * MAX_PERSONS):
# unique by construction. 4 * MAX_PERSONS = 2^11 * 5^6, so the multipliers are odd and not
# multiples of 5.
_MUL_REGISTER = 3_367_933
_MUL_NATIONAL_ID = 5_772_157
# Prefixes of the national id, one per million of the permuted person number (8 = MAX_PERSONS
# / 1e6), so ids are unique per person. Letters follow the UK National Insurance rules.
_NATIONAL_ID_PREFIXES = ("AB", "CE", "HJ", "JK", "LM", "PR", "SW", "YZ")
_NATIONAL_ID_FORMATS: tuple[tuple[str, float], ...] = (
    ("spaced", 0.35),
    ("compact", 0.30),
    ("lower", 0.10),
    ("spaced_lower", 0.05),
    ("middle", 0.10),
    ("padded", 0.05),
    ("capitalised", 0.05),
)
# Registrations start this long before the data window (and never before the age of 18).
_HISTORY_DAYS = 4 * 365
# Abbreviations of street types, as clerks write them.
_STREET_ABBREVIATIONS: tuple[tuple[str, str], ...] = (
    (r"\bStreet\b", "St"),
    (r"\bRoad\b", "Rd"),
    (r"\bAvenue\b", "Ave"),
    (r"\bLane\b", "Ln"),
    (r"\bDrive\b", "Dr"),
    (r"\bBoulevard\b", "Blvd"),
    (r"straße\b", "str."),
    (r"Straße\b", "Str."),
    (r"\bavenue\b", "av."),
    (r"\bboulevard\b", "bd"),
    (r"straat\b", "str."),
)


@dataclass(frozen=True)
class NameErrors:
    """Probabilities of the distortions of one name field (see the module docstring)."""

    missing: float = 0.0
    nickname: float = 0.0
    keyboard: float = 0.02
    ocr: float = 0.015
    phonetic: float = 0.025
    transposed: float = 0.02
    no_accents: float = 0.04
    accent_added: float = 0.01
    upper: float = 0.04
    lower: float = 0.02


@dataclass(frozen=True)
class RegisterNoise:
    """Every noise rate of the register, per record."""

    first_name: NameErrors = NameErrors(missing=0.02, nickname=0.08)
    last_name: NameErrors = NameErrors(missing=0.01)
    names_swapped: float = 0.015
    birth_missing: float = 0.03
    birth_day_month_swapped: float = 0.05  # of the records where the swap gives another date
    birth_year_off_by_one: float = 0.015
    birth_year_digit: float = 0.01
    gender_given: float = 0.75
    gender_lower: float = 0.05
    previous_address: float = 0.30  # of households
    street_missing: float = 0.03
    street_abbreviated: float = 0.10
    street_upper: float = 0.05
    street_typo: float = 0.01
    city_missing: float = 0.02
    city_upper: float = 0.08
    city_no_accents: float = 0.05
    postcode_missing: float = 0.04
    postcode_lower: float = 0.03
    postcode_compact: float = 0.04
    postcode_ocr: float = 0.01
    national_id_present: float = 0.35


NOISE = RegisterNoise()


def _character_error(seed: int, salt: str, key: Column, text: Column, e: NameErrors) -> Column:
    """At most one keyboard typo, OCR confusion, phonetic spelling or transposition."""
    u = uniform(seed, f"{salt}.err", key)
    u_pos, u_alt = uniform(seed, f"{salt}.pos", key), uniform(seed, f"{salt}.alt", key)
    t = e.keyboard
    out = F.when(u < t, keyboard_typo(text, u_pos, u_alt))
    t += e.ocr
    out = out.when(u < t, ocr_confusion(text, u_alt))
    t += e.phonetic
    out = out.when(u < t, phonetic_variant(text, u_alt))
    t += e.transposed
    out = out.when(u < t, typo(text, F.lit(0.0), u_pos))
    return out.otherwise(text)


def _noisy_name(
    df: DataFrame,
    seed: int,
    salt: str,
    key: Column,
    out: str,
    name: Column,
    nickname: Column | None,
    e: NameErrors,
) -> DataFrame:
    """``df`` with column ``out``: ``name`` as the register holds it.

    Each stage is its own projection, so Spark does not copy one stage's expression into
    every branch of the next.
    """
    if nickname is not None:
        name = F.when(uniform(seed, f"{salt}.nick", key) < e.nickname, nickname).otherwise(name)
    df = df.withColumn(out, name)
    df = df.withColumn(out, _character_error(seed, salt, key, F.col(out), e))
    ua = uniform(seed, f"{salt}.accent", key)
    accented = add_accent(F.col(out), uniform(seed, f"{salt}.acc", key))
    df = df.withColumn(
        out,
        F.when(ua < e.no_accents, strip_accents(F.col(out)))
        .when(ua < e.no_accents + e.accent_added, accented)
        .otherwise(F.col(out)),
    )
    uc = uniform(seed, f"{salt}.case", key)
    cased = (
        F.when(uc < e.upper, F.upper(F.col(out)))
        .when(uc < e.upper + e.lower, F.lower(F.col(out)))
        .otherwise(F.col(out))
    )
    missing = uniform(seed, f"{salt}.missing", key) < e.missing
    return df.withColumn(out, F.when(missing, F.lit(None).cast("string")).otherwise(cased))


def _national_id(ctx: GenContext, pid: Column) -> Column:
    """The person's national id in its canonical form, "AB123456C"."""
    v = permute(pid, _MUL_NATIONAL_ID, ctx.offset("national.id"), MAX_PERSONS)
    prefix = pick_at(list(_NATIONAL_ID_PREFIXES), F.floor(v / 1_000_000).cast("int"))
    suffix = pick(["A", "B", "C", "D"], uniform(ctx.seed, "reg.nid.suffix", pid))
    return F.concat(prefix, digits(v % 1_000_000, 6), suffix)


def _written_national_id(seed: int, key: Column, nid: Column) -> Column:
    """One record's way of writing the national id (blanks and case vary, digits do not)."""
    spaced = F.regexp_replace(nid, r"^(..)(..)(..)(..)(.)$", "$1 $2 $3 $4 $5")
    fmt = weighted(list(_NATIONAL_ID_FORMATS), uniform(seed, "reg.nid.fmt", key))
    return (
        F.when(fmt == "spaced", spaced)
        .when(fmt == "compact", nid)
        .when(fmt == "lower", F.lower(nid))
        .when(fmt == "spaced_lower", F.lower(spaced))
        .when(fmt == "middle", F.regexp_replace(nid, r"^(..)(\d{6})(.)$", "$1 $2 $3"))
        .when(fmt == "padded", F.concat(F.lit(" "), nid, F.lit(" ")))
        .otherwise(F.concat(F.substring(nid, 1, 1), F.lower(F.substring(nid, 2, 100))))
    )


def _birth_date(seed: int, key: Column, birth: Column, noise: RegisterNoise) -> Column:
    """The birth date as ``yyyy-MM-dd`` text, with the clerical errors of the docstring."""
    iso = F.date_format(birth, "yyyy-MM-dd")
    day, month = F.dayofmonth(birth), F.month(birth)
    u = uniform(seed, "reg.birth", key)
    swap = (uniform(seed, "reg.birth.swap", key) < noise.birth_day_month_swapped) & (
        (day <= 12) & (day != month)
    )
    off_by_one = F.when(uniform(seed, "reg.birth.sign", key) < 0.5, -12).otherwise(12)
    last = F.year(birth) % 10
    typed = (last + randint(uniform(seed, "reg.birth.digit", key), 1, 10)) % 10
    t = noise.birth_missing
    out = F.when(u < t, F.lit(None).cast("string"))
    out = out.when(swap, F.date_format(birth, "yyyy-dd-MM"))
    t += noise.birth_year_off_by_one
    out = out.when(u < t, F.date_format(F.add_months(birth, off_by_one), "yyyy-MM-dd"))
    t += noise.birth_year_digit
    out = out.when(u < t, F.date_format(F.add_months(birth, (typed - last) * 12), "yyyy-MM-dd"))
    return out.otherwise(iso)


def _abbreviated(street: Column) -> Column:
    out = street
    for pattern, short in _STREET_ABBREVIATIONS:
        out = F.regexp_replace(out, pattern, short)
    return out


def person_register(ctx: GenContext, persons: DataFrame) -> SourceFrame:
    """Person register export as CSV: several records per person, no shared identifier.

    See the module docstring for who is in it and the noise rates.
    """
    s, tl, noise = ctx.seed, ctx.timeline, NOISE
    pid, hid = F.col("person_id"), F.col("household_id")
    df = persons.filter(uniform(s, "reg.in", pid) < IN_REGISTER)
    n = weighted(list(RECORDS_PER_PERSON), uniform(s, "reg.n", pid)).cast("int")
    df = df.withColumn("k", F.explode(seq(n)))
    key = F.concat_ws(".", pid.cast("string"), F.col("k").cast("string"))
    df = df.withColumn("key", key)
    key = F.col("key")
    record_no = pid * _MAX_RECORDS + F.col("k")
    number = permute(record_no, _MUL_REGISTER, ctx.offset("register"), _MAX_RECORDS * MAX_PERSONS)
    df = df.withColumn("register_id", F.concat(F.lit("R"), digits(number, 8)))

    # When each record was registered: from the history start (or the person's 18th birthday)
    # to the end of the data window.
    adult_ts = F.unix_date(F.add_months(F.col("birth_date"), 18 * 12)).cast("long") * DAY
    lo = F.greatest(F.lit(tl.start_ts - _HISTORY_DAYS * DAY), adult_ts)
    ts = lo + F.floor(uniform(s, "reg.ts", key) * (F.lit(tl.end_ts) - lo))
    df = df.withColumn("registered_ts", ts.cast("long"))
    registered = F.col("registered_ts")

    # Where the person lived then: a previous home before the household's move date, the
    # persons table's new home after its (in-window) move, the current home otherwise.
    country = F.col("country")
    prev_street, prev_city, prev_postcode, _ = _address(s, hid, country, "reg.prev")
    has_prev = uniform(s, "reg.prev.has", hid) < noise.previous_address
    prev_until = F.lit(tl.start_ts - _HISTORY_DAYS * DAY) + F.floor(
        uniform(s, "reg.prev.until", hid) * (tl.end_ts - (tl.start_ts - _HISTORY_DAYS * DAY))
    )
    df = df.withColumn(
        "home",
        F.when(F.col("moved_ts").isNotNull() & (registered >= F.col("moved_ts")), F.lit("new"))
        .when(has_prev & (registered < prev_until), F.lit("prev"))
        .otherwise(F.lit("current")),
    )
    home = F.col("home")
    df = df.withColumns(
        {
            "home_street": F.when(home == "new", F.col("new_street"))
            .when(home == "prev", prev_street)
            .otherwise(F.col("street")),
            "home_city": F.when(home == "new", F.col("new_city"))
            .when(home == "prev", prev_city)
            .otherwise(F.col("city")),
            "home_postcode": F.when(home == "new", F.col("new_postcode"))
            .when(home == "prev", prev_postcode)
            .otherwise(F.col("postcode")),
        }
    )

    first_noise, last_noise = noise.first_name, noise.last_name
    df = _noisy_name(
        df, s, "reg.first", key, "reg_first", F.col("first_name"), F.col("nickname"), first_noise
    )
    df = _noisy_name(df, s, "reg.last", key, "reg_last", F.col("last_name"), None, last_noise)
    swapped = uniform(s, "reg.swap", key) < noise.names_swapped
    first = F.when(swapped, F.col("reg_last")).otherwise(F.col("reg_first"))
    last = F.when(swapped, F.col("reg_first")).otherwise(F.col("reg_last"))

    lower_gender = uniform(s, "reg.gender.case", key) < noise.gender_lower
    gender = F.when(
        uniform(s, "reg.gender", key) < noise.gender_given,
        F.when(lower_gender, F.lower(F.col("gender"))).otherwise(F.col("gender")),
    )

    street = F.col("home_street")
    us = uniform(s, "reg.street", key)
    t = noise.street_missing
    address = F.when(us < t, F.lit(None).cast("string"))
    t += noise.street_abbreviated
    address = address.when(us < t, _abbreviated(street))
    t += noise.street_upper
    address = address.when(us < t, F.upper(street))
    t += noise.street_typo
    address = address.when(
        us < t,
        keyboard_typo(street, uniform(s, "reg.street.pos", key), uniform(s, "reg.street.key", key)),
    ).otherwise(street)

    city = F.col("home_city")
    uc = uniform(s, "reg.city", key)
    t = noise.city_missing
    city_out = F.when(uc < t, F.lit(None).cast("string"))
    t += noise.city_upper
    city_out = city_out.when(uc < t, F.upper(city))
    t += noise.city_no_accents
    city_out = city_out.when(uc < t, strip_accents(city)).otherwise(city)

    postcode = F.col("home_postcode")
    up = uniform(s, "reg.postcode", key)
    t = noise.postcode_missing
    postcode_out = F.when(up < t, F.lit(None).cast("string"))
    t += noise.postcode_lower
    postcode_out = postcode_out.when(up < t, F.lower(postcode))
    t += noise.postcode_compact
    postcode_out = postcode_out.when(up < t, F.regexp_replace(postcode, " ", ""))
    t += noise.postcode_ocr
    postcode_out = postcode_out.when(
        up < t, ocr_confusion(postcode, uniform(s, "reg.postcode.ocr", key))
    ).otherwise(postcode)

    national_id = F.when(
        uniform(s, "reg.nid", key) < noise.national_id_present,
        _written_national_id(s, key, _national_id(ctx, pid)),
    )
    df = df.select(
        pid.alias("_pid"),
        F.col("register_id").alias("_rid"),
        drop_label(tl, registered).alias("_drop"),
        F.lit(None).cast("string").alias("_bad"),
        F.lit(False).alias("_dup"),
        F.col("register_id"),
        national_id.alias("national_id"),
        first.alias("first_name"),
        last.alias("last_name"),
        _birth_date(s, key, F.col("birth_date"), noise).alias("birth_date"),
        gender.alias("gender"),
        address.alias("address"),
        city_out.alias("city"),
        postcode_out.alias("postcode"),
        country.alias("country"),
        fmt_ts(registered, SQL_TS).alias("registered_at"),
    )
    return SourceFrame(
        name="person_register",
        rows_per_person=IN_REGISTER * sum(int(k) * w for k, w in RECORDS_PER_PERSON),
        frame=df,
        writer="csv",
        options={"header": "true", "sep": ",", "encoding": "UTF-8"},
        extension="csv",
        payload=lambda _i: [F.col(c) for c in REGISTER_COLUMNS],
    )
