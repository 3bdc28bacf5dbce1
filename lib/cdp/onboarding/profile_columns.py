"""What each sampled column holds: e-mail, phone, names, dates and their pattern, ids, amounts,
currencies, countries, postcodes, genders, and what its header says.

The checks are plain Python twins of silver's standardizers where those exist (the country,
currency and gender tables of :mod:`cdp.silver.std_reference`, the postcode rules of
:mod:`cdp.silver.std_location`, ``phonenumbers`` as in :mod:`cdp.silver.std_phone`), so a
column proposed as ``country`` is one silver will read as countries. Only counts leave this
module: a profile never holds a sampled value.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import phonenumbers

from cdp.onboarding.sample import Path_, Sample
from cdp.silver.std_common import PLACEHOLDERS, fold_key_py
from cdp.silver.std_location import POSTCODE_RULES
from cdp.silver.std_reference import COUNTRY_KEYS, CURRENCIES, CURRENCY_MARKERS, GENDERS

__all__ = [
    "ADDRESS_POSTCODES",
    "HINTS",
    "ColumnProfile",
    "DatePattern",
    "SampleProfile",
    "header_tokens",
    "profile_sample",
]

# Words of a column header (folded: lower case, no accents) that suggest what it holds. Short
# words match a whole word of the header; longer ones also match inside a word, so that
# "Kundennummer" says customer and number.
HINTS: dict[str, tuple[str, ...]] = {
    "email": ("email", "mail", "courriel"),
    "phone": ("phone", "telefon", "tel", "mobile", "mobil", "handy", "cell", "telephone", "fon"),
    "first_name": ("first", "given", "vorname", "forename", "prenom", "fname", "firstname"),
    "last_name": ("last", "surname", "family", "nachname", "lname", "lastname", "nom"),
    "full_name": ("name", "fullname", "kundenname"),
    "birth_date": ("birth", "dob", "geburt", "born", "birthday", "geburtsdatum", "naissance"),
    # Joined words ("birth_place", "PlaceOfBirth", "Geburtsort"): "birth" alone is a date's.
    "birth_place": ("birthplace", "placeofbirth", "geburtsort", "lieudenaissance",
                    "lugardenacimiento", "birthcity", "birthtown", "pob"),
    "gender": ("gender", "sex", "geschlecht"),
    "address_line1": ("street", "strasse", "address", "adresse", "addr", "line1", "anschrift"),
    "city": ("city", "ort", "town", "stadt", "ville", "wohnort", "suburb", "locality",
             "municipality", "village", "gemeinde", "commune", "ciudad"),
    "postcode": ("zip", "postcode", "postal", "plz", "postleitzahl", "zipcode"),
    # A person's official number (social security, national insurance, tax, passport).
    "national_id": ("ssn", "soc", "social", "national", "nino", "nin", "nid", "passport",
                    "personnummer", "steuerid", "taxid", "tin", "insurance", "sozialversicherung"),
    "house_number": ("hausnummer", "housenumber", "house"),
    "quantity": ("quantity", "qty", "menge", "anzahl", "units", "pieces", "stueck", "stuck"),
    # A price per unit, not an order's total (see propose._line_amount).
    "unit_price": ("price", "unitprice", "preis", "einzelpreis", "stueckpreis"),
    "country": ("country", "land", "pays", "nation", "countrycode"),
    "amount": ("amount", "total", "betrag", "price", "sum", "revenue", "umsatz", "gesamt",
               "preis", "summe", "gross", "value"),
    "currency": ("currency", "waehrung", "wahrung", "devise", "ccy"),
    "order": ("order", "bestellung", "invoice", "rechnung", "receipt", "transaction", "txn",
              "beleg", "auftrag", "basket", "ticket", "kassenbon"),
    "crm": ("crm", "contact", "kontakt"),
    "customer": ("customer", "kunde", "kunden", "client", "cust", "account", "household",
                 "shopper", "buyer"),
    "loyalty": ("loyalty", "card", "karte", "bonus", "member"),
    "time": ("date", "datum", "time", "zeit", "ts", "timestamp", "created", "updated",
             "modified", "changed", "placed", "geandert", "anderung", "erstellt"),
    "updated": ("updated", "modified", "changed", "geandert", "anderung", "last"),
    "id": ("id", "nr", "no", "number", "nummer", "num", "code", "key", "ref", "uuid"),
    "event_type": ("event", "type", "action", "activity"),
    "channel": ("channel", "kanal"),
    "campaign_id": ("campaign", "kampagne"),
    "purpose": ("purpose", "zweck"),
    "status": ("status", "state"),
    "consent": ("consent", "optin", "opt", "einwilligung", "permission", "subscribed"),
    "delete": ("deleted", "geloscht", "isdeleted", "removed"),
    "store_id": ("store", "shop", "filiale", "branch"),
    "anonymous_id": ("cookie", "anonymous", "anon", "visitor"),
    "device_id": ("device", "geraet", "gerat"),
}  # fmt: skip


@dataclass(frozen=True)
class DatePattern:
    """One way of writing a date or time: Spark's pattern, a regex, and ``strptime``'s."""

    spark: str
    regex: str
    python: str

    @property
    def has_time(self) -> bool:
        return "H" in self.spark


def _patterns() -> list[DatePattern]:
    dates = [
        ("yyyy-MM-dd", r"\d{4}-\d{2}-\d{2}", "%Y-%m-%d"),
        ("dd.MM.yyyy", r"\d{2}\.\d{2}\.\d{4}", "%d.%m.%Y"),
        ("d.M.yyyy", r"\d{1,2}\.\d{1,2}\.\d{4}", "%d.%m.%Y"),
        ("dd/MM/yyyy", r"\d{2}/\d{2}/\d{4}", "%d/%m/%Y"),
        ("MM/dd/yyyy", r"\d{2}/\d{2}/\d{4}", "%m/%d/%Y"),
        ("yyyy/MM/dd", r"\d{4}/\d{2}/\d{2}", "%Y/%m/%d"),
        ("dd-MM-yyyy", r"\d{2}-\d{2}-\d{4}", "%d-%m-%Y"),
        ("yyyyMMdd", r"\d{8}", "%Y%m%d"),
        # Unpadded days and months (spreadsheet exports: "12/1/2010 8:26"), after the padded
        # forms so that a tie keeps those.
        ("d/M/yyyy", r"\d{1,2}/\d{1,2}/\d{4}", "%d/%m/%Y"),
        ("M/d/yyyy", r"\d{1,2}/\d{1,2}/\d{4}", "%m/%d/%Y"),
        # Month names, English, as people write them ("05-Mar-1980", "5 March 1980",
        # "Mar 5, 1980"); Spark and strptime read them regardless of case.
        ("dd-MMM-yyyy", r"\d{2}-[A-Za-z]{3}-\d{4}", "%d-%b-%Y"),
        ("d-MMM-yyyy", r"\d{1,2}-[A-Za-z]{3}-\d{4}", "%d-%b-%Y"),
        ("d MMM yyyy", r"\d{1,2} [A-Za-z]{3} \d{4}", "%d %b %Y"),
        ("d MMMM yyyy", r"\d{1,2} [A-Za-z]{4,9} \d{4}", "%d %B %Y"),
        ("MMM d, yyyy", r"[A-Za-z]{3} \d{1,2}, \d{4}", "%b %d, %Y"),
        ("MMMM d, yyyy", r"[A-Za-z]{4,9} \d{1,2}, \d{4}", "%B %d, %Y"),
        # Two-digit years, as spreadsheets export short dates ("12/1/10 8:26"): read by
        # Spark as 2000-2099, so for the times of orders and events, never a birth date
        # (see propose: a birth date needs its century).
        ("dd/MM/yy", r"\d{2}/\d{2}/\d{2}", "%d/%m/%y"),
        ("MM/dd/yy", r"\d{2}/\d{2}/\d{2}", "%m/%d/%y"),
        ("dd.MM.yy", r"\d{2}\.\d{2}\.\d{2}", "%d.%m.%y"),
        ("d/M/yy", r"\d{1,2}/\d{1,2}/\d{2}", "%d/%m/%y"),
        ("M/d/yy", r"\d{1,2}/\d{1,2}/\d{2}", "%m/%d/%y"),
        ("d.M.yy", r"\d{1,2}\.\d{1,2}\.\d{2}", "%d.%m.%y"),
    ]
    times = [
        (" HH:mm:ss", r" \d{2}:\d{2}:\d{2}", " %H:%M:%S"),
        (" HH:mm", r" \d{2}:\d{2}", " %H:%M"),
        (" H:mm:ss", r" \d{1,2}:\d{2}:\d{2}", " %H:%M:%S"),
        (" H:mm", r" \d{1,2}:\d{2}", " %H:%M"),
        ("'T'HH:mm:ss", r"T\d{2}:\d{2}:\d{2}", "T%H:%M:%S"),
        ("'T'HH:mm:ssXXX", r"T\d{2}:\d{2}:\d{2}(?:Z|[+-]\d{2}:\d{2})", "T%H:%M:%S%z"),
        ("'T'HH:mm:ssX", r"T\d{2}:\d{2}:\d{2}(?:Z|[+-]\d{2}(?:\d{2})?)", "T%H:%M:%S%z"),
        (
            "'T'HH:mm:ss.SSSXXX",
            r"T\d{2}:\d{2}:\d{2}\.\d{3}(?:Z|[+-]\d{2}:\d{2})",
            "T%H:%M:%S.%f%z",
        ),
    ]
    out = []
    for spark, regex, python in dates:
        out.append(DatePattern(spark, regex, python))
        for t_spark, t_regex, t_python in times:
            if "T" in t_regex and spark != "yyyy-MM-dd":
                continue
            if spark == "yyyyMMdd":
                continue
            out.append(DatePattern(spark + t_spark, regex + t_regex, python + t_python))
    return out


DATE_PATTERNS = _patterns()
_EPOCH_MIN, _EPOCH_MAX = 946_684_800, 4_102_444_800  # 2000-01-01 and 2100-01-01, in seconds
_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^\W\d_]{2,}$")
_NAME = re.compile(r"^[^\W\d_]+(?:[ '\-.]+[^\W\d_]+)*\.?$")
_ID = re.compile(r"^[\w\-/.:#]{1,64}$")
_AMOUNT = re.compile(r"^[-+]?(?:\d{1,3}(?:[.,' ]\d{3})+|\d+)(?:[.,]\d{1,4})?$")
# A number written the North American way, "(919) 555-0143" or "919-555-0143": no other
# country groups its ten digits 3-3-4 with those separators.
_NANP = re.compile(r"^(?:\(\d{3}\) ?|\d{3}[-.])\d{3}[-.]\d{4}$")
# A house number alone ("7", "12a", "3-5"): a street line's number kept in its own column.
_HOUSE_NUMBER = re.compile(r"^\d{1,5}\s?[a-zA-Z]?(?:[-/]\d{1,5}[a-zA-Z]?)?$")
_BOOLEAN = {"true", "false", "yes", "no", "y", "n", "0", "1", "t", "f", "ja", "nein"}
_CURRENCY_WORDS = {k for k, v in CURRENCY_MARKERS.items() if v} | set(CURRENCIES)
_SYMBOLS = "".join(sorted({k for k in CURRENCY_MARKERS if len(k) == 1}))


def header_tokens(path: Path_) -> tuple[set[str], str]:
    """The folded words of a column's name (every level of a nested path) and their
    concatenation: ``("customer", "E-mail_Address")`` -> ({customer, e, mail, address}, ...)."""
    words: list[str] = []
    for part in path:
        spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", part)
        text = unicodedata.normalize("NFKD", spaced.replace("ß", "ss"))
        text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
        words += [w for w in re.split(r"[^a-z0-9]+", text) if w]
    return set(words), "".join(words)


# Abbreviations that match a whole word of the header only: inside a joined header they are
# parts of other words ("fullname", "midlname" hold "lname").
_WHOLE_WORD_ONLY = frozenset({"fname", "lname"})


def _hints(path: Path_) -> set[str]:
    words, joined = header_tokens(path)
    found = set()
    for what, keys in HINTS.items():
        for key in keys:
            inside = len(key) >= 4 and key not in _WHOLE_WORD_ONLY and key in joined
            if key in words or inside:
                found.add(what)
                break
    return found


@dataclass
class ColumnProfile:
    """Counts over a column's sampled values (never the values)."""

    path: Path_
    rows: int  # rows sampled
    present: int = 0  # non-empty values
    distinct: int = 0
    matches: dict[str, int] = field(default_factory=dict)  # detector -> values that pass
    hints: set[str] = field(default_factory=set)  # what the header suggests (HINTS keys)
    date_pattern: DatePattern | None = None  # the way most values are written
    # Every way the column's dates are written, most values first (date_pattern leads): a
    # spreadsheet drops a midnight's time ("07.03.2025" beside "04.03.2025 14:22") and a
    # hand-kept list mixes ISO into local dates. Never two patterns that read one value
    # differently (dd/MM and MM/dd): see :func:`date_cover`.
    date_patterns: list[DatePattern] = field(default_factory=list)
    # "epoch_seconds" / "epoch_millis" when nearly every value is a count since 1970 that
    # lands in 2000-2100 (10 or 13 digits): silver's parse_timestamp reads these formats.
    epoch_format: str | None = None
    # The earliest century of the dates before 1900 (a count, never a value: "1600").
    earliest_century: int | None = None
    decimal_comma: bool = False
    phone_regions: Counter[str] = field(default_factory=Counter)
    countries: Counter[str] = field(default_factory=Counter)

    @property
    def name(self) -> str:
        return ".".join(self.path)

    def share(self, detector: str) -> float:
        """Fraction of the present values that pass ``detector`` (0 for an empty column)."""
        return self.matches.get(detector, 0) / self.present if self.present else 0.0

    # Present and distinct in every distinct record: exact duplicate rows (a file delivered
    # twice, an export that repeats a line) say nothing against a key; silver drops them.
    key_unique: bool = False

    @property
    def unique(self) -> bool:
        return self.present == self.rows > 0 and self.distinct == self.present


@dataclass
class SampleProfile:
    columns: list[ColumnProfile]
    rows: int
    # The country most rows name (from a country column), else None: the region of national
    # phone numbers and the postcode rules.
    region: str | None = None
    # Sampled rows that repeat an earlier row exactly (every column equal).
    duplicate_rows: int = 0


def _blank(value: str | None) -> bool:
    return value is None or not value.strip() or value.strip().lower() in PLACEHOLDERS


def _country(value: str) -> str | None:
    return COUNTRY_KEYS.get(fold_key_py(value))


def _date_year(value: str, pattern: DatePattern) -> int | None:
    """The year of ``value`` read with ``pattern``, or None where it is not such a date.

    Written with separators ("1630-08-01"), any year from 1000 is a date: a register of
    people born long ago (a historical or genealogical source) writes them. Written as bare
    digits ("19560909"), only 1900-2100: eight digits are as often an id or an amount.
    """
    if not re.fullmatch(pattern.regex, value):
        return None
    try:
        parsed = datetime.strptime(value.replace("Z", "+0000"), pattern.python.replace("%z", "%z"))
    except ValueError:
        return None
    earliest = 1900 if pattern.spark.isalpha() else 1000
    if "yyyy" not in pattern.spark:
        # Python reads "98" as 1998, Spark as 2098: only years both read alike (2000-2068).
        earliest = 2000
    return parsed.year if earliest <= parsed.year <= 2100 else None


def _date(value: str, pattern: DatePattern) -> bool:
    return _date_year(value, pattern) is not None


def _phone(value: str, region: str) -> str | None:
    """The region of a valid phone number, else None."""
    if sum(ch.isdigit() for ch in value) < 7 or re.search(r"[^\d\s+()./\-]", value):
        return None
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.region_code_for_number(number) or region


def _amount(value: str) -> tuple[bool, bool]:
    """(an amount, written with a decimal comma)."""
    text = value.strip().strip(_SYMBOLS).strip()
    parts = text.split()
    if len(parts) == 2 and parts[0].upper() in _CURRENCY_WORDS:
        text = parts[1]
    elif len(parts) == 2 and parts[1].upper() in _CURRENCY_WORDS:
        text = parts[0]
    if not _AMOUNT.match(text):
        return False, False
    return True, bool(re.search(r",\d{1,2}$", text)) and "." not in text[-4:]


# Postcodes that a one-line address carries, as Java regexes (no backslash: they go into a
# Spark SQL literal) whose group 2 is the postcode: a British postcode anywhere ("..., Leeds
# LS1 4AP"), a US ZIP after the state at the end ("..., Springfield, IL 62704").
ADDRESS_POSTCODES: dict[str, str] = {
    "address_postcode_gb": "(^|[^A-Z0-9])([A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2})([^A-Z0-9]|$)",
    "address_postcode_us": "(^|[ ,])[A-Z]{2} +([0-9]{5})(-[0-9]{4})?$",
}


def _whole_number(value: str) -> int | None:
    """``value`` as a whole number ("7", "07", "1934", "7.0" as spreadsheets write them)."""
    digits = value[:-2] if value.endswith(".0") else value
    return int(digits) if digits.isdigit() and len(digits) <= 4 else None


def _postcode(value: str, region: str | None) -> bool:
    compact = re.sub(r"[\s\-]", "", value.upper())
    rules = [POSTCODE_RULES[region]] if region in POSTCODE_RULES else POSTCODE_RULES.values()
    return any(re.match(rx, compact) for rx, _ in rules)


def date_cover(
    matched: list[frozenset[DatePattern]], limit: int = 4
) -> tuple[list[DatePattern], int]:
    """The patterns that together read the most values, and how many values they read.

    ``matched`` holds, per sampled value, the patterns it parses under. Greedy: first the
    pattern most values follow (on a tie the one listed first in :data:`DATE_PATTERNS`: ISO,
    then day first), then, while any is left, the one that reads the most values no chosen
    pattern reads, provided it reads none that a chosen one already reads: two patterns that
    accept the same value (dd/MM/yyyy and MM/dd/yyyy, or H:mm beside HH:mm) would read it
    in two ways, or say nothing new."""
    chosen: list[DatePattern] = []
    covered: set[int] = set()
    while len(chosen) < limit:
        best: tuple[int, int, DatePattern] | None = None
        for order, pattern in enumerate(DATE_PATTERNS):
            if pattern in chosen:
                continue
            reads = {i for i, m in enumerate(matched) if pattern in m}
            if not reads or reads & covered:
                continue
            if best is None or len(reads) > best[0] or (len(reads) == best[0] and order < best[1]):
                best = (len(reads), order, pattern)
        if best is None:
            break
        chosen.append(best[2])
        covered |= {i for i, m in enumerate(matched) if best[2] in m}
    return chosen, len(covered)


def _profile_values(
    profile: ColumnProfile,
    values: list[str],
    region: str | None,
    dates: list[frozenset[DatePattern]],
) -> None:
    m: Counter[str] = Counter()
    for raw in values:
        v = raw.strip()
        low = v.lower()
        if _EMAIL.match(low.removeprefix("mailto:")):
            m["email"] += 1
        phone_region = _phone(v, region or "GB")
        if _NANP.match(v):
            m["nanp_format"] += 1
        if phone_region:
            m["phone"] += 1
            if v.startswith(("+", "00")):
                profile.phone_regions[phone_region] += 1
        years = {p: y for p in DATE_PATTERNS if (y := _date_year(v, p)) is not None}
        parses = frozenset(years)
        is_date = bool(parses)
        if is_date:
            dates.append(parses)
            if min(years.values()) < 1900:
                m["date_before_1900"] += 1
                century = min(years.values()) // 100 * 100
                profile.earliest_century = min(profile.earliest_century or century, century)
        if v.isdigit() and len(v) in (10, 13):
            unit = "epoch_millis" if len(v) == 13 else "epoch_seconds"
            if _EPOCH_MIN <= int(v) // (1000 if len(v) == 13 else 1) <= _EPOCH_MAX:
                m[unit] += 1
        amount, comma = _amount(v)
        if amount:
            m["amount"] += 1
            if "." in v or "," in v:
                m["decimal"] += 1
            if comma:
                m["decimal_comma"] += 1
        if v.upper() in _CURRENCY_WORDS and len(v) <= 5:
            m["currency"] += 1
        country = _country(v)
        if country and not v.isdigit():
            m["country"] += 1
            m["country_name"] += len(v) > 3
            profile.countries[country] += 1
        if fold_key_py(v) in GENDERS and len(v) <= 20:
            m["gender"] += 1
        if _NAME.match(v) and len(v) <= 60:
            m["name_word" if " " not in v.strip(".") else "name_words"] += 1
        if len(v) <= 12 and _postcode(v, region):
            m["postcode"] += 1
        if low in _BOOLEAN:
            m["boolean"] += 1
        if _HOUSE_NUMBER.match(v):
            m["house_number"] += 1
        # A postcode inside a one-line address ("12 High Street, Leeds LS1 4AP"); only
        # an address column can become the street line it is taken from.
        if "address_line1" in profile.hints:
            for name, pattern in ADDRESS_POSTCODES.items():
                if re.search(pattern, v.upper()):
                    m[name] += 1
        # A date's part in a column of its own (a register's "by", "bm", "bd").
        whole = _whole_number(v)
        if whole is not None:
            if 1800 <= whole <= 2100 and len(v.split(".")[0]) == 4:
                m["year"] += 1
            if 1 <= whole <= 12:
                m["month"] += 1
            if 1 <= whole <= 31:
                m["day"] += 1
        # An id holds a digit: a word alone is a name or a code, not an identifier.
        if _ID.match(v) and not is_date and "@" not in v and any(ch.isdigit() for ch in v):
            m["id"] += 1
    profile.matches = dict(m)


def _names_countries(path: Path_, values: list[str]) -> bool:
    """Whether a column of country-like values is a country column: its header says so, or
    some values name a country in full. Two-letter codes alone are as often a US state
    ("NC": New Caledonia), a language or an entry of some code list ("NL" for "not Latino")."""
    return "country" in _hints(path) or any(len(v.strip()) > 3 and _country(v) for v in values)


def profile_sample(sample: Sample) -> SampleProfile:
    """Profile every column of ``sample``: first the countries (they choose the region for
    phone numbers and postcodes), then every detector on every column."""
    n = len(sample.rows)
    columns: dict[Path_, list[str]] = {c: [] for c in sample.columns}
    for row in sample.rows:
        for c in sample.columns:
            value = row.get(c)
            if not _blank(value):
                columns[c].append(value or "")
    countries: Counter[str] = Counter()
    for c, values in columns.items():
        hits = [code for v in values if (code := _country(v)) and not v.isdigit()]
        if values and len(hits) / len(values) >= 0.6 and _names_countries(c, values):
            countries.update(hits)
    region = countries.most_common(1)[0][0] if countries else None
    records = {tuple(repr(row.get(c)) for c in sample.columns): row for row in sample.rows}
    out = []
    for c, values in columns.items():
        profile = ColumnProfile(
            path=c, rows=n, present=len(values), distinct=len(set(values)), hints=_hints(c)
        )
        keys = [row.get(c) for row in records.values()]
        profile.key_unique = bool(keys) and all(not _blank(k) for k in keys)
        profile.key_unique &= len(set(keys)) == len(keys)
        dates: list[frozenset[DatePattern]] = []
        _profile_values(profile, values, region, dates)
        if dates:
            # A tie between dd/MM and MM/dd means no day above 12 was seen: day first.
            profile.date_patterns, profile.matches["date"] = date_cover(dates)
            profile.date_pattern = profile.date_patterns[0]
        for unit in ("epoch_millis", "epoch_seconds"):
            if profile.present and profile.matches.get(unit, 0) >= 0.9 * profile.present:
                profile.epoch_format = unit
        profile.decimal_comma = profile.matches.get("decimal_comma", 0) > profile.present / 2
        out.append(profile)
    return SampleProfile(columns=out, rows=n, region=region, duplicate_rows=n - len(records))
