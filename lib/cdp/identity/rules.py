"""Identity match rules and merge protection, declared in YAML (``conf/rules/identity.yaml``).

    identifiers:            # record -> identifier value links
      - {name: email, id_type: email, fields: [email], priority: 80}
      - {name: name_birth_postcode, id_type: name_birth_postcode,
         fields: [last_name, birth_date, postcode], priority: 50, tables: [person_records]}
    event_links:            # identifier <-> identifier links seen together on an event
      - {name: login_cookie, from: anonymous_id, to: [customer_id, email], priority: 30}
      # optional on an event link: event_types: [login]  (default: any event)
    blocklist: {values: {email: [test@test.com]}, patterns: {phone: ["^\\+?(\\d)\\1+$"]}}
    shared_values: {max_records: 1000, max_distinct: {birth_date: 1}, max_linked: {customer_id: 1},
                    email_names: {id_type: email, min_name_records: 3}}
    limits: {crm_id: 2, email: 5}
    attribute_limits: {birth_date: 1}   # a customer never holds two birth dates
    name_conflicts: {first_name: {max_edits: 2, nicknames_file: nicknames.yaml}}
    max_component_records: 200

Every name is checked at load time: a rule naming a field that no silver table it applies to
has fails with the rule and the field named, before any data is read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
)

from cdp.errors import ConfigError
from cdp.silver.canonical import CONSENTS, EVENTS, PERSON_RECORDS, TRANSACTIONS
from cdp.yamlio import read_yaml

# The silver tables whose records become nodes of the graph, and the one whose rows only
# contribute identifier pairs (events are far too many to be nodes).
RECORD_TABLES = {t.name: t for t in (PERSON_RECORDS, TRANSACTIONS, CONSENTS)}
EVENT_TABLE = EVENTS
# Fields whose spelling varies (case, accents, punctuation) and that only link through a
# folded match key; every other field links on its standardized value as is.
NAME_FIELDS = frozenset({"first_name", "last_name", "full_name"})

_NAME = r"^[a-z][a-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class IdentifierRule(_Strict):
    """Links a silver record to the identifier value built from ``fields`` (all required)."""

    name: str = Field(pattern=_NAME)
    id_type: str = Field(pattern=_NAME)
    fields: list[str] = Field(min_length=1)
    priority: int = Field(ge=0, le=1000)
    enabled: bool = True
    # An optional rule whose fields no source maps (a custom identifier no source declares)
    # is switched off instead of failing.
    optional: bool = False
    # None: every record table holding all the fields.
    tables: list[str] | None = None
    # Custom identifier -> tables whose sources declare it (set when the rules are loaded).
    _custom: dict[str, set[str]] = PrivateAttr(default_factory=dict)

    def table_fields(self, table: str) -> set[str]:
        custom = {f for f, tables in self._custom.items() if table in tables}
        return set(RECORD_TABLES[table].fields) | custom

    def applies_to(self) -> list[str]:
        candidates = self.tables or sorted(RECORD_TABLES)
        return [t for t in candidates if set(self.fields) <= self.table_fields(t)]


class EventLinkRule(_Strict):
    """Links identifier ``from_field`` of an event to each of ``to`` seen on the same event
    (a login: the cookie or device meets the account id or e-mail)."""

    name: str = Field(pattern=_NAME)
    from_field: str = Field(alias="from")
    to: list[str] = Field(min_length=1)
    priority: int = Field(ge=0, le=1000)
    enabled: bool = True
    # Only events of these types link (None: any event carrying both identifiers).
    event_types: list[str] | None = None


class Blocklist(_Strict):
    # id_type -> values that never link ("*": every type); compared with the standardized value.
    values: dict[str, list[str]] = Field(default_factory=dict)
    # id_type -> regular expressions (Java syntax, searched) that mark junk values.
    patterns: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for id_type, patterns in value.items():
            for p in patterns:
                try:
                    re.compile(p)
                except re.error as exc:
                    raise ValueError(f"{id_type}: pattern {p!r} does not compile: {exc}") from None
        return value


class EmailNames(_Strict):
    """An e-mail address names its owner: a record whose holder is not the one its e-mail's
    local part spells marks the address as a household's, shared.

    The holder is the record's own name or, for a record without one (an order without a
    billing name), the name on the records that a stronger identifier on it points to (its CRM
    id, loyalty card or web account: a rule of higher priority than every rule of ``id_type``).

    The local part is split into its letter runs ("jennifer.moore77" -> jennifer, moore).
    It is the holder's own address when a run is a form of the holder's first name (the
    compatibility of ``name_conflicts.first_name``: equal, prefix, typo, nickname; or one
    edit off; or, for a first name that is an initial, a run that it or a nickname's initial
    starts: "B." for "rebecca", Becky), or an initial of it followed or preceded by the last
    name ("jmoore", "moorej"). It names someone else when it is neither and a run is

    * a first name the data knows: one that at least ``min_name_records`` live records carry
      as their first name and at most four times as many as their last name (Thomas is
      both), or
    * another initial before or after the holder's last name ("dwood" on Jack Wood's
      record) or a last name the data knows ("ttaylor" on Harry Wilson's). The holder's own
      initial before another surname ("jtaylor" on Jennifer Jones's) may be a maiden name,
      hers.

    Addresses that spell no name ("coolcat77") give no verdict.
    """

    # The identifier type whose values are e-mail addresses.
    id_type: str = Field(default="email", pattern=_NAME)
    min_name_records: int = Field(default=3, ge=1)


class SharedValues(_Strict):
    """When one identifier value is evidently used by several people, it links nobody."""

    # A value on more live records than this (any table; the lines of one order count once)
    # is shared; None: no cap.
    max_records: int | None = Field(default=None, ge=1)
    # Record field -> most distinct values allowed among the records one value links
    # (birth_date: 1 -- two birth dates behind one e-mail are two people).
    max_distinct: dict[str, int] = Field(default_factory=dict)
    # id_type -> most distinct values of that type one event-linked identifier may meet
    # (a cookie that logged into two accounts is a shared computer).
    max_linked: dict[str, int] = Field(default_factory=dict)
    # An e-mail whose local part names another person than a record carrying it is shared
    # ("shared:email_name"); None: no such check.
    email_names: EmailNames | None = None


class NameConflict(_Strict):
    """When two values of a name field cannot be one person's name.

    Values are compared folded (case, accents, punctuation). Two names are the same person's
    when equal, when one starts with the other (an initial, "Chris" / "Christopher"), when
    both have at least ``min_length`` letters and are at most ``max_edits`` edits apart (a
    typo), or when they are known forms of one name (``nicknames``: "Bob" / "Robert"), a typo
    of a known form included ("Thoams" / "Tom"). Any other pair is a conflict: "Christopher"
    and "Joseph" behind one landline are two people.
    """

    max_edits: int = Field(default=2, ge=0, le=3)
    min_length: int = Field(default=4, ge=1)
    # name -> its other forms ("robert": [bob, rob, bobby]); every form of one entry matches
    # every other.
    nicknames: dict[str, list[str]] = Field(default_factory=dict)
    # A YAML file of the same shape, relative to the rules file, merged into ``nicknames``.
    nicknames_file: str | None = None


class DateConflict(_Strict):
    """When two values of a date field cannot be one person's: they are when equal, when day
    and month are transposed (03/02 for 02/03), or when at most ``max_edits`` characters
    apart (a year or day typed one digit off). Any other pair is a conflict: two birth dates
    are two people, but a typo in one is not."""

    max_edits: int = Field(default=1, ge=0, le=2)
    transposed: bool = True


class IdentityRules(_Strict):
    identifiers: list[IdentifierRule] = Field(min_length=1)
    event_links: list[EventLinkRule] = Field(default_factory=list)
    blocklist: Blocklist = Field(default_factory=Blocklist)
    shared_values: SharedValues = Field(default_factory=SharedValues)
    # id_type -> most distinct values of that type one customer may hold.
    limits: dict[str, int] = Field(default_factory=dict)
    # Record field -> most distinct values one customer's records may hold (birth_date: 1):
    # attributes that tell people apart. A link that would join records holding more is
    # dropped like one breaking an identifier limit, weakest tier first ("conflict:<field>").
    attribute_limits: dict[str, int] = Field(default_factory=dict)
    # Name field -> when two of its values are two people (see NameConflict): a customer never
    # holds a conflicting pair ("conflict:<field>"), repaired like an attribute limit.
    name_conflicts: dict[str, NameConflict] = Field(default_factory=dict)
    # Date field -> when two of its values are two people (see DateConflict): like
    # attribute_limits of 1, but a typo of the same date is no conflict ("conflict:<field>").
    date_conflicts: dict[str, DateConflict] = Field(default_factory=dict)
    # A customer with more records than this is flagged and split on its weakest links. Only
    # records saying who a person is count (person records, consents), not transactions: a
    # heavy buyer is one customer however many orders they place.
    max_component_records: int = Field(default=500, ge=1)

    def attribute_fields(self) -> list[str]:
        """Record fields that ``attribute_limits``, ``name_conflicts`` and
        ``date_conflicts`` read."""
        return sorted(
            set(self.attribute_limits) | set(self.name_conflicts) | set(self.date_conflicts)
        )

    def without_conflicts_on(self, fields: Sequence[str]) -> tuple[IdentityRules, list[str]]:
        """These rules with ``fields`` no longer telling people apart: out of
        ``shared_values.max_distinct``, ``attribute_limits``, ``date_conflicts`` and
        ``name_conflicts``, with a note per field dropped. For a field the data shows too noisy
        for it (identity matching's model finds it disagreeing outright in a large share of
        one person's record pairs): two of its values behind one e-mail are then mostly typos
        of one person's, not two people."""
        drop = set(fields)
        notes = []
        for f in sorted(drop):
            guards = [
                name
                for name, keyed in (
                    ("shared_values.max_distinct", self.shared_values.max_distinct),
                    ("attribute_limits", self.attribute_limits),
                    ("date_conflicts", self.date_conflicts),
                    ("name_conflicts", self.name_conflicts),
                )
                if f in keyed
            ]
            if guards:
                notes.append(f"{f} no longer tells people apart in {', '.join(guards)}")

        def kept(d: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in d.items() if k not in drop}

        relaxed = self.model_copy(
            update={
                "shared_values": self.shared_values.model_copy(
                    update={"max_distinct": kept(self.shared_values.max_distinct)}
                ),
                "attribute_limits": kept(self.attribute_limits),
                "date_conflicts": kept(self.date_conflicts),
                "name_conflicts": kept(self.name_conflicts),
            }
        )
        return relaxed, notes

    @property
    def enabled_identifiers(self) -> list[IdentifierRule]:
        return [r for r in self.identifiers if r.enabled]

    @property
    def enabled_event_links(self) -> list[EventLinkRule]:
        return [r for r in self.event_links if r.enabled]

    def field_id_types(self) -> dict[str, str]:
        """Field -> id type of the single-field identifier rules (how an event's field is
        typed, so that an event's e-mail meets the records' e-mail node)."""
        return {r.fields[0]: r.id_type for r in self.identifiers if len(r.fields) == 1}

    def event_id_type(self, field: str) -> str:
        """The id type of an event field: that of its single-field rule, else the field."""
        return self.field_id_types().get(field, field)

    def id_types(self) -> set[str]:
        return {r.id_type for r in self.enabled_identifiers} | {
            self.event_id_type(r.from_field) for r in self.enabled_event_links
        }

    def priorities(self) -> list[int]:
        """Distinct link priorities, strongest first: the tiers of merge protection."""
        found = {r.priority for r in self.enabled_identifiers}
        found |= {r.priority for r in self.enabled_event_links}
        return sorted(found, reverse=True)


def validate_rules(rules: IdentityRules, custom: dict[str, set[str]] | None = None) -> None:
    """Cross-field checks; :class:`ConfigError` names the rule and the offending key.

    ``custom``: custom identifier -> the record tables whose sources declare it; identifier
    rules may use them like canonical fields."""
    for rule in rules.identifiers:
        rule._custom = dict(custom or {})
    names = [r.name for r in rules.identifiers] + [r.name for r in rules.event_links]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"identity rules: duplicate rule names {dupes}")
    for i, rule in enumerate(rules.identifiers):
        where = f"identifiers[{i}] ({rule.name})"
        for table in rule.tables or []:
            if table not in RECORD_TABLES:
                raise ConfigError(
                    f"identity rules: {where}: unknown table {table!r}; "
                    f"record tables: {sorted(RECORD_TABLES)}"
                )
        tables = rule.tables or sorted(RECORD_TABLES)
        known = set().union(*(rule.table_fields(t) for t in tables))
        missing = [f for f in rule.fields if f not in known]
        if missing and rule.optional:
            rule.enabled = False
            continue
        if missing:
            raise ConfigError(
                f"identity rules: {where}: field(s) {missing} exist in none of the tables {tables}"
            )
        if rule.tables and not rule.applies_to():
            raise ConfigError(
                f"identity rules: {where}: no table of {rule.tables} has all of {rule.fields}"
            )
    event_fields = set(EVENT_TABLE.fields)
    id_fields = {r.fields[0]: r.id_type for r in rules.identifiers if len(r.fields) == 1}
    for i, link in enumerate(rules.event_links):
        where = f"event_links[{i}] ({link.name})"
        for f in [link.from_field, *link.to]:
            if f not in event_fields:
                raise ConfigError(
                    f"identity rules: {where}: field {f!r} is not an event field "
                    f"({sorted(event_fields)})"
                )
        for f in link.to:
            if f not in id_fields:
                raise ConfigError(
                    f"identity rules: {where}: 'to' field {f!r} is no single-field identifier "
                    "rule's field, so the link would reach no customer"
                )
    record_fields = set().union(*(t.fields for t in RECORD_TABLES.values()))
    for f in rules.shared_values.max_distinct:
        if f not in record_fields:
            raise ConfigError(f"identity rules: shared_values.max_distinct: unknown field {f!r}")
    for f, most in rules.attribute_limits.items():
        if f not in record_fields:
            raise ConfigError(
                f"identity rules: attribute_limits: unknown field {f!r}; "
                f"record fields: {sorted(record_fields)}"
            )
        if most < 1:
            raise ConfigError(f"identity rules: attribute_limits.{f}: must be at least 1")
    for f in rules.name_conflicts:
        if f not in NAME_FIELDS or f not in record_fields:
            raise ConfigError(
                f"identity rules: name_conflicts: {f!r} is not a name field "
                f"({sorted(NAME_FIELDS & record_fields)})"
            )
        if f in rules.attribute_limits:
            raise ConfigError(
                f"identity rules: {f!r} is in both attribute_limits and name_conflicts"
            )
    # Types of switched-off rules may still carry limits (an optional custom identifier).
    for f in rules.date_conflicts:
        if f not in record_fields:
            raise ConfigError(f"identity rules: date_conflicts: unknown field {f!r}")
        if f in rules.attribute_limits or f in rules.name_conflicts:
            raise ConfigError(
                f"identity rules: {f!r} is in date_conflicts and in attribute_limits or "
                "name_conflicts"
            )
    types = rules.id_types() | {r.id_type for r in rules.identifiers}
    email_names = rules.shared_values.email_names
    if email_names is not None:
        if email_names.id_type not in types:
            raise ConfigError(
                f"identity rules: shared_values.email_names: unknown identifier type "
                f"{email_names.id_type!r}; known: {sorted(types)}"
            )
        named = [
            t
            for r in rules.enabled_identifiers
            if r.id_type == email_names.id_type
            for t in r.applies_to()
            if "first_name" in RECORD_TABLES[t].fields
        ]
        if not named:
            raise ConfigError(
                f"identity rules: shared_values.email_names: no table that links "
                f"{email_names.id_type!r} carries first_name"
            )
    for section, keys in (
        ("limits", rules.limits),
        ("shared_values.max_linked", rules.shared_values.max_linked),
        ("blocklist.values", rules.blocklist.values),
        ("blocklist.patterns", rules.blocklist.patterns),
    ):
        unknown = sorted(k for k in keys if k != "*" and k not in types)
        if unknown:
            raise ConfigError(
                f"identity rules: {section}: unknown identifier type(s) {unknown}; "
                f"known: {sorted(types)}"
            )


def parse_rules(
    data: Any, origin: str = "identity rules", custom: dict[str, set[str]] | None = None
) -> IdentityRules:
    try:
        rules = IdentityRules.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{origin}: {problems}") from None
    validate_rules(rules, custom)
    return rules


def load_rules(path: str | Path, custom: dict[str, set[str]] | None = None) -> IdentityRules:
    """The rules in ``path``; a missing file or a bad rule fails with a clear message.
    ``custom``: the sources' custom identifiers (see :func:`validate_rules`)."""
    p = Path(path)
    rules = parse_rules(read_yaml(p, "identity.rules_file"), origin=str(p), custom=custom)
    for name, conflict in rules.name_conflicts.items():
        if conflict.nicknames_file:
            where = f"identity rules: name_conflicts.{name}.nicknames_file"
            forms = load_nicknames(p.parent / conflict.nicknames_file, where)
            conflict.nicknames = {**forms, **conflict.nicknames}
    return rules


def load_nicknames(path: Path, what: str) -> dict[str, list[str]]:
    """A nicknames file (``name: [other forms]``); ``what`` names the key pointing at it."""
    data = read_yaml(path, what, mapping=False)
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(x, str) for x in v)
        for k, v in data.items()
    ):
        raise ConfigError(f"{path}: expected a mapping of name -> list of other forms")
    return data  # type: ignore[no-any-return]
