"""How one person's identifiers get distorted on their way into each source system.

Each source draws its own variant per record (different salts), so the same person shows
up as "Robert Smith <robert.smith12@example.com>" in the CRM, "Bob Smtih" with
" ROBERT.SMITH12@EXAMPLE.COM " on a support ticket and "+44 7712 345678" vs "07712345678"
for the phone. Junk placeholders and blanks are mixed in at low rates.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column
from pyspark.sql import functions as F

from cdp.generate import _vocab as V
from cdp.generate._rand import pick, uniform


def typo(text: Column, u_kind: Column, u_pos: Column) -> Column:
    """Swap two adjacent letters, drop one or double one (never the first letter).

    Names shorter than four characters are left alone: a typo there would make a new name.
    """
    n = F.length(text)
    pos = (F.lit(2) + F.floor(u_pos * (n - 2))).cast("int")  # in [2, n-1]
    one = F.lit(1)
    head = text.substr(one, pos - 1)
    swapped = F.concat(
        head, text.substr(pos + 1, one), text.substr(pos, one), text.substr(pos + 2, n)
    )
    dropped = F.concat(head, text.substr(pos + 1, n))
    doubled = F.concat(text.substr(one, pos), text.substr(pos, n))
    mutated = F.when(u_kind < 0.45, swapped).when(u_kind < 0.8, dropped).otherwise(doubled)
    return F.when(n >= 4, mutated).otherwise(text)


def strip_accents(text: Column) -> Column:
    """What a system without Latin-1 support makes of "Müller" ("Muller")."""
    return F.translate(
        text,
        "àáâäãåçèéêëìíîïñòóôöõøùúûüýÿÀÁÂÄÃÅÇÈÉÊËÌÍÎÏÑÒÓÔÖÕØÙÚÛÜÝ",
        "aaaaaaceeeeiiiinoooooouuuuyyAAAAAACEEEEIIIINOOOOOOUUUUY",
    )


@dataclass(frozen=True)
class NameNoise:
    """Probabilities of each distortion of a name."""

    nickname: float = 0.0
    typo: float = 0.0
    upper: float = 0.0
    no_accents: float = 0.0
    missing: float = 0.0


def first_name_variant(
    seed: int, salt: str, key: Column, first: Column, nickname: Column, noise: NameNoise
) -> Column:
    """The first name as a source system holds it."""
    u = uniform(seed, f"{salt}.first", key)
    t = noise.missing
    expr = F.when(u < t, F.lit(None).cast("string"))
    t += noise.nickname
    expr = expr.when(u < t, nickname)
    t += noise.typo
    expr = expr.when(
        u < t, typo(first, uniform(seed, f"{salt}.ftk", key), uniform(seed, f"{salt}.ftp", key))
    )
    t += noise.upper
    expr = expr.when(u < t, F.upper(first))
    t += noise.no_accents
    expr = expr.when(u < t, strip_accents(first))
    return expr.otherwise(first)


def last_name_variant(seed: int, salt: str, key: Column, last: Column, noise: NameNoise) -> Column:
    """The last name as a source system holds it (nicknames do not apply)."""
    u = uniform(seed, f"{salt}.last", key)
    t = noise.missing
    expr = F.when(u < t, F.lit(None).cast("string"))
    t += noise.typo
    expr = expr.when(
        u < t, typo(last, uniform(seed, f"{salt}.ltk", key), uniform(seed, f"{salt}.ltp", key))
    )
    t += noise.upper
    expr = expr.when(u < t, F.upper(last))
    t += noise.no_accents
    expr = expr.when(u < t, strip_accents(last))
    return expr.otherwise(last)


@dataclass(frozen=True)
class EmailNoise:
    """Probabilities of each distortion of an email address."""

    mixed_case: float = 0.05
    upper: float = 0.02
    whitespace: float = 0.03
    junk: float = 0.005
    missing: float = 0.02


def email_variant(seed: int, salt: str, key: Column, email: Column, noise: EmailNoise) -> Column:
    """The email address as typed into a source system."""
    u = uniform(seed, f"{salt}.email", key)
    capitalised = F.concat(F.upper(F.substring(email, 1, 1)), F.substring(email, 2, 1000))
    t = noise.missing
    expr = F.when(u < t, F.lit(None).cast("string"))
    t += noise.junk
    expr = expr.when(u < t, pick(V.JUNK_EMAILS, uniform(seed, f"{salt}.ejunk", key)))
    t += noise.mixed_case
    expr = expr.when(u < t, capitalised)
    t += noise.upper
    expr = expr.when(u < t, F.upper(email))
    t += noise.whitespace
    expr = expr.when(u < t, F.concat(F.lit(" "), email, F.lit("  ")))
    return expr.otherwise(email)


def is_junk_email(value: Column) -> Column:
    """True for the placeholder addresses :data:`_vocab.JUNK_EMAILS`."""
    return value.isin(V.JUNK_EMAILS)


def is_junk_phone(value: Column) -> Column:
    """True for the placeholder numbers :data:`_vocab.JUNK_PHONES`."""
    return value.isin(V.JUNK_PHONES)


# Groupings of the national significant number, by country and number type.
def _grouped(country: Column, nsn: Column) -> Column:
    """The NSN with spaces between its groups, e.g. GB landline "20 7946 0958"."""
    return (
        F.when(
            (country == "GB") & nsn.startswith("7"),
            F.regexp_replace(nsn, r"^(\d{4})(\d+)$", "$1 $2"),
        )
        .when(country == "GB", F.regexp_replace(nsn, r"^(\d{2})(\d{4})(\d+)$", "$1 $2 $3"))
        .when(country == "US", F.regexp_replace(nsn, r"^(\d{3})(\d{3})(\d+)$", "$1 $2 $3"))
        .when(
            (country == "DE") & nsn.startswith("1"),
            F.regexp_replace(nsn, r"^(\d{3})(\d+)$", "$1 $2"),
        )
        .when(country == "DE", F.regexp_replace(nsn, r"^(\d{2})(\d+)$", "$1 $2"))
        .when(
            country == "FR",
            F.regexp_replace(nsn, r"^(\d)(\d{2})(\d{2})(\d{2})(\d{2})$", "$1 $2 $3 $4 $5"),
        )
        .when(
            (country == "NL") & nsn.startswith("6"), F.regexp_replace(nsn, r"^(\d)(\d+)$", "$1 $2")
        )
        .otherwise(F.regexp_replace(nsn, r"^(\d{2})(\d+)$", "$1 $2"))
    )


PHONE_FORMATS = ("e164", "international", "national", "punctuated", "digits", "intl00")


def format_phone(country: Column, calling_code: Column, nsn: Column, fmt: str) -> Column:
    """One written form of a phone number.

    e164 "+442079460958", international "+44 20 7946 0958", national "020 7946 0958"
    (US "(212) 555-0134"), punctuated "(020) 7946-0958", digits "02079460958",
    intl00 "00442079460958".
    """
    trunk = F.when(country == "US", F.lit("")).otherwise(F.lit("0"))
    grouped = _grouped(country, nsn)
    groups = F.split(grouped, " ")
    first = F.element_at(groups, 1)
    rest_dash = F.array_join(F.slice(groups, 2, 10), "-")
    punctuated = F.concat(F.lit("("), trunk, first, F.lit(") "), rest_dash)
    if fmt == "e164":
        return F.concat(F.lit("+"), calling_code, nsn)
    if fmt == "international":
        return F.concat(F.lit("+"), calling_code, F.lit(" "), grouped)
    if fmt == "national":
        return F.when(country == "US", punctuated).otherwise(F.concat(trunk, grouped))
    if fmt == "punctuated":
        return punctuated
    if fmt == "digits":
        return F.concat(trunk, nsn)
    if fmt == "intl00":
        return F.concat(F.lit("00"), calling_code, nsn)
    raise ValueError(f"unknown phone format {fmt!r}; expected one of {PHONE_FORMATS}")


@dataclass(frozen=True)
class PhoneNoise:
    """Weights of the written forms, plus junk and missing rates."""

    e164: float = 0.1
    international: float = 0.25
    national: float = 0.35
    punctuated: float = 0.1
    digits: float = 0.15
    intl00: float = 0.05
    junk: float = 0.005
    missing: float = 0.05

    def weights(self) -> list[tuple[str, float]]:
        return [(f, getattr(self, f)) for f in PHONE_FORMATS]


def phone_variant(
    seed: int,
    salt: str,
    key: Column,
    country: Column,
    calling_code: Column,
    nsn: Column,
    noise: PhoneNoise,
) -> Column:
    """The phone number as a source system holds it (null when ``nsn`` is null)."""
    u = uniform(seed, f"{salt}.phone", key)
    t = noise.missing
    expr = F.when(u < t, F.lit(None).cast("string"))
    t += noise.junk
    expr = expr.when(u < t, pick(V.JUNK_PHONES, uniform(seed, f"{salt}.pjunk", key)))
    weights = noise.weights()
    total = sum(w for _, w in weights)
    remaining = 1.0 - t
    for fmt, w in weights[:-1]:
        t += remaining * w / total
        expr = expr.when(u < t, format_phone(country, calling_code, nsn, fmt))
    return expr.otherwise(format_phone(country, calling_code, nsn, weights[-1][0]))
