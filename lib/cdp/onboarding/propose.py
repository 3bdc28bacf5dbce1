"""From column profiles to a proposed declaration: ``kind``, ``primary_key``, ``event_time``,
``mapping`` and ``defaults``, each with the evidence that chose it.

A proposal is a guess a person accepts or edits, so every choice carries one line saying why
(``98% of 1,000 sampled values parse as e-mail``), and a column is proposed for a field only
when its values say so (for value-typed fields: e-mail, phone, dates, countries, currencies,
amounts) or when its header says so and its values do not contradict it (names, cities,
streets, codes, whose values alone cannot tell a first name from a city).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from cdp.onboarding.profile_columns import (
    ADDRESS_POSTCODES,
    HINTS,
    ColumnProfile,
    SampleProfile,
    header_tokens,
)
from cdp.onboarding.sample import Path_
from cdp.silver.model import TABLE_FOR_KIND_NAME
from cdp.sources import SourceKind

__all__ = ["Choice", "Proposal", "column_expr", "propose"]

# Words Spark SQL reads as keywords: a path segment spelled like one is quoted.
_KEYWORDS = frozenset(
    [
        "all",
        "and",
        "as",
        "by",
        "case",
        "cast",
        "date",
        "day",
        "else",
        "end",
        "false",
        "from",
        "group",
        "having",
        "in",
        "interval",
        "is",
        "join",
        "like",
        "limit",
        "not",
        "null",
        "on",
        "or",
        "order",
        "select",
        "table",
        "then",
        "time",
        "timestamp",
        "to",
        "true",
        "union",
        "user",
        "when",
        "where",
        "window",
        "with",
    ]
)
_SIMPLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def column_expr(path: Path_) -> str:
    """A column path as a mapping expression: ``customer.email``; a segment that is not a
    plain identifier (``E-mail_Address``, ``Straße``, ``order``) in backticks."""
    return ".".join(
        p
        if _SIMPLE.fullmatch(p) and p.lower() not in _KEYWORDS
        else "`" + p.replace("`", "``") + "`"
        for p in path
    )


def column_name(path: Path_) -> str:
    """A column as ``primary_key`` / ``event_time`` name it: the bronze name, nested fields
    as a dotted path."""
    return ".".join(path)


@dataclass(frozen=True)
class Choice:
    value: str
    evidence: str


@dataclass
class Proposal:
    kind: SourceKind
    kind_evidence: str
    primary_key: list[str] = field(default_factory=list)
    primary_key_evidence: str = ""
    event_time: str | None = None
    # Several when the column writes its times in several ways (see ColumnProfile).
    event_time_format: list[str] = field(default_factory=list)
    event_time_evidence: str = ""
    # Custom identifiers the mapping names (a national id): the source's ``identifiers``.
    identifiers: list[str] = field(default_factory=list)
    mapping: dict[str, Choice] = field(default_factory=dict)
    defaults: dict[str, Choice] = field(default_factory=dict)
    delete_flag: Choice | None = None
    unmapped: list[str] = field(default_factory=list)


def _pct(part: int, whole: int) -> str:
    return f"{round(100 * part / whole) if whole else 0}% of {whole:,}"


def _values(c: ColumnProfile, detector: str, what: str) -> str:
    return f"{_pct(c.matches.get(detector, 0), c.present)} sampled values {what}"


def _header(c: ColumnProfile) -> str:
    return f"header '{c.name}'"


# (field, detector, share needed without / with a header hint, the hint, "values ..." text)
_VALUE_FIELDS: tuple[tuple[str, str, float, float, str, str], ...] = (
    ("email", "email", 0.6, 0.3, "email", "parse as e-mail"),
    ("phone", "phone", 0.6, 0.3, "phone", "are valid phone numbers (phonenumbers)"),
    ("country", "country", 0.6, 0.3, "country", "name a country"),
    ("currency", "currency", 0.6, 0.3, "currency", "are currency codes or symbols"),
)
_HEADER_FIELDS: tuple[tuple[str, str, str, str], ...] = (
    # (field, hint, detector the values must pass, "values ..." text)
    ("postcode", "postcode", "postcode", "are postcodes"),
    ("first_name", "first_name", "name", "look like names"),
    ("last_name", "last_name", "name", "look like names"),
    ("full_name", "full_name", "name", "look like names"),
    ("city", "city", "name", "look like place names"),
    ("birth_place", "birth_place", "name", "look like place names"),
    ("address_line1", "address_line1", "", ""),
    ("gender", "gender", "gender", "are gender values"),
)
_CODE_FIELDS = ("event_type", "channel", "purpose", "status")
_ID_FIELDS = (
    ("loyalty_id", "loyalty"),
    ("customer_id", "customer"),
    ("anonymous_id", "anonymous_id"),
    ("device_id", "device_id"),
    ("campaign_id", "campaign_id"),
    ("store_id", "store_id"),
)


def _name_share(c: ColumnProfile) -> float:
    hits = c.matches.get("name_word", 0) + c.matches.get("name_words", 0)
    return hits / c.present if c.present else 0.0


def _candidates(profile: SampleProfile) -> list[tuple[float, str, ColumnProfile, str]]:
    """Every (score, canonical field, column, evidence) the columns support."""
    out: list[tuple[float, str, ColumnProfile, str]] = []
    for c in profile.columns:
        if not c.present:
            continue
        for fld, det, need, need_hinted, hint, what in _VALUE_FIELDS:
            hinted = hint in c.hints
            share = c.share(det)
            if fld == "country" and not hinted and not c.matches.get("country_name"):
                continue  # two-letter codes alone (see profile_columns._names_countries)
            if share >= (need_hinted if hinted else need):
                evidence = _values(c, det, what) + (f"; {_header(c)}" if hinted else "")
                out.append((share + 0.3 * hinted, fld, c, evidence))
        for fld, hint, det, what in _HEADER_FIELDS:
            if hint not in c.hints:
                continue
            if fld == "full_name" and c.hints & {"first_name", "last_name", "city"}:
                continue
            if fld in ("first_name", "last_name", "full_name") and (
                header_tokens(c.path)[0] & _NAME_PART_WORDS
            ):
                continue
            if fld == "city" and "birth_place" in c.hints:
                continue  # "birth_city": where the person was born, not where they live
            if fld == "address_line1" and c.share("house_number") >= 0.8:
                continue  # the street line's number alone (see _street_line)
            share = _name_share(c) if det == "name" else c.share(det) if det else 1.0
            if share >= 0.6:
                evidence = _header(c) + (f"; {_values(c, 'name_word', what)}" if det else "")
                if det == "name":
                    hits = c.matches.get("name_word", 0) + c.matches.get("name_words", 0)
                    evidence = f"{_header(c)}; {_pct(hits, c.present)} sampled values {what}"
                elif det:
                    evidence = f"{_header(c)}; {_values(c, det, what)}"
                out.append((0.5 + 0.5 * share, fld, c, evidence))
        if c.date_pattern is not None and c.share("date") >= 0.6:
            pattern = " or ".join(p.spark for p in c.date_patterns)
            evidence = f"{_values(c, 'date', 'are dates')} written {pattern}"
            two_digit_year = any("yyyy" not in p.spark for p in c.date_patterns)
            if "birth_date" in c.hints and not c.date_pattern.has_time and not two_digit_year:
                out.append((1.5, "birth_date", c, f"{_header(c)}; {evidence}"))
            elif "birth_date" not in c.hints:
                score = c.share("date") + 0.3 * ("time" in c.hints)
                score += 0.2 * c.date_pattern.has_time + 0.2 * ("updated" in c.hints)
                out.append((score, "_time", c, evidence + (f"; {_header(c)}" if c.hints else "")))
        if c.epoch_format is not None and "time" in c.hints and c.date_pattern is None:
            unit = "milliseconds" if c.epoch_format == "epoch_millis" else "seconds"
            evidence = f"{_values(c, c.epoch_format, f'are {unit} since 1970')}; {_header(c)}"
            out.append((c.share(c.epoch_format) + 0.3, "_time", c, evidence))
        if (
            "amount" in c.hints
            and c.share("amount") >= 0.8
            or (c.share("amount") >= 0.9 and c.share("decimal") >= 0.5 and not c.unique)
        ):
            hinted = "amount" in c.hints
            evidence = _values(c, "amount", "are amounts") + (f"; {_header(c)}" if hinted else "")
            out.append((c.share("amount") + 0.3 * hinted, "amount", c, evidence))
        idish = c.share("id") >= 0.9
        for fld, hint in _ID_FIELDS:
            if hint in c.hints and idish:
                evidence = f"{_header(c)}; {_values(c, 'id', 'are id-shaped')}"
                out.append((1.0 + 0.2 * ("id" in c.hints), fld, c, evidence))
        if "order" in c.hints and idish:
            score = 1.0 + 0.3 * c.unique + 0.2 * ("id" in c.hints)
            evidence = f"{_header(c)}; {_values(c, 'id', 'are id-shaped')}"
            out.append((score, "order_id", c, evidence + ("; unique" if c.unique else "")))
        for code in _CODE_FIELDS:
            if code in c.hints and c.distinct <= 30:
                out.append((0.8, code, c, f"{_header(c)}; {c.distinct} distinct values"))
    return out


# Header hints of what a person has rather than what names a record.
_ATTRIBUTE_HINTS = frozenset(
    {"postcode", "phone", "birth_date", "birth_place", "gender", "city", "address_line1",
     "country", "first_name", "last_name", "quantity", "unit_price", "amount"}
)  # fmt: skip
# Header words of a name's other parts ("name_sfx_cd", "midl_name", "Anrede"): never the
# first, last or full name, though "name" and "lname" ("midLNAME") are in their headers.
_NAME_PART_WORDS = frozenset(
    {"sfx", "suffix", "prefix", "title", "titel", "middle", "midl", "mname", "middlename",
     "maiden", "salutation", "anrede", "honorific", "initial", "initials", "nickname"}
)  # fmt: skip


def _primary_key(profile: SampleProfile, kind: SourceKind) -> ColumnProfile | None:
    """The column that identifies a record: unique, never empty, id-shaped; the header
    (an id, an order number in a transaction source) and an earlier position break ties."""
    best: tuple[float, ColumnProfile] | None = None
    for i, c in enumerate(profile.columns):
        if not c.key_unique or c.share("id") < 0.99 or c.share("email") > 0:
            continue
        if c.hints & _ATTRIBUTE_HINTS and not c.hints & {"customer", "crm", "order"}:
            continue  # a sample's unique postcodes or birth years are no record id
        score = 1.0 * ("id" in c.hints) - 0.01 * i
        if kind is SourceKind.TRANSACTION:
            score += 1.0 * ("order" in c.hints)
        elif kind is SourceKind.PROFILE:
            score += 0.5 * ("customer" in c.hints)
        timeish = c.share("date") > 0.5 or (c.epoch_format is not None and "time" in c.hints)
        if timeish or c.share("amount") > 0.5 and not c.hints & {"id", "order"}:
            score -= 2  # a unique time or amount is a coincidence of the sample
        if best is None or score > best[0]:
            best = (score, c)
    return best[1] if best else None


def _kind(fields: dict[str, tuple[ColumnProfile, str]]) -> tuple[SourceKind, str]:
    person = [f for f in ("email", "phone", "first_name", "last_name", "full_name") if f in fields]
    if "amount" in fields:
        return SourceKind.TRANSACTION, f"an amount column ('{fields['amount'][0].name}')"
    if "purpose" in fields and "status" in fields:
        return SourceKind.CONSENT, "purpose and status columns"
    if "event_type" in fields and "_time" in fields:
        return SourceKind.EVENT, "an event type and a time column"
    if person:
        return SourceKind.PROFILE, f"person columns ({', '.join(person)}) and no amount"
    return SourceKind.OTHER, "no person, amount or event columns recognised"


def _assign(
    candidates: list[tuple[float, str, ColumnProfile, str]], allowed: set[str]
) -> dict[str, tuple[ColumnProfile, str]]:
    """Best column per field, each column used once: strongest evidence first."""
    taken: set[Path_] = set()
    out: dict[str, tuple[ColumnProfile, str]] = {}
    for _score, fld, c, evidence in sorted(candidates, key=lambda t: -t[0]):
        if fld in out or c.path in taken or fld not in allowed:
            continue
        out[fld] = (c, evidence)
        taken.add(c.path)
    return out


def propose(profile: SampleProfile) -> Proposal:
    """The declaration the sample supports (see the module docstring)."""
    candidates = _candidates(profile)
    every = {fld for _s, fld, _c, _e in candidates}
    kind, why = _kind(_assign(candidates, every))
    table = TABLE_FOR_KIND_NAME[kind.value]
    allowed = (set(table.fields) - {"source_record_id", table.time_field}) | {"_time"}
    assigned = _assign(candidates, allowed)
    proposal = Proposal(kind=kind, kind_evidence=why)

    pk = _primary_key(profile, kind)
    if pk is not None:
        proposal.primary_key = [column_name(pk.path)]
        repeated = profile.duplicate_rows
        proposal.primary_key_evidence = (
            f"all {pk.rows:,} sampled values present and unique"
            if not repeated
            else f"present and unique in each of the {pk.rows - repeated:,} distinct records "
            f"({repeated:,} sampled row(s) repeat another exactly: silver drops them)"
        ) + f"; {_header(pk)}"
        proposal.mapping["source_record_id"] = Choice(
            column_expr(pk.path), "the primary key: the record's own id"
        )
        # The record's id is also the id the rest of the company knows it by.
        if kind is SourceKind.TRANSACTION and "order_id" not in assigned:
            assigned["order_id"] = (pk, "the primary key of a transaction source")
        elif kind is SourceKind.PROFILE and pk.path not in {c.path for c, _ in assigned.values()}:
            # Only when the header names a customer or CRM number: a record id ("rec_id",
            # "id") of a file full of duplicates is no person's id, and as one it would keep
            # every duplicate apart (identity's per-customer limits on crm_id, customer_id).
            fld = (
                "customer_id" if "customer" in pk.hints else "crm_id" if "crm" in pk.hints else None
            )
            if fld is not None:
                evidence = f"the primary key of a profile source; {_header(pk)}"
                assigned.setdefault(fld, (pk, evidence))
    else:
        tops = sorted({c.path[0] for c in profile.columns})
        expr = "xxhash64(" + ", ".join(column_expr((t,)) for t in tops) + ")"
        proposal.mapping["source_record_id"] = Choice(
            expr, "no sampled column is unique: a hash of the whole record (edit if there is an id)"
        )
    if "_time" in assigned:
        c, evidence = assigned.pop("_time")
        proposal.event_time = column_name(c.path)
        proposal.event_time_evidence = evidence
        proposal.event_time_format = [p.spark for p in c.date_patterns] or (
            [c.epoch_format] if c.epoch_format else []
        )
        assigned[table.time_field] = (c, "the event_time column")

    used = {c.path for c, _ in assigned.values()} | ({pk.path} if pk else set())
    street = _street_line(profile, assigned, used)
    if "postcode" in table.fields and "postcode" not in assigned and "address_line1" in assigned:
        postcode = _postcode_in_address(assigned["address_line1"][0])
        if postcode is not None:
            proposal.mapping["postcode"] = postcode
    if kind is SourceKind.PROFILE and "birth_date" not in assigned:
        birth_date = _birth_date_parts(profile, used)
        if birth_date is not None:
            proposal.mapping["birth_date"] = birth_date
        else:
            year = _birth_part(profile, used, "year")
            if year is not None:
                used.add(year.path)
                proposal.mapping["birth_year"] = Choice(
                    column_expr(year.path),
                    f"{_header(year)} ({_values(year, 'year', 'are years')}): a birth year "
                    "alone, compared where a pair lacks a full birth date",
                )
    line_amount = _line_amount(profile, assigned, used)
    for fld in table.fields:
        if fld == "address_line1" and street is not None:
            proposal.mapping[fld] = street
        elif fld == "amount" and line_amount is not None:
            proposal.mapping[fld] = line_amount
        elif fld in assigned:
            c, evidence = assigned[fld]
            proposal.mapping[fld] = Choice(column_expr(c.path), evidence)
    if kind is SourceKind.PROFILE:
        national = _national_id(profile, used)
        if national is not None:
            proposal.mapping["national_id"] = Choice(column_expr(national.path), (
                f"{_header(national)}; {_values(national, 'id', 'are id-shaped')}; a custom "
                "identifier (identifiers:)"))  # fmt: skip
            proposal.identifiers.append("national_id")
            used.add(national.path)
    for c in profile.columns:
        if "delete" in c.hints and c.share("boolean") >= 0.9:
            proposal.delete_flag = Choice(column_name(c.path), f"{_header(c)}; yes/no values")
    proposal.unmapped = [c.name for c in profile.columns if c.path not in used]
    _defaults(proposal, profile, assigned)
    return proposal


def _street_line(
    profile: SampleProfile, assigned: dict[str, tuple[ColumnProfile, str]], used: set[Path_]
) -> Choice | None:
    """The street line from two columns, when the file keeps the house number apart
    ("street_number" 7, "address_1" "wallaby place"): both, in the file's order, else two
    records of one address would compare a street with no number to nothing."""
    if "address_line1" not in assigned:
        return None
    street = assigned["address_line1"][0]
    numbers = [
        c
        for c in profile.columns
        if c.path not in used
        and c.hints & {"address_line1", "house_number"}
        and c.present
        and c.share("house_number") >= 0.8
    ]
    if not numbers:
        return None
    number = numbers[0]
    order = [c.path for c in profile.columns]
    first, second = sorted((number, street), key=lambda c: order.index(c.path))
    used.add(number.path)
    return Choice(
        f"concat_ws(' ', {column_expr(first.path)}, {column_expr(second.path)})",
        f"{_header(street)} and the house numbers of {_header(number)} "
        f"({_values(number, 'house_number', 'are house numbers')})",
    )


# A birth date's parts in columns of their own: the header words of each part. Short forms
# (a register's "by", "bm", "bd"; "yob") name the part alone; otherwise a birth word ("birth",
# "dob", "geburt": the birth_date hint) with a part word ("birth_year", "DOB_Month",
# "Geburtsjahr" reads as one word, hence the joined forms).
_BIRTH_PARTS: tuple[tuple[str, frozenset[str], frozenset[str]], ...] = (
    ("year", frozenset({"by", "yob", "birthyear", "yearofbirth", "geburtsjahr", "jahrgang"}),
     frozenset({"year", "yr", "yyyy", "jahr", "annee", "ano"})),
    ("month", frozenset({"bm", "mob", "birthmonth", "monthofbirth", "geburtsmonat"}),
     frozenset({"month", "mon", "mm", "monat", "mois", "mes"})),
    ("day", frozenset({"bd", "birthday", "dayofbirth", "geburtstag"}),
     frozenset({"day", "dd", "tag", "jour", "dia"})),
)  # fmt: skip


def _postcode_in_address(address: ColumnProfile) -> Choice | None:
    """The postcode out of a one-line address, where 60% of its values carry one of a kind
    (:data:`ADDRESS_POSTCODES`): without it, two records of one address written differently
    ("12 High St, Leeds LS1 4AP" / "12 High Street LS1 4AP") share nothing comparable."""
    best = max(ADDRESS_POSTCODES, key=lambda name: address.share(name))
    if address.share(best) < 0.6:
        return None
    pattern = ADDRESS_POSTCODES[best]
    expr = f"nullif(regexp_extract(upper({column_expr(address.path)}), '{pattern}', 2), '')"
    kind = "a British postcode" if best.endswith("gb") else "a US ZIP code after the state"
    return Choice(expr, f"{_values(address, best, f'of {_header(address)} carry {kind}')}")


def _birth_part(profile: SampleProfile, used: set[Path_], part: str) -> ColumnProfile | None:
    """The column holding the birth date's ``part`` ("year", "month", "day"), if any: its
    header names the part of a birth date and 90% of its values are whole numbers in range."""
    names, words = next((n, w) for p, n, w in _BIRTH_PARTS if p == part)
    for c in profile.columns:
        if c.path in used or not c.present or c.share(part) < 0.9:
            continue
        tokens, joined = header_tokens(c.path)
        if joined in names or tokens & names or ("birth_date" in c.hints and tokens & words):
            return c
    return None


def _birth_date_parts(profile: SampleProfile, used: set[Path_]) -> Choice | None:
    """The birth date from a year, a month and a day column ("by" 1934, "bm" 12, "bd" 3, as
    record-linkage registers keep them): one ISO date per record where all three are whole
    numbers, else none (silver then checks the date like any other). All three or nothing:
    a year alone is no birth date."""
    found = {p: c for p, *_ in _BIRTH_PARTS if (c := _birth_part(profile, used, p)) is not None}
    if len(found) < 3:
        return None
    used.update(c.path for c in found.values())
    # Through a decimal: "7.0" (a spreadsheet's number) is 7, which a cast to INT refuses.
    ints = [
        f"try_cast(try_cast({column_expr(found[p].path)} AS DECIMAL(10,2)) AS INT)"
        for p in ("year", "month", "day")
    ]
    present = " AND ".join(f"{i} IS NOT NULL" for i in ints)
    expr = f"CASE WHEN {present} THEN format_string('%04d-%02d-%02d', {', '.join(ints)}) END"
    evidence = ", ".join(
        f"{_header(found[p])} ({_values(found[p], p, f'are {p}s')})"
        for p in ("year", "month", "day")
    )
    return Choice(expr, f"year, month and day of birth in three columns: {evidence}")


# Header words of an order's total (the amount words that do not name a unit price): a
# column saying one of them is no unit price.
_TOTAL_WORDS = frozenset(HINTS["amount"]) - frozenset(HINTS["unit_price"])


def _line_amount(
    profile: SampleProfile, assigned: dict[str, tuple[ColumnProfile, str]], used: set[Path_]
) -> Choice | None:
    """An order line's amount when the file gives a unit price and a quantity ("Price" 2.55,
    "Quantity" 6, as retail line-item exports do): their product, not the price. Parsed with
    ``try_cast`` so that a value that is no number leaves the amount empty (silver then
    quarantines the row with its reason) instead of failing the run."""
    if "amount" not in assigned:
        return None
    price = assigned["amount"][0]
    words, _ = header_tokens(price.path)
    if "unit_price" not in price.hints or words & _TOTAL_WORDS or price.decimal_comma:
        return None
    quantities = [
        c
        for c in profile.columns
        if c.path not in used
        and "quantity" in c.hints
        and c.present
        and c.share("amount") >= 0.9
        and not c.decimal_comma
    ]
    if not quantities:
        return None
    qty = quantities[0]
    used.add(qty.path)

    def num(c: ColumnProfile) -> str:
        return f"try_cast({column_expr(c.path)} AS decimal(18,4))"

    return Choice(
        f"{num(qty)} * {num(price)}",
        f"{_header(price)} is a unit price ({_values(price, 'amount', 'are amounts')}) and "
        f"{_header(qty)} a quantity: the line's amount is their product",
    )


def _national_id(profile: SampleProfile, used: set[Path_]) -> ColumnProfile | None:
    """A column the header calls a person's official number (social security, national
    insurance, tax, passport) whose values are id-shaped: a custom identifier."""
    for c in profile.columns:
        if c.path not in used and "national_id" in c.hints and c.share("id") >= 0.9:
            return c
    return None


def _defaults(
    proposal: Proposal, profile: SampleProfile, assigned: dict[str, tuple[ColumnProfile, str]]
) -> None:
    if "phone" in assigned:
        phone = assigned["phone"][0]
        if profile.region:
            proposal.defaults["phone_region"] = Choice(
                profile.region, "the country most sampled rows name"
            )
        elif phone.share("nanp_format") >= 0.5:
            proposal.defaults["phone_region"] = Choice(
                "US", _values(phone, "nanp_format", "are written the North American way")
            )
        elif phone.phone_regions:
            region, n = phone.phone_regions.most_common(1)[0]
            proposal.defaults["phone_region"] = Choice(
                region, f"{_pct(n, phone.present)} sampled numbers are international ones of it"
            )
    if "birth_date" in assigned:
        c = assigned["birth_date"][0]
        if c.date_patterns:
            proposal.defaults["date_formats"] = Choice(
                json.dumps([p.spark for p in c.date_patterns]), f"how '{c.name}' writes its dates"
            )
        # Birth dates before silver's 1900 floor in more than the odd typo: people born long
        # ago (a historical register), whose dates silver would otherwise call implausible.
        early = c.matches.get("date_before_1900", 0)
        if c.earliest_century is not None and early >= max(2, 0.02 * c.present):
            proposal.defaults["birth_date_min"] = Choice(
                f"{c.earliest_century}-01-01",
                f"{_values(c, 'date_before_1900', 'are dates before 1900')}"
                f" (silver's floor otherwise)",
            )
    if "amount" in assigned and assigned["amount"][0].decimal_comma:
        c = assigned["amount"][0]
        proposal.defaults["decimal_comma"] = Choice(
            "true", f"{_values(c, 'decimal_comma', 'use a decimal comma')}"
        )
