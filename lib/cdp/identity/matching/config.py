"""Probabilistic matching, declared in YAML (``conf/rules/matching.yaml``).

    rule: probabilistic            # the rule name its links carry
    priority: 10                   # their tier: below every exact rule
    guards: uncompared             # name, date and id guards on compared fields do not hold them
    tables: [person_records]       # record tables whose records are compared
    min_fields: 2                  # a record takes part with at least this many compared values
    thresholds: {match: 0.99, review: 0.5}
    max_pairs: 20000000            # a blocking rule generating more fails before any write
    comparisons:
      - {name: first_name, kind: forename, field: first_name, optional: true}
      - {name: birth_date, kind: birth_date, field: birth_date}
      - {name: national_id, kind: identifier, field: national_id}   # a custom identifier
    blocking:
      - [last_name, birth_date]
      - [first_name=last_name, birth_date]   # crosswise: a name written in the other field
    training: {seed: 42, u_max_pairs: 5e6, em_max_pairs: 1e6, em_blocking: [[birth_date]]}

A comparison names a canonical field of the compared tables or a custom identifier that a
source declares (``identifiers:`` in its YAML). A comparison on a field that no enabled
source maps fails at load time, with the file and key named, unless it is ``optional``
(the shipped, generic configuration marks every comparison optional: a company without
phones is matched on what it has). Blocking rules and training passes over fields left
without a comparison are dropped with them.

A blocking rule lists fields whose values must be equal. A ``a=b`` entry compares two fields
crosswise (the left record's ``a`` equals the right record's ``b``): ``[first_name=last_name,
birth_date]`` finds the pair whose names were written the other way round even when the
other name is also mistyped or the address moved. A crosswise rule matches pairs either way
round (it is also applied mirrored, ``b=a``). ``initial(field)`` and ``year(field)`` block on
the first letter or the first four characters (a ``yyyy-MM-dd`` date's year) of a field:
``[initial(first_name), initial(last_name), birth_date]`` finds two records of one birth date
whose names are both mistyped. Training passes take plain fields only.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cdp.errors import ConfigError
from cdp.identity.rules import load_nicknames
from cdp.yamlio import read_yaml

_NAME = r"^[a-z][a-z0-9_]*$"
CROSS = "="  # a blocking entry ``a=b``: the left record's a equals the right record's b
# Blocking keys derived from a field: ``initial(last_name)``, ``year(birth_date)``.
KEY_FUNCTIONS = {"initial": "substr({}, 1, 1)", "year": "substr({}, 1, 4)"}
_SIDE = re.compile(r"^(?:(?P<fn>[a-z]+)\((?P<arg>[a-z][a-z0-9_]*)\)|(?P<field>[a-z][a-z0-9_]*))$")


def block_sides(entry: str) -> tuple[str, str]:
    """The (left, right) sides of a blocking entry: ``"a"`` -> (a, a), ``"a=b"`` -> (a, b)."""
    if CROSS in entry:
        left, _, right = entry.partition(CROSS)
        return left.strip(), right.strip()
    return entry, entry


def parse_side(side: str) -> tuple[str | None, str]:
    """``"year(birth_date)"`` -> ("year", "birth_date"); ``"city"`` -> (None, "city")."""
    m = _SIDE.match(side)
    if not m or (m["fn"] and m["fn"] not in KEY_FUNCTIONS):
        raise ValueError(side)
    return (m["fn"], m["arg"]) if m["fn"] else (None, m["field"])


def block_fields(rule: list[str]) -> set[str]:
    """Every field a blocking rule reads (both sides of a crosswise entry)."""
    out = set()
    for entry in rule:
        for side in block_sides(entry):
            try:
                out.add(parse_side(side)[1])
            except ValueError:
                out.add(side)
    return out


ComparisonKind = Literal[
    "forename",  # nickname-aware first names, swapped with the surname
    "surname",  # last names, swapped with the first name
    "birth_date",  # exact / day-month transposed / year off / one character off
    # A birth year recorded alone: exact / one off. Where the rules also compare a birth
    # date, records with one give their year too, and a pair with a full date on both sides
    # leaves this comparison to the birth date's (its null level: no evidence counted twice).
    "year",
    "postcode",  # exact / one character off / same district
    "city",  # exact / near
    "address",  # a street line: exact / similar / alike
    "location",  # street line, postcode and city as one piece of evidence (see comparisons)
    "email",  # exact / same local part / near
    "phone",  # exact / same last 8 digits / one digit off
    "identifier",  # an issued number: exact / one character off (a typo)
    "exact",  # exact only
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ComparisonSpec(_Strict):
    """One comparison of a record pair on one field."""

    name: str = Field(pattern=_NAME)
    kind: ComparisonKind
    # The compared field; a ``location`` compares ``fields``: [street line, postcode, city].
    field: str | None = Field(default=None, pattern=_NAME)
    fields: list[str] | None = Field(default=None, min_length=3, max_length=3)
    # Adjust exact-match weights by how common the value is (a rare postcode says more).
    term_frequency: bool = False
    # Skipped (and said so in the run log) when no source maps the field.
    optional: bool = False
    # Counted toward ``min_fields``. False for a value most people share with many others
    # (gender): weighed when present, but a record with only names and it is no candidate.
    identifying: bool = True

    @model_validator(mode="after")
    def _one_way(self) -> ComparisonSpec:
        if self.kind == "location":
            if not self.fields or self.field:
                raise ValueError("a location comparison takes fields: [street, postcode, city]")
        elif not self.field or self.fields:
            raise ValueError(f"a {self.kind} comparison takes one field")
        return self

    def columns(self) -> list[str]:
        return list(self.fields) if self.fields else [str(self.field)]


class Thresholds(_Strict):
    # A pair at or above ``match`` probability becomes a link; between ``review`` and
    # ``match`` it goes to the review queue.
    match: float = Field(default=0.99, gt=0, lt=1)
    review: float = Field(default=0.5, gt=0, lt=1)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.review > self.match:
            raise ValueError(f"review ({self.review}) must not exceed match ({self.match})")
        return self


class PersonCheck(_Strict):
    """A scored pair whose comparison ``disagree`` falls in its ELSE level is no link (it goes
    to the review queue) unless a comparison of ``unless_agree`` agrees (any level but ELSE
    and null). Household members share a surname, an address, an e-mail, a phone: counted as
    independent evidence those outweigh two different birth dates, and only values a person
    has alone (a birth date, an id number) can tell that two different first names or birth
    dates are one person's mistyped or replaced value."""

    disagree: str = Field(pattern=_NAME)
    unless_agree: list[str] = Field(default_factory=list)
    # The check holds pairs only where the trained model finds ``disagree`` in its ELSE level
    # for at most this share of matching pairs (the level's m-probability): there a
    # disagreement is rare in one person's records and tells of two people. Where the
    # source's values are that noisy (birth dates mistyped by weeks in a third of a person's
    # records), the check would hold the true pairs it exists to keep, and the model, which
    # has learnt that noise, decides alone; the run log says which checks stood down.
    max_m_probability: float = Field(default=0.2, gt=0, le=1)


class Training(_Strict):
    seed: int = 42
    # Where EM runs. duckdb: Splink's DuckDB backend in the driver, on a seeded sample of at
    # most ``max_records`` records (all of them below that): the model has a few dozen
    # parameters, and Splink's Spark backend spends most of its training time on the many
    # small jobs of its EM iterations (measured 15x DuckDB's time on the same records).
    # spark: Splink's Spark backend on every record. Scoring always runs on Spark.
    engine: Literal["duckdb", "spark"] = "duckdb"
    max_records: int = Field(default=300_000, ge=2)
    # Record pairs sampled at random for the u-probabilities (non-matches).
    u_max_pairs: float = Field(default=5e6, gt=0)
    # EM passes, each blocked on these fields (pairs that agree on them), sampled down to
    # ``em_max_pairs`` pairs; m-probabilities of the blocked fields come from other passes.
    # A pass's pairs must be mostly matches at any size: blocked on a name alone, a large
    # company's namesakes outnumber them and EM learns them as matches (conf/rules/
    # matching.yaml says what that did).
    em_blocking: list[list[str]] = Field(
        default_factory=lambda: [["birth_date"], ["first_name", "last_name", "postcode"]]
    )
    em_max_pairs: float = Field(default=2e6, gt=0)
    # Passes added, first usable first, for each compared field that the usable passes of
    # ``em_blocking`` all block on: its m-probabilities would otherwise keep the floor, and an
    # exact first name would count against a pair (a source without birth dates: the names'
    # pass is the only one left).
    em_fallback: list[list[str]] = Field(
        default_factory=lambda: [
            ["first_name", "last_name", "city"],
            ["phone"],
            ["email"],
            ["first_name", "last_name"],
            ["birth_year"],
            ["postcode"],
            ["city"],
        ]
    )
    # Deterministic rules (fields all equal) and their assumed recall, for the prior
    # probability that two random records match.
    prior_rules: list[list[str]] = Field(
        default_factory=lambda: [["first_name", "last_name", "birth_date"]]
    )
    prior_recall: float = Field(default=0.7, gt=0, le=1)
    # Where no prior rule is usable (no source gives a birth date or year), the first of
    # these that is: without one the prior keeps its 1e-5 start, understated tenfold on a
    # company of a few thousand records.
    prior_fallback: list[list[str]] = Field(default_factory=list)
    # After EM, estimate that recall from the fitted model instead: the share of matching
    # pairs in which every field of the rule is present on both records (from the values'
    # presence) and agrees exactly (the fitted m-probabilities), under the independence
    # Fellegi-Sunter assumes anyway. A noisy source (Splink's fake_1000: an exact first name,
    # surname and birth date in 8% of one person's pairs) otherwise has its prior, and every
    # score, understated tenfold. ``prior_recall`` stays the first guess and the fallback.
    estimate_prior_recall: bool = True
    # Pairs sampled at random include matches, one in 1/prior: the observed u of a level is
    # prior x m + (1 - prior) x u. Where records repeat each person often (Splink's fake_1000:
    # four records a person, a prior of 1/200) the matches behind an agreeing level are most
    # of what random sampling sees (an exact e-mail: 0.0024 observed, 0.0035 expected from
    # matches alone), and the level's weight is understated by 3-4 bits. After EM, each u is
    # taken as (observed - prior x m) / (1 - prior), at least the probability floor. Large
    # registers (a prior near 1e-5) are unchanged.
    u_without_matches: bool = True
    # Retrain when the model in MLflow is older than this many days (None: never by age).
    train_every_days: int | None = Field(default=None, ge=1)


class MatchingRules(_Strict):
    enabled: bool = True
    rule: str = Field(default="probabilistic", pattern=_NAME)
    priority: int = Field(default=10, ge=0, le=1000)
    # Which of the identity guards (conf/rules/identity.yaml) hold the scored links:
    # ``uncompared`` (the shipped file's choice): those on fields the model does not compare
    # (gender, a CRM or loyalty id); the name and date conflicts and identifier limits on a
    # field it compares do not, because the model has already weighed that field's
    # disagreement (a register entry with a replaced first name or a mistyped id number is
    # still the person's); ``person_checks`` take their place. ``all`` (the default, so that
    # a site's copy from before the setting keeps its behaviour): every guard, as for exact
    # links.
    guards: Literal["uncompared", "all"] = "all"
    # Pair-level checks on person-level comparisons (see PersonCheck), applied to every
    # scored pair at or above the match threshold.
    person_checks: list[PersonCheck] = Field(default_factory=list)
    tables: list[str] = Field(default_factory=lambda: ["person_records"], min_length=1)
    min_fields: int = Field(default=2, ge=1)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    max_pairs: int = Field(default=20_000_000, ge=1)
    comparisons: list[ComparisonSpec] = Field(min_length=1)
    blocking: list[list[str]] = Field(min_length=1)
    # Wide passes (a first and last name alone, a surname in a city) that a small company's
    # records can afford and a million records cannot: each takes part in a run where it
    # generates at most ``broad_max_pairs`` pairs, and is left out, said so in the run log,
    # where it would generate more. Never a failure: the pairs they add, the narrow rules
    # find on large data through a birth date or a postcode.
    broad_blocking: list[list[str]] = Field(default_factory=list)
    broad_max_pairs: int = Field(default=2_000_000, ge=1)
    training: Training = Field(default_factory=Training)
    # Known forms of first names (robert: [bob, rob]) for the forename's nickname level and
    # blocking; ``nicknames_file`` (relative to this file) is merged in when loaded.
    nicknames: dict[str, list[str]] = Field(default_factory=dict)
    nicknames_file: str | None = None
    # Where the rules came from (set by the loader, for messages).
    origin: str = ""
    # The compared fields some enabled source maps (set by resolve_fields). Part of the
    # fingerprint: a location comparison keeps its levels when a source maps no city, and a
    # model trained then has no evidence for "same city"; reused after a source starts
    # mapping one, it would weigh every agreeing city at zero until it is retrained.
    mapped_fields: list[str] = Field(default_factory=list)

    def fields(self) -> list[str]:
        return [f for c in self.comparisons for f in c.columns()]

    def identifying_fields(self) -> list[str]:
        """The fields counted toward ``min_fields``."""
        return [f for c in self.comparisons if c.identifying for f in c.columns()]

    def birth_date_field(self) -> str | None:
        """The field of the birth date comparison, if the rules compare one: the field a
        ``year`` comparison takes a record's year from, and defers to."""
        return next((str(c.field) for c in self.comparisons if c.kind == "birth_date"), None)

    def guard_exemptions(self) -> frozenset[str]:
        """The fields (and identifier types of the same name) whose guards do not hold the
        scored links (see ``guards``)."""
        return frozenset() if self.guards == "all" else frozenset(self.fields())

    def fingerprint(self) -> str:
        """A hash of everything that shapes the trained model (not thresholds, not origin):
        a model trained under another fingerprint is not reused."""
        payload = {
            "comparisons": [c.model_dump() for c in self.comparisons],
            "tables": sorted(self.tables),
            "min_fields": self.min_fields,
            "training": self.training.model_dump(exclude={"train_every_days"}),
        }
        if self.mapped_fields:
            payload["mapped_fields"] = sorted(self.mapped_fields)
        text = json.dumps(payload, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _where(path: Path | str, loc: tuple[Any, ...]) -> str:
    return f"{path}: {'.'.join(str(p) for p in loc) or '(top level)'}"


def parse_matching(data: Any, origin: str = "matching rules") -> MatchingRules:
    try:
        rules = MatchingRules.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{_where(origin, e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(problems) from None
    rules.origin = origin
    names = [c.name for c in rules.comparisons]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{origin}: comparisons: duplicate names {dupes}")
    for i, check in enumerate(rules.person_checks):
        unknown = sorted({check.disagree, *check.unless_agree} - set(names))
        if unknown:
            raise ConfigError(
                f"{origin}: person_checks[{i}]: {unknown} name no comparison; comparisons: {names}"
            )
    fields = set(rules.fields())
    if not (isinstance(data, dict) and "training" in data):
        # Default training passes over fields this file does not compare are left out.
        t = rules.training
        t.em_blocking = [g for g in t.em_blocking if block_fields(g) <= fields]
        t.prior_rules = [g for g in t.prior_rules if block_fields(g) <= fields]
    for key, groups in (
        ("blocking", rules.blocking),
        ("broad_blocking", rules.broad_blocking),
        ("training.em_blocking", rules.training.em_blocking),
        ("training.prior_rules", rules.training.prior_rules),
    ):
        for i, group in enumerate(groups):
            if not group:
                raise ConfigError(f"{origin}: {key}[{i}]: an empty rule compares every pair")
            derived = [e for e in group if CROSS in e or "(" in e]
            if derived and key not in ("blocking", "broad_blocking"):
                raise ConfigError(
                    f"{origin}: {key}[{i}]: {derived}: crosswise and derived keys are for "
                    "blocking only; a training pass blocks on plain fields"
                )
            bad = []
            for entry in derived:
                try:
                    [parse_side(side) for side in block_sides(entry)]
                except ValueError:
                    bad.append(entry)
            if bad:
                raise ConfigError(
                    f"{origin}: {key}[{i}]: {bad}: an entry is field, field=field or "
                    f"fn(field) with fn one of {sorted(KEY_FUNCTIONS)}"
                )
            unknown = sorted(block_fields(group) - fields)
            if unknown:
                raise ConfigError(
                    f"{origin}: {key}[{i}]: field(s) {unknown} have no comparison "
                    f"(compared: {sorted(fields)})"
                )
    return rules


def load_matching(path: str | Path) -> MatchingRules:
    """The matching rules in ``path``; a bad key fails naming the file and the key."""
    p = Path(path)
    rules = parse_matching(read_yaml(p, "identity.matching_file"), origin=str(p))
    if rules.nicknames_file:
        forms = load_nicknames(p.parent / rules.nicknames_file, f"{p}: nicknames_file")
        rules.nicknames = {**forms, **rules.nicknames}
    return rules


def resolve_fields(
    rules: MatchingRules, available: dict[str, set[str]]
) -> tuple[MatchingRules, list[str]]:
    """``rules`` reduced to the comparisons whose field some source maps, with notes.

    ``available``: table -> the fields that at least one enabled source of that table maps
    (canonical fields and declared custom identifiers). A required comparison on a field no
    source maps fails with the file and key named; an optional one is dropped, with the
    blocking rules and training passes over its field.
    """
    origin = rules.origin or "matching rules"
    unknown_tables = [t for t in rules.tables if t not in available]
    mapped = set().union(*(available.get(t, set()) for t in rules.tables))
    notes: list[str] = []
    if unknown_tables:
        notes.append(f"no source feeds {unknown_tables}")
    kept = []
    for i, c in enumerate(rules.comparisons):
        # A location needs one of its fields; the others read as empty.
        present = [f for f in c.columns() if f in mapped]
        if present:
            kept.append(c)
        elif c.optional:
            notes.append(f"comparison {c.name!r} skipped: no source maps {c.columns()}")
        else:
            raise ConfigError(
                f"{origin}: comparisons[{i}] ({c.name}): no enabled source of "
                f"{rules.tables} maps {c.columns()}; mapped: {sorted(mapped)}"
            )
    fields = {f for c in kept for f in c.columns() if f in mapped}

    def usable(groups: list[list[str]], key: str) -> list[list[str]]:
        out = [g for g in groups if block_fields(g) <= fields]
        if len(out) < len(groups):
            notes.append(f"{key}: {len(groups) - len(out)} rule(s) over unmapped fields dropped")
        return out

    kept_names = {c.name for c in kept}
    checks = [
        c.model_copy(update={"unless_agree": [n for n in c.unless_agree if n in kept_names]})
        for c in rules.person_checks
        if c.disagree in kept_names
    ]
    em_passes = usable(rules.training.em_blocking, "training.em_blocking")
    for c in kept:
        compared = set(c.columns())
        if all(block_fields(g) & compared for g in em_passes):
            extra = next(
                (
                    g
                    for g in rules.training.em_fallback
                    if block_fields(g) <= fields and not block_fields(g) & compared
                ),
                None,
            )
            if extra is not None and extra not in em_passes:
                em_passes.append(extra)
                notes.append(f"training.em_blocking: {extra} added so that {c.name!r} is trained")
    prior_rules = usable(rules.training.prior_rules, "training.prior_rules")
    if not prior_rules:
        fallback = next(
            (g for g in rules.training.prior_fallback if block_fields(g) <= fields), None
        )
        if fallback is not None:
            prior_rules = [fallback]
            notes.append(f"training.prior_rules: none usable; {fallback} from prior_fallback")
    reduced = rules.model_copy(
        update={
            "mapped_fields": sorted(fields),
            "comparisons": kept,
            "person_checks": checks,
            "blocking": usable(rules.blocking, "blocking"),
            "broad_blocking": usable(rules.broad_blocking, "broad_blocking"),
            "training": rules.training.model_copy(
                update={
                    "em_blocking": em_passes,
                    "prior_rules": prior_rules,
                }
            ),
        }
    )
    return reduced, notes
