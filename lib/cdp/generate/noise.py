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


# --- Character-level errors of clerical and scanned records (the person register) ----------

# Keys next to each letter on a QWERTY keyboard (the most common layout across the countries).
_QWERTY_NEIGHBOURS: dict[str, str] = {
    "q": "wa", "w": "qeas", "e": "wrds", "r": "etdf", "t": "ryfg", "y": "tugh", "u": "yihj",
    "i": "uojk", "o": "ipkl", "p": "ol", "a": "qwsz", "s": "awedxz", "d": "serfcx",
    "f": "drtgvc", "g": "ftyhbv", "h": "gyujnb", "j": "huikmn", "k": "jiolm", "l": "kop",
    "z": "asx", "x": "zsdc", "c": "xdfv", "v": "cfgb", "b": "vghn", "n": "bhjm", "m": "njk",
}  # fmt: skip

# What optical character recognition makes of a scanned form: (seen, read as).
OCR_CONFUSIONS: tuple[tuple[str, str], ...] = (
    ("rn", "m"), ("m", "rn"), ("cl", "d"), ("vv", "w"), ("l", "1"), ("l", "I"), ("I", "l"),
    ("i", "l"), ("O", "0"), ("o", "0"), ("0", "O"), ("1", "l"), ("1", "I"), ("S", "5"),
    ("5", "S"), ("B", "8"), ("8", "B"), ("e", "c"), ("h", "b"), ("Z", "2"),
)  # fmt: skip

# Spellings that sound alike: (written, written instead, only at the end of the word).
PHONETIC_VARIANTS: tuple[tuple[str, str, bool], ...] = (
    ("ph", "f", False), ("f", "ph", True), ("ck", "k", False), ("ik", "ick", True),
    ("ie", "y", True), ("y", "ie", True), ("ey", "y", True), ("th", "t", False),
    ("ei", "ie", False), ("ie", "ei", False), ("tz", "z", False), ("sch", "sh", False),
    ("C", "K", False), ("ks", "x", False), ("x", "ks", False), ("ou", "u", False),
    ("ae", "e", False), ("Mac", "Mc", False), ("Mc", "Mac", False), ("ü", "ue", False),
    ("ö", "oe", False), ("ä", "ae", False), ("ß", "ss", False), ("aa", "a", False),
)  # fmt: skip

# Accents a clerk (or an autocorrect) adds to a name written without them.
_ACCENTS_ADDED: tuple[tuple[str, str], ...] = (
    ("e", "é"),
    ("e", "è"),
    ("u", "ü"),
    ("o", "ö"),
    ("a", "ä"),
    ("c", "ç"),
    ("i", "ï"),
)


def _replace_first(text: Column, seen: str, instead: str) -> Column:
    """``text`` with the first occurrence of ``seen`` replaced; null where there is none."""
    i = F.instr(text, seen)
    head = text.substr(F.lit(1), i - 1)
    tail = text.substr(i + len(seen), F.lit(1_000))
    return F.when(i > 0, F.concat(head, F.lit(instead), tail))


def _replace_end(text: Column, seen: str, instead: str) -> Column:
    """``text`` with the suffix ``seen`` replaced; null where it does not end with it."""
    keep = F.length(text) - len(seen)
    return F.when(
        text.endswith(seen) & (keep > 1), F.concat(text.substr(F.lit(1), keep), F.lit(instead))
    )


def _one_of(text: Column, u: Column, candidates: list[Column]) -> Column:
    """One of the applicable (non-null) candidates, uniformly; ``text`` where none applies."""
    applicable = F.filter(F.array(*candidates), lambda c: c.isNotNull())
    n = F.size(applicable)
    chosen = F.element_at(applicable, (F.floor(u * n) + 1).cast("int"))
    return F.when(n > 0, chosen).otherwise(text)


def keyboard_typo(text: Column, u_pos: Column, u_key: Column) -> Column:
    """One letter (never the first) replaced by a key next to it: "Smith" -> "Smuth".

    The case of the letter is kept; characters off the letter keys (accented letters,
    apostrophes, blanks) and texts shorter than three characters are left alone.
    """
    n = F.length(text)
    pos = (F.lit(2) + F.floor(u_pos * (n - 1))).cast("int")  # in [2, n]
    ch = text.substr(pos, F.lit(1))
    pairs = [x for k, v in _QWERTY_NEIGHBOURS.items() for x in (F.lit(k), F.lit(v))]
    near = F.try_element_at(F.create_map(*pairs), F.lower(ch))
    key = near.substr((F.floor(u_key * F.length(near)) + 1).cast("int"), F.lit(1))
    key = F.when(ch != F.lower(ch), F.upper(key)).otherwise(key)
    typed = F.concat(text.substr(F.lit(1), pos - 1), key, text.substr(pos + 1, F.lit(1_000)))
    return F.when((n >= 3) & near.isNotNull(), typed).otherwise(text)


def ocr_confusion(text: Column, u: Column) -> Column:
    """One :data:`OCR_CONFUSIONS` misreading that applies ("Brown" -> "Brovvn", "Kim" -> "Kirn",
    "Lisa" -> "Li5a"), chosen uniformly among those that do; unchanged where none does."""
    return _one_of(text, u, [_replace_first(text, a, b) for a, b in OCR_CONFUSIONS])


def phonetic_variant(text: Column, u: Column) -> Column:
    """A spelling that sounds the same: ph/f, ck/k, ie/y, ei/ie, ü/ue, a doubled consonant
    written once ("Phillip" -> "Philip") or a single one doubled ("Philip" -> "Phillip")."""
    candidates = [
        _replace_end(text, a, b) if at_end else _replace_first(text, a, b)
        for a, b, at_end in PHONETIC_VARIANTS
    ]
    candidates.append(
        F.when(text.rlike(r"(\p{Ll})\1"), F.regexp_replace(text, r"^(.*?)(\p{Ll})\2", "$1$2"))
    )
    single = r"^(.*?[aeiouy])([lnrtsmp])([aeiouy])"
    candidates.append(F.when(text.rlike(single), F.regexp_replace(text, single, "$1$2$2$3")))
    return _one_of(text, u, candidates)


def add_accent(text: Column, u: Column) -> Column:
    """An accent on the last of one kind of lower-case letter ("Rene" -> "René", "Muller" ->
    "Müller"); unchanged where the text has none of e, u, o, a, c, i."""
    return _one_of(
        text,
        u,
        [
            F.when(text.contains(a), F.regexp_replace(text, f"^(.*){a}", f"$1{b}"))
            for a, b in _ACCENTS_ADDED
        ],
    )
