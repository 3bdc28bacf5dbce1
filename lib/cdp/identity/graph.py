"""The identity graph: nodes, links from the match rules, and merge protection.

Nodes are silver records (``person_records``, ``transactions``, ``consents``; tombstones
excluded) and typed identifier values. Node ids are 64-bit ``xxhash64`` hashes of a kind tag
and the node's text (``r|table|source|id`` for records, ``v|id_type|value`` for values), so
the same record or value gets the same id in every run; a collision between two of
``2^64`` hashes is the (accepted) theoretical risk.

Links, all computed here as DataFrames:

* identifier links (record -> value) from the ``identifiers`` rules;
* event links (value -> value) from identifiers seen together on one event, deduplicated
  (events are never nodes);
* each link carries a ``reason`` when merge protection rejects it: ``blocklist:value``,
  ``blocklist:pattern``, ``shared:records`` (a value on more records than
  ``max_records``), ``shared:distinct_<field>`` (a value behind several birth dates ...),
  ``shared:linked_<type>`` (a cookie seen with several accounts), ``shared:email_name`` (an
  e-mail whose local part names another person than the holder of a record carrying it);
* :func:`resolve` finds the components of all accepted links in one run, then rebuilds
  only the components that break a rule tier by tier, strongest priority first, dropping
  the links of the current (weakest so far) tier that would give a customer more
  identifiers of a type than ``limits`` allows (``limit:<type>``), records with more distinct
  values of a field than ``attribute_limits`` allows (``conflict:<field>``: two birth dates
  are two people, however they got linked) or more records than ``max_component_records``
  (``oversized``).

Everything is lazy Spark work except the connected-components rounds and the per-tier
materialisation, which cut the lineage so plans stay small however many tiers there are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdp.identity.components import connected_components
from cdp.identity.rules import (
    NAME_FIELDS,
    RECORD_TABLES,
    DateConflict,
    IdentifierRule,
    IdentityRules,
    NameConflict,
)
from cdp.silver.std_common import fold_key, fold_key_py, map_literal

log = logging.getLogger(__name__)

RECORD = "_record"  # id_type of record nodes in label frames
# The pseudo-attribute of cannot-link tokens (``_v__cannot``, reason ``conflict:cannot_link``).
CANNOT = "_cannot"
KEY_SEP = "|"

LINK_COLUMNS = (
    "rule",
    "id_type",
    "priority",
    "unit",
    "unit_type",
    "unit_value",
    "other",
    "other_type",
    "other_value",
    "reason",
)


def value_node(id_type: Column, value: Column) -> Column:
    """Node id of a typed identifier value."""
    return F.xxhash64(F.lit("v"), id_type, value)


def record_node(table: str) -> Column:
    """Node id of a record of ``table`` (its ``source`` and ``source_record_id``)."""
    return F.xxhash64(F.lit("r"), F.lit(table), "source", "source_record_id")


def member_key(table: Column, source: Column, record_id: Column) -> Column:
    """Sortable text key of a record; the smallest one names a new customer."""
    return F.concat_ws(KEY_SEP, table, source, record_id)


def live(df: DataFrame) -> DataFrame:
    """Rows that are not tombstones and have a record id."""
    out = df.where(F.col("source_record_id").isNotNull())
    if "is_deleted" in df.columns:
        out = out.where(~F.coalesce(F.col("is_deleted"), F.lit(False)))
    return out


def record_nodes(frames: Mapping[str, DataFrame]) -> DataFrame:
    """``node, record_table, source, source_record_id, member_key`` of every live record.

    ``frames`` maps record-table names (``person_records`` ...) to their silver rows.
    """
    parts = [
        live(df).select(
            record_node(table).alias("node"),
            F.lit(table).alias("record_table"),
            "source",
            "source_record_id",
            member_key(F.lit(table), F.col("source"), F.col("source_record_id")).alias(
                "member_key"
            ),
        )
        for table, df in sorted(frames.items())
    ]
    return reduce(DataFrame.unionByName, parts).dropDuplicates(["node"])


def record_attributes(frames: Mapping[str, DataFrame], fields: Sequence[str]) -> DataFrame:
    """``node, _v_<field>...``: the usable value of each field (text, null when missing,
    blank, not ``ok`` or "unknown") of every live record holding at least one of them; the
    input of ``attribute_limits`` (see :func:`resolve`)."""
    fields = sorted(fields)
    parts = []
    for table, df in sorted(frames.items()):
        values = [_attribute_value(df, f).alias(f"_v_{f}") for f in fields]
        parts.append(
            live(df).select(
                record_node(table).alias("node"),
                *values,
            )
        )
    out = reduce(DataFrame.unionByName, parts).dropDuplicates(["node"])
    held = reduce(lambda a, b: a | b, [F.col(f"_v_{f}").isNotNull() for f in fields], F.lit(False))
    return out.where(held)


def prepare_records(frames: Mapping[str, DataFrame], rules: IdentityRules) -> dict[str, DataFrame]:
    """Each table's live records with only the fields the rules read, and each name field
    folded once (``_fold_<field>``, see :func:`field_value`), materialised.

    Folding (Unicode decomposition, a dozen regular expressions) is the costly part of
    reading a name, and links, shared-value checks and attribute limits each read the names;
    with orders carrying billing names, folding in each of them doubled the stage's time.
    """
    fields = {f for r in rules.enabled_identifiers for f in r.fields}
    fields |= set(rules.shared_values.max_distinct) | set(rules.attribute_fields())
    wanted = {"source", "source_record_id"} | fields | {f"{f}_status" for f in fields}
    out = {}
    for table, df in frames.items():
        d = live(df)
        # A table written before its canonical model gained a field (orders' billing names)
        # lacks the column until silver next rewrites it: the field is empty, not an error.
        for f in sorted(fields - set(d.columns)):
            if table in RECORD_TABLES and f in RECORD_TABLES[table].fields:
                d = d.withColumn(f, F.lit(None).cast("string"))
            elif f not in ALL_RECORD_FIELDS:
                # A custom identifier (a source's ``identifiers``): from ``attributes``.
                d = d.withColumn(f, custom_identifier(d, f))
        keep = [c for c in d.columns if c in wanted]
        folded = [
            field_value(d, f).alias(f"_fold_{f}")
            for f in sorted(fields & NAME_FIELDS)
            if f in d.columns
        ]
        out[table] = _Cut(d)(d.select(*keep, *folded))
    return out


ALL_RECORD_FIELDS = frozenset().union(*(t.fields for t in RECORD_TABLES.values()))


def custom_identifier(df: DataFrame, name: str) -> Column:
    """A declared custom identifier of a record: ``attributes[name]``, letters and digits,
    upper-case ("qq 12 34 56 c" -> "QQ123456C"); null when absent or empty."""
    if "attributes" in df.columns:
        raw = F.try_element_at(F.col("attributes"), F.lit(name))
    else:
        return F.lit(None).cast("string")
    return F.nullif(F.upper(F.regexp_replace(raw, r"[^\p{L}\p{N}]+", "")), F.lit(""))


def field_value(df: DataFrame, name: str) -> Column:
    """The usable value of a field, or null: null, blank and non-``ok`` statuses never link.

    Names link through their folded key (case, accents, punctuation), read from
    ``_fold_<name>`` when :func:`prepare_records` folded it already; other fields through
    their standardized value as text.
    """
    if f"_fold_{name}" in df.columns:
        return F.col(f"_fold_{name}")
    value = fold_key(F.col(name)) if name in NAME_FIELDS else F.trim(F.col(name).cast("string"))
    ok = value.isNotNull() & (value != "")
    status = f"{name}_status"
    if status in df.columns:
        ok = ok & (F.col(status) == "ok")
    return F.when(ok, value)


def _blocked(id_type: str, value: Column, rules: IdentityRules) -> Column:
    """``blocklist:value`` / ``blocklist:pattern`` / null for a value of ``id_type``."""
    bl = rules.blocklist
    words = sorted({w.lower() for w in bl.values.get("*", []) + bl.values.get(id_type, [])})
    patterns = bl.patterns.get("*", []) + bl.patterns.get(id_type, [])
    by_value = F.lower(value).isin(*words) if words else F.lit(False)
    by_pattern = reduce(lambda a, b: a | b, [value.rlike(p) for p in patterns], F.lit(False))
    return F.when(by_value, "blocklist:value").when(by_pattern, "blocklist:pattern")


def _attribute_value(df: DataFrame, name: str) -> Column:
    """A record's value of an attribute that tells people apart, as text; a first name is
    ``first|last`` so that a record with its names swapped is not taken for another person
    (see :func:`_names_conflict`)."""
    value = _evidence(df, name).cast("string")
    if name == "first_name" and "last_name" in df.columns:
        last = F.coalesce(_evidence(df, "last_name").cast("string"), F.lit(""))
        return F.when(value.isNotNull(), F.concat_ws(KEY_SEP, value, last))
    return value


def _evidence(df: DataFrame, name: str) -> Column:
    """A field's value as evidence of who a record is; an explicit "unknown" is none."""
    if name not in df.columns:
        return F.lit(None).cast("string")
    value = field_value(df, name)
    return F.when(F.lower(value.cast("string")) != "unknown", value)


def identifier_links(frames: Mapping[str, DataFrame], rules: IdentityRules) -> DataFrame:
    """Record -> value links of every enabled identifier rule (see :data:`LINK_COLUMNS`),
    with the record fields named in ``shared_values.max_distinct`` as ``_d_<field>``.

    ``reason`` holds the blocklist verdict only; shared values are found by
    :func:`mark_shared`.
    """
    distinct_fields = sorted(rules.shared_values.max_distinct)
    star = {w.lower() for w in rules.blocklist.values.get("*", [])}
    parts = []
    for rule in rules.enabled_identifiers:
        for table in rule.applies_to():
            if table not in frames:
                continue
            df = live(frames[table])
            values = [field_value(df, f) for f in rule.fields]
            value = _rule_value(values)
            reason = _blocked(rule.id_type, value, rules)
            if len(rule.fields) > 1 and star:  # a composite with a placeholder part is junk
                part_junk = reduce(lambda a, b: a | b, [F.lower(v).isin(*star) for v in values])
                reason = F.when(part_junk, "blocklist:value").otherwise(reason)
            extra = [_evidence(df, f).alias(f"_d_{f}") for f in distinct_fields]
            parts.append(
                df.select(
                    F.lit(rule.name).alias("rule"),
                    F.lit(rule.id_type).alias("id_type"),
                    F.lit(rule.priority).alias("priority"),
                    value_node(F.lit(rule.id_type), value).alias("unit"),
                    F.lit(rule.id_type).alias("unit_type"),
                    value.alias("unit_value"),
                    record_node(table).alias("other"),
                    F.lit(RECORD).alias("other_type"),
                    member_key(F.lit(table), F.col("source"), F.col("source_record_id")).alias(
                        "other_value"
                    ),
                    reason.alias("reason"),
                    *extra,
                ).where(F.col("unit_value").isNotNull())
            )
    if not parts:
        raise ValueError("no identifier rule applies to any silver record table present")
    return reduce(DataFrame.unionByName, parts).dropDuplicates(["rule", "unit", "other"])


def _rule_value(values: Sequence[Column]) -> Column:
    """An identifier rule's value from its fields' values: null unless all are present."""
    complete = reduce(lambda a, b: a & b, [v.isNotNull() for v in values])
    return F.when(complete, F.concat_ws(KEY_SEP, *values))


def name_vocabulary(frames: Mapping[str, DataFrame], min_records: int) -> DataFrame:
    """``name, is_first, is_last``: the folded names, three letters or longer, that the data
    itself knows, so that "jennifer" or "moore" in an address reads as a name and "coolcat"
    does not.

    A name is a known first name when at least ``min_records`` live records carry it as
    their first name and no more than four times as many carry it as their last name (so
    Thomas and Laurent, common both ways, are first names, and a surname that noise put in
    a first-name field a few times is not); a known last name likewise the other way round.
    """
    parts = []
    for _, df in sorted(frames.items()):
        d = live(df)
        if not _has_names(d):
            continue
        for name, is_first in zip(_names(d), (1, 0), strict=True):
            parts.append(d.select(name.alias("name"), F.lit(is_first).alias("_first")))
    if not parts:
        spark = frames[next(iter(frames))].sparkSession
        return spark.createDataFrame([], "name string, is_first boolean, is_last boolean")
    counts = (
        reduce(DataFrame.unionByName, parts)
        .where(F.col("name").isNotNull() & (F.length("name") >= 3))
        .groupBy("name")
        .agg(F.sum("_first").alias("_f"), F.count(F.lit(1)).alias("_n"))
        .withColumn("_l", F.col("_n") - F.col("_f"))
    )
    first = (F.col("_f") >= min_records) & (4 * F.col("_f") >= F.col("_l"))
    last = (F.col("_l") >= min_records) & (4 * F.col("_l") >= F.col("_f"))
    return counts.select("name", first.alias("is_first"), last.alias("is_last")).where(
        F.col("is_first") | F.col("is_last")
    )


def _has_names(df: DataFrame) -> bool:
    return "first_name" in df.columns or "_fn" in df.columns


def _names(df: DataFrame) -> tuple[Column, Column]:
    """A record's folded first and last name, as evidence (see :func:`_fold_names_once`)."""
    if "_fn" in df.columns:
        return F.col("_fn"), F.col("_ln")
    return _evidence(df, "first_name"), _evidence(df, "last_name")


def _fold_names_once(frames: Mapping[str, DataFrame], rules: IdentityRules) -> dict[str, DataFrame]:
    """``frames`` with each table that carries names reduced to its live records' identifier
    fields and ``_fn``/``_ln``, the folded names, materialised.

    Folding (Unicode decomposition, a dozen regular expressions) is the costly part of
    reading a name, and the e-mail check reads each name several ways; folded once, the check
    costs a few seconds instead of a minute at 100k persons.
    """
    fields = {f for r in rules.enabled_identifiers for f in r.fields}
    wanted = {"source", "source_record_id"} | fields | {f"{f}_status" for f in fields}
    out = dict(frames)
    for table, df in frames.items():
        if not _has_names(df):
            continue
        d = live(df)
        fn, ln = _names(d)
        keep = [c for c in d.columns if c in wanted or c.startswith("_fold_")]
        out[table] = _Cut(d)(d.select(*keep, fn.alias("_fn"), ln.alias("_ln")))
    return out


def _email_holders(
    frames: Mapping[str, DataFrame], rules: IdentityRules, id_type: str
) -> list[DataFrame]:
    """``unit, _value, _fn, _ln``: each e-mail value of ``id_type`` with the name of a record
    carrying it, or of a record that a stronger identifier on the carrying record names.

    An order that carries a CRM id beside the e-mail is the CRM contact's order, so the
    contact's name is the order's holder's, whatever address the contact record has.
    "Stronger" is a higher priority than every rule of ``id_type`` (system-issued ids).
    """
    email_rules = [r for r in rules.enabled_identifiers if r.id_type == id_type]
    if not email_rules:
        return []
    ceiling = max(r.priority for r in email_rules)
    strong_rules = [r for r in rules.enabled_identifiers if r.priority > ceiling]

    def rule_value(rule: IdentifierRule, table: str, df: DataFrame) -> Column | None:
        if table not in rule.applies_to() or not set(rule.fields) <= set(df.columns):
            return None
        value = _rule_value([field_value(df, f) for f in rule.fields])
        return F.when(_blocked(rule.id_type, value, rules).isNull(), value)

    direct, carriers, named = [], [], []
    for table, frame in sorted(frames.items()):
        df = live(frame)
        has_names = _has_names(df)
        fn, ln = _names(df)
        strong = [(r, v) for r in strong_rules if (v := rule_value(r, table, df)) is not None]
        # The stronger identifiers of a record as value nodes, read in one pass of the table.
        via_nodes = F.array(
            *[F.when(v.isNotNull(), value_node(F.lit(r.id_type), v)) for r, v in strong]
        )
        for rule in email_rules:
            value = rule_value(rule, table, df)
            if value is None:
                continue
            unit = value_node(F.lit(id_type), value).alias("unit")
            if has_names:
                direct.append(
                    df.select(unit, value.alias("_value"), fn.alias("_fn"), ln.alias("_ln")).where(
                        F.col("_value").isNotNull() & F.col("_fn").isNotNull()
                    )
                )
            if strong:
                # A record with a name of its own is a direct holder already.
                carriers.append(
                    df.where(fn.isNull())
                    .select(unit, value.alias("_value"), F.explode(via_nodes).alias("_via"))
                    .where(F.col("_value").isNotNull() & F.col("_via").isNotNull())
                )
        if has_names and strong:
            named.append(
                df.select(
                    F.explode(via_nodes).alias("_via"), fn.alias("_fn"), ln.alias("_ln")
                ).where(F.col("_via").isNotNull() & F.col("_fn").isNotNull())
            )
    out = direct
    if carriers and named:
        names = reduce(DataFrame.unionByName, named).distinct()
        out = [
            *out,
            reduce(DataFrame.unionByName, carriers).distinct().join(names, "_via").drop("_via"),
        ]
    return out


def email_name_verdicts(frames: Mapping[str, DataFrame], rules: IdentityRules) -> DataFrame | None:
    """``unit, _shared``: e-mail values whose local part names another person than a record
    holding them (``shared_values.email_names``, see :class:`EmailNames`); None when the
    check is off. Value nodes are those of :func:`identifier_links`."""
    cfg = rules.shared_values.email_names
    if cfg is None:
        return None
    first_names = rules.name_conflicts.get("first_name", NameConflict())
    same = _same_name(first_names)
    # Every initial a first name may be written with ("Bill" is also a W.): those of its forms.
    initials: dict[str, str] = {}
    for group in _name_groups(first_names.nicknames):
        letters = "".join(sorted({g[0] for g in group}))
        for form in group:
            initials[form] = "".join(sorted(set(initials.get(form, "")) | set(letters)))
    frames = _fold_names_once(frames, rules)
    rows = _email_holders(frames, rules, cfg.id_type)
    if not rows:
        return None
    fn, ln = F.col("_fn"), F.col("_ln")

    def initials_of(name: Column) -> Column:
        known = F.try_element_at(map_literal(initials), name) if initials else F.lit(None)
        return F.coalesce(known, F.substring(name, 1, 1))

    own_initials = initials_of(fn)

    def initial_of(letter: Column) -> Column:
        return F.instr(own_initials, letter) > 0

    def spells_holder(t: Column) -> Column:
        # A form of the first name; an initial ("B." for a rebecca.white@: Becky); or one
        # edit off ("Brm" for a bram@), looser than name_conflicts as the address is clean.
        return (
            same(fn, t)
            | ((F.length(fn) == 1) & (F.instr(initials_of(t), fn) > 0))
            | ((F.least(F.length(fn), F.length(t)) >= 3) & (F.levenshtein(fn, t) <= 1))
        )

    def own_initial_and_surname(t: Column) -> Column:
        # "jmoore" / "moorej" for a Moore whose first name is a J.
        one_more = F.length(t) == F.length(ln) + 1
        after = t.endswith(ln) & one_more & initial_of(t.substr(F.lit(1), F.lit(1)))
        before = t.startswith(ln) & one_more & initial_of(t.substr(F.length(t), F.lit(1)))
        return F.coalesce(after | before, F.lit(False))

    local = F.lower(F.substring_index("_value", "@", 1))
    named = (
        reduce(DataFrame.unionByName, rows)
        .distinct()
        .withColumn("_tokens", F.filter(F.split(local, "[^a-z]+"), lambda t: t != ""))
        .where(~F.exists("_tokens", spells_holder) & ~F.exists("_tokens", own_initial_and_surname))
    )
    # Each run is read three ways, joined once with the names the data knows: as a whole
    # (another first name?) and as an initial before or after a surname ("dwood" on Jack
    # Wood's record, "ttaylor" on Harry Wilson's: another person's address, whoever's
    # surname it is). ``at`` is the initial's position, 0 for the whole run.
    t = F.col("name")
    readings = F.array(
        F.struct(F.lit(0).alias("at"), t.alias("_s")),
        F.struct(F.lit(1).alias("at"), t.substr(F.lit(2), F.length(t)).alias("_s")),
        F.struct(F.length(t).alias("at"), t.substr(F.lit(1), F.length(t) - 1).alias("_s")),
    )
    vocabulary = name_vocabulary(frames, cfg.min_name_records).withColumnRenamed("name", "_s")
    at = F.col("at")
    another_first_name = (at == 0) & F.col("is_first") & (t != F.coalesce(ln, F.lit("")))
    another_initial = (at > 0) & ~initial_of(t.substr(at, F.lit(1)))
    a_surname = F.coalesce(F.col("is_last"), F.lit(False)) | (F.col("_s") == ln)
    return (
        named.select("unit", "_fn", "_ln", F.explode("_tokens").alias("name"))
        .select("unit", "_fn", "_ln", "name", F.inline(readings))
        .join(F.broadcast(vocabulary), "_s", "left")
        .where(F.coalesce(another_first_name, F.lit(False)) | (another_initial & a_surname))
        .select("unit")
        .distinct()
        .withColumn("_shared", F.lit("shared:email_name"))
    )


def mark_shared(
    links: DataFrame, rules: IdentityRules, also_shared: DataFrame | None = None
) -> DataFrame:
    """Set ``reason`` to ``shared:...`` on links whose value is evidently shared by people.

    A value is shared when more live records than ``max_records`` carry it, or when the
    records carrying it hold more distinct values of a ``max_distinct`` field than allowed
    (two birth dates behind one e-mail). Checked per (id_type, value) over all rules.
    ``also_shared`` (``unit, _shared``) adds values found shared otherwise, such as
    :func:`email_name_verdicts`; the checks above name the reason when both apply.
    """
    sv = rules.shared_values
    fields = sorted(sv.max_distinct)
    ok = links.where(F.col("reason").isNull())
    # A field with date_conflicts counts its values the same way: a mistyped birth date
    # behind one value is one person's, not a second person.
    dated = {f for f in fields if f in rules.date_conflicts and sv.max_distinct[f] == 1}
    aggs = [F.countDistinct("other").alias("_n_records")]
    aggs += [
        (F.collect_set(f"_d_{f}") if f in dated else F.countDistinct(f"_d_{f}")).alias(f"_n_{f}")
        for f in fields
    ]
    stats = ok.groupBy("unit").agg(*aggs)
    verdict = F.lit(None).cast("string")
    checks: list[tuple[Column, str]] = []
    if sv.max_records is not None:
        checks.append((F.col("_n_records") > sv.max_records, "shared:records"))
    for f in fields:
        if f in dated:
            values = F.col(f"_n_{f}")
            broken = (F.size(values) > 1) & _dates_conflict(values, rules.date_conflicts[f])
        else:
            broken = F.col(f"_n_{f}") > sv.max_distinct[f]
        checks.append((broken, f"shared:distinct_{f}"))
    for cond, label in reversed(checks):  # the first check listed wins
        verdict = F.when(cond, label).otherwise(verdict)
    shared = stats.select("unit", verdict.alias("_shared")).where(F.col("_shared").isNotNull())
    if also_shared is not None:
        extra = also_shared.select("unit", "_shared").join(shared, "unit", "left_anti")
        shared = shared.unionByName(extra)
    return (
        links.join(shared, "unit", "left")
        .withColumn("reason", F.coalesce("reason", "_shared"))
        .drop("_shared", *[f"_d_{f}" for f in fields])
    )


def event_links(events: DataFrame, rules: IdentityRules) -> DataFrame | None:
    """Value -> value links of the enabled event-link rules, deduplicated (one row per rule
    and pair), with blocklist and ``max_linked`` verdicts in ``reason``; None when no rule."""
    links = rules.enabled_event_links
    if not links:
        return None
    parts = []
    for rule in links:
        df = live(events)
        if rule.event_types:
            df = df.where(F.lower(F.col("event_type")).isin(*[t.lower() for t in rule.event_types]))
        from_type = rules.event_id_type(rule.from_field)
        src = field_value(df, rule.from_field)
        for to in rule.to:
            to_type = rules.event_id_type(to)
            dst = field_value(df, to)
            parts.append(
                df.select(
                    F.lit(rule.name).alias("rule"),
                    F.lit(from_type).alias("id_type"),
                    F.lit(rule.priority).alias("priority"),
                    value_node(F.lit(from_type), src).alias("unit"),
                    F.lit(from_type).alias("unit_type"),
                    src.alias("unit_value"),
                    value_node(F.lit(to_type), dst).alias("other"),
                    F.lit(to_type).alias("other_type"),
                    dst.alias("other_value"),
                    F.coalesce(_blocked(from_type, src, rules), _blocked(to_type, dst, rules))
                    .alias("reason"),
                ).where(src.isNotNull() & dst.isNotNull())
            )  # fmt: skip
    out = reduce(DataFrame.unionByName, parts).dropDuplicates(["rule", "unit", "other"])
    limits = rules.shared_values.max_linked
    if not limits:
        return out
    per_type = out.where(F.col("reason").isNull()).groupBy("rule", "unit", "other_type")
    counts = per_type.agg(F.countDistinct("other").alias("_n"))
    verdict = F.lit(None).cast("string")
    for t in sorted(limits, reverse=True):
        verdict = F.when(
            (F.col("other_type") == t) & (F.col("_n") > limits[t]), f"shared:linked_{t}"
        ).otherwise(verdict)
    shared = (
        counts.select("rule", "unit", verdict.alias("_v"))
        .where(F.col("_v").isNotNull())
        .groupBy("rule", "unit")
        .agg(F.min("_v").alias("_shared"))
    )
    return (
        out.join(shared, ["rule", "unit"], "left")
        .withColumn("reason", F.coalesce("reason", "_shared"))
        .drop("_shared")
    )


def reject_shared_endpoints(elinks: DataFrame, id_links: DataFrame) -> DataFrame:
    """An event link touching a value found shared among records is rejected too."""
    shared = (
        id_links.where(F.col("reason").startswith("shared:"))
        .groupBy("unit")
        .agg(F.min("reason").alias("_r"))
    )
    by_unit = shared.withColumnRenamed("_r", "_ru")
    by_other = shared.withColumnRenamed("unit", "other").withColumnRenamed("_r", "_ro")
    return (
        elinks.join(by_unit, "unit", "left")
        .join(by_other, "other", "left")
        .withColumn("reason", F.coalesce("reason", "_ru", "_ro"))
        .drop("_ru", "_ro")
    )


# --------------------------------------------------------------------------------------------
# Tiered resolution with per-customer limits and a component-size cap


@dataclass
class Resolution:
    """What :func:`resolve` found."""

    # node, comp, id_type (RECORD for records): every record and every accepted value.
    labels: DataFrame
    # rule, id_type, unit_value, reason, links: units dropped by limits, attribute
    # conflicts or the size cap.
    rejected: DataFrame
    tiers: list[int] = field(default_factory=list)
    oversized: int = 0  # components that hit max_component_records (then split)
    limit_hits: int = 0  # components that hit a per-customer limit (then split)
    conflict_hits: int = 0  # components that joined conflicting attributes (then split)
    cc_runs: int = 0


class _Cut:
    """Materialise a frame: reliable checkpoint when a checkpoint dir is set, else local."""

    def __init__(self, df: DataFrame) -> None:
        try:
            self.reliable = df.sparkSession.sparkContext.getCheckpointDir() is not None
        except Exception:
            self.reliable = False

    def __call__(self, df: DataFrame) -> DataFrame:
        return df.checkpoint(eager=True) if self.reliable else df.localCheckpoint(eager=True)


@dataclass(frozen=True)
class _Caps:
    """What a customer may hold: records, identifiers per type, distinct attribute values.

    Per node of a component graph, stats are ``_records`` and ``_t_<type>`` (counts, summed
    over a component) and ``_a_<field>`` (the distinct attribute values of its records, an
    array unioned over a component).
    """

    limits: Mapping[str, int]
    attribute_limits: Mapping[str, int]
    max_records: int
    name_conflicts: Mapping[str, NameConflict] = field(default_factory=dict)
    date_conflicts: Mapping[str, DateConflict] = field(default_factory=dict)
    # A steward's cannot-link decisions: records carry ``_v__cannot`` tokens, and a
    # component holding one token twice holds both records of a cannot-link pair.
    cannot_link: bool = False

    @classmethod
    def of(cls, rules: IdentityRules, *, cannot_link: bool = False) -> _Caps:
        return cls(
            dict(rules.limits),
            dict(rules.attribute_limits),
            rules.max_component_records,
            dict(rules.name_conflicts),
            dict(rules.date_conflicts),
            cannot_link,
        )

    @property
    def types(self) -> list[str]:
        return sorted(self.limits)

    @property
    def attributes(self) -> list[str]:
        fields = sorted(
            set(self.attribute_limits) | set(self.name_conflicts) | set(self.date_conflicts)
        )
        return fields + ([CANNOT] if self.cannot_link else [])

    def combine(self) -> list[Column]:
        """Aggregations merging nodes' stats into their component's."""
        counts = ["_records", *[f"_t_{t}" for t in self.types]]
        return [F.sum(c).alias(c) for c in counts] + [
            (
                F.flatten(F.collect_list(f"_a_{a}"))  # tokens are counted, not deduplicated
                if a == CANNOT
                else F.array_distinct(F.flatten(F.collect_list(f"_a_{a}")))
            ).alias(f"_a_{a}")
            for a in self.attributes
        ]

    def count(self) -> list[Column]:
        """Aggregations giving a component's stats from its nodes' ``id_type`` and, for
        records, their ``_v_<field>`` attribute values."""
        node_type = F.col("id_type")
        out = [F.sum((node_type == RECORD).cast("long")).alias("_records")]
        out += [F.sum((node_type == t).cast("long")).alias(f"_t_{t}") for t in self.types]
        out += [
            (
                F.flatten(F.collect_list(f"_v_{a}")) if a == CANNOT else F.collect_set(f"_v_{a}")
            ).alias(f"_a_{a}")
            for a in self.attributes
        ]
        return out

    def none(self) -> list[Column]:
        """Empty attribute stats (a value node holds no record attribute)."""
        return [F.array().cast("array<string>").alias(f"_a_{a}") for a in self.attributes]

    def violation(self) -> Column:
        """Reason merged stats break a rule: ``oversized`` first, then ``limit:<type>``, then
        ``conflict:<field>``, each by name."""
        verdict = F.lit(None).cast("string")
        for a in reversed(self.attributes):
            values = F.col(f"_a_{a}")
            if a == CANNOT:
                broken = F.size(values) > F.size(F.array_distinct(values))
            elif a in self.name_conflicts:
                broken = (F.size(values) > 1) & _names_conflict(values, self.name_conflicts[a])
            elif a in self.date_conflicts:
                broken = (F.size(values) > 1) & _dates_conflict(values, self.date_conflicts[a])
            else:
                broken = F.size(values) > self.attribute_limits[a]
            why = "conflict:cannot_link" if a == CANNOT else f"conflict:{a}"
            verdict = F.when(broken, why).otherwise(verdict)
        for t in reversed(self.types):
            verdict = F.when(F.col(f"_t_{t}") > self.limits[t], f"limit:{t}").otherwise(verdict)
        return F.when(F.col("_records") > self.max_records, "oversized").otherwise(verdict)


def _names_conflict(values: Column, rule: NameConflict) -> Column:
    """Whether an array of folded names holds two that cannot be one person's name.

    A value may be ``first|last`` (see :func:`_attribute_value`): two records whose first
    and last names are swapped are one person's, not a conflict."""
    same = _same_name(rule)

    def first(v: Column) -> Column:
        return F.substring_index(v, KEY_SEP, 1)

    def last(v: Column) -> Column:
        return F.when(F.instr(v, KEY_SEP) > 0, F.substring_index(v, KEY_SEP, -1))

    def compatible(x: Column, y: Column) -> Column:
        swapped = (first(x) == last(y)) & (last(x) == first(y))
        return same(first(x), first(y)) | F.coalesce(swapped, F.lit(False))

    return F.exists(values, lambda x: F.exists(values, lambda y: ~compatible(x, y)))


def _dates_conflict(values: Column, rule: DateConflict) -> Column:
    """Whether an array of ``yyyy-MM-dd`` dates holds two that are not one date mistyped
    (see :class:`DateConflict`)."""

    def compatible(x: Column, y: Column) -> Column:
        out = (x == y) | (F.levenshtein(x, y) <= rule.max_edits)
        if rule.transposed:
            out = out | (
                (F.substring(x, 1, 4) == F.substring(y, 1, 4))
                & (F.substring(x, 6, 2) == F.substring(y, 9, 2))
                & (F.substring(x, 9, 2) == F.substring(y, 6, 2))
            )
        return out

    return F.exists(values, lambda x: F.exists(values, lambda y: ~compatible(x, y)))


def _same_name(rule: NameConflict) -> Callable[[Column, Column], Column]:
    """``same(x, y)``: whether two folded names can be one person's (see NameConflict).

    A known form matches with a typo too: "Thoams" is a typo of Thomas, so it can be the
    name of a "Tom"; but only by edits, not by prefix, or "Christine" would match
    "Christopher" through "Chris".
    """
    forms_of: dict[str, set[str]] = {}
    for group in _name_groups(rule.nicknames):
        for form in group:
            forms_of.setdefault(form, set()).update(group)
    known = (
        F.map_from_arrays(
            F.array(*[F.lit(k) for k in sorted(forms_of)]),
            F.array(*[F.array(*[F.lit(f) for f in sorted(forms_of[k])]) for k in sorted(forms_of)]),
        )
        if forms_of
        else None
    )

    def near(x: Column, y: Column) -> Column:
        return (F.least(F.length(x), F.length(y)) >= rule.min_length) & (
            F.levenshtein(x, y) <= rule.max_edits
        )

    def same(x: Column, y: Column) -> Column:
        out = (x == y) | x.startswith(y) | y.startswith(x) | near(x, y)
        if known is not None:
            forms_x = F.coalesce(F.try_element_at(known, x), F.array().cast("array<string>"))
            forms_y = F.coalesce(F.try_element_at(known, y), F.array().cast("array<string>"))
            out = (
                out
                | F.exists(forms_y, lambda f: (f == x) | near(x, f))
                | F.exists(forms_x, lambda f: near(f, y))
            )
        return out

    return same


def _name_groups(nicknames: Mapping[str, Sequence[str]]) -> list[set[str]]:
    """Folded forms of each nickname entry (the name and its other forms)."""
    groups = []
    for name, forms in sorted(nicknames.items()):
        group = {fold_key_py(f) for f in [name, *forms]} - {""}
        if len(group) > 1:
            groups.append(group)
    return groups


def _repair_step(
    step: str,
    edges: DataFrame,
    cmap: DataFrame,
    bad: DataFrame,
    contrib: DataFrame,
    caps: _Caps,
) -> DataFrame:
    """Units ``(rule, unit, _why)`` of the current tier to drop in one repair step.

    ``own``: units that break a rule on their own (their value plus the components they
    touch). ``bridges``: in components still breaking a rule, units touching two or more
    prior components or adding a limited identifier. ``all``: every unit of the tier in a
    component still breaking a rule (only reached when several new values chain prior
    components together).
    """
    key = ["rule", "unit"]
    if step == "own":
        nodes = (
            edges.select(*key, F.col("uc").alias("node"))
            .unionByName(edges.select(*key, F.col("oc").alias("node")))
            .distinct()
        )
        return (
            nodes.join(contrib, "node")
            .groupBy(*key)
            .agg(*caps.combine())
            .withColumn("_why", caps.violation())
            .where(F.col("_why").isNotNull())
            .select(*key, "_why")
        )
    in_bad = edges.join(cmap.select(F.col("node").alias("uc"), "component"), "uc").join(
        bad.select("component", "_why"), "component"
    )
    if step == "all":
        return in_bad.select(*key, "_why").distinct()
    types = caps.types
    limited_u = F.col("unit_type").isin(*types) if types else F.lit(False)
    limited_o = F.col("other_type").isin(*types) if types else F.lit(False)
    prior = F.array_compact(
        F.array(F.when(~F.col("unit_new"), F.col("uc")), F.when(~F.col("other_new"), F.col("oc")))
    )
    per_unit = in_bad.groupBy(*key, "_why").agg(
        F.size(F.array_distinct(F.flatten(F.collect_list(prior)))).alias("_priors"),
        F.max((F.col("unit_new") & limited_u) | (F.col("other_new") & limited_o)).alias("_adds"),
    )
    return per_unit.where((F.col("_priors") > 1) | F.col("_adds")).select(*key, "_why")


def resolve(
    records: DataFrame,
    links: DataFrame,
    rules: IdentityRules,
    *,
    attributes: DataFrame | None = None,
    engine: str = "auto",
    max_rounds: int = 100,
    checkpoint_interval: int = 2,
    cannot_link: bool = False,
) -> Resolution:
    """Connected components of the accepted links, with per-customer limits enforced.

    ``records``: ``node`` of every record. ``links``: accepted links (``reason`` null) in the
    :data:`LINK_COLUMNS` layout. ``attributes``: the records' values of the fields that
    ``attribute_limits`` and ``name_conflicts`` name (:func:`record_attributes` of
    ``rules.attribute_fields()``); required when there are any.

    One connected-components run over every link finds the candidate customers. Limits are
    monotone (a part of a component holds no more records, identifiers or distinct attribute
    values than the whole), so
    a component that breaks no rule is final as it is: building it tier by tier would drop
    nothing. Only the components that break a per-customer limit or the size cap (a few in a
    thousand) are rebuilt tier by tier, strongest priority first, on their own subgraph (see
    :func:`_resolve_tiered`). The result is the same as building the whole graph tier by tier,
    for a fraction of the component runs over the full graph.
    """
    caps = _Caps.of(rules, cannot_link=cannot_link)
    if caps.attributes and attributes is None:
        raise ValueError(
            f"attribute_limits / name_conflicts on {caps.attributes} need the records' "
            "attributes (see record_attributes)"
        )
    cut = _Cut(records)
    links = cut(links.select(*[c for c in LINK_COLUMNS if c != "reason"]))
    result = Resolution(labels=records.limit(0), rejected=records.limit(0))
    result.tiers = sorted(
        (r[0] for r in links.select("priority").distinct().collect()), reverse=True
    )

    def cc(edges: DataFrame) -> DataFrame:
        result.cc_runs += 1
        return connected_components(
            edges.select("uc", "oc"),
            src="uc",
            dst="oc",
            engine=engine,
            max_rounds=max_rounds,
            checkpoint_interval=checkpoint_interval,
        )

    cmap = cut(cc(links.select(F.col("unit").alias("uc"), F.col("other").alias("oc"))))
    value_nodes = (
        links.select(F.col("unit").alias("node"), F.col("unit_type").alias("id_type"))
        .unionByName(
            links.select(F.col("other").alias("node"), F.col("other_type").alias("id_type"))
        )
        .where(F.col("id_type") != RECORD)
        .distinct()
    )
    record_nodes_ = records.select("node", F.lit(RECORD).alias("id_type")).distinct()
    nodes = record_nodes_.unionByName(value_nodes)
    labelled = nodes.join(cmap, "node", "left").select(
        "node", F.coalesce("component", "node").alias("comp"), "id_type"
    )
    attrs = None
    if attributes is not None and caps.attributes:
        attrs = attributes.select("node", *[f"_v_{a}" for a in caps.attributes])
    with_attrs = labelled.join(attrs, "node", "left") if attrs is not None else labelled
    stats = with_attrs.groupBy("comp").agg(*caps.count())
    bad = cut(
        stats.withColumn("_why", caps.violation()).where(F.col("_why").isNotNull()).select("comp")
    )
    if not bad.limit(1).count():
        result.labels = cut(labelled)
        result.rejected = _no_rejections(records)
        return result

    # Rebuild only the components that break a rule, tier by tier.
    bad_nodes = cut(labelled.join(bad, "comp", "left_semi").select("node"))
    sub_records = records.select("node").join(bad_nodes, "node", "left_semi")
    sub_links = links.join(bad_nodes.select(F.col("node").alias("unit")), "unit", "left_semi")
    sub_attrs = attrs.join(bad_nodes, "node", "left_semi") if attrs is not None else None
    labels, rejected = _resolve_tiered(sub_records, sub_links, sub_attrs, caps, cc, cut, result)
    good = labelled.join(bad, "comp", "left_anti")
    result.labels = cut(good.unionByName(labels))
    result.rejected = (
        reduce(DataFrame.unionByName, rejected) if rejected else _no_rejections(records)
    )
    return result


def _no_rejections(like: DataFrame) -> DataFrame:
    return like.sparkSession.createDataFrame(
        [], "rule string, id_type string, unit_value string, reason string, links long"
    )


def _resolve_tiered(
    records: DataFrame,
    links: DataFrame,
    attributes: DataFrame | None,
    caps: _Caps,
    cc: Callable[[DataFrame], DataFrame],
    cut: Callable[[DataFrame], DataFrame],
    result: Resolution,
) -> tuple[DataFrame, list[DataFrame]]:
    """Components built tier by tier (strongest first), repairing each tier that breaks a rule.

    At each priority tier the tier's links are added to the components found so far; a
    resulting component that breaks a per-customer limit or the size cap is repaired by
    dropping links of this tier -- the weakest present -- in up to three deterministic steps
    (see :func:`_repair_step`): each link unit that breaks a rule on its own; then, where the
    rest still does, every unit that bridges components or adds a limited identifier there;
    then any unit left in a component still breaking a rule. Earlier tiers never break a
    rule, so the result never does. A unit is ``(rule, unit)``: an identifier value and the
    records (or event-linked values) it links. Returns the labels and the rejected units;
    counts go to ``result``.
    """
    types = caps.types
    labels = cut(
        records.select(
            F.col("node"), F.col("node").alias("comp"), F.lit(RECORD).alias("id_type")
        ).distinct()
    )
    rejected: list[DataFrame] = []
    links = cut(links)
    tiers = sorted((r[0] for r in links.select("priority").distinct().collect()), reverse=True)
    for tier in tiers:
        lab = labels.select("node", "comp")
        tier_links = links.where(F.col("priority") == tier)
        ul = lab.select(F.col("node").alias("unit"), F.col("comp").alias("_uc"))
        ol = lab.select(F.col("node").alias("other"), F.col("comp").alias("_oc"))
        edges = cut(
            tier_links.join(ul, "unit", "left")
            .join(ol, "other", "left")
            .select(
                "*",
                F.coalesce("_uc", "unit").alias("uc"),
                F.coalesce("_oc", "other").alias("oc"),
                F.col("_uc").isNull().alias("unit_new"),
                F.col("_oc").isNull().alias("other_new"),
            )
            .drop("_uc", "_oc")
        )
        # Per node of the component graph: what it brings (prior component: its records and
        # limited identifiers; new value: one identifier of its type).
        new_nodes = (
            edges.where("unit_new")
            .select(F.col("unit").alias("node"), F.col("unit_type").alias("t"))
            .unionByName(
                edges.where("other_new").select(
                    F.col("other").alias("node"), F.col("other_type").alias("t")
                )
            )
            .distinct()
        )
        new_stats = new_nodes.select(
            "node",
            F.lit(0).cast("long").alias("_records"),
            *[(F.col("t") == t).cast("long").alias(f"_t_{t}") for t in types],
            *caps.none(),
        )
        touched = (
            edges.select(F.col("uc").alias("comp"))
            .unionByName(edges.select(F.col("oc").alias("comp")))
            .distinct()
        )
        prior = labels.join(touched, "comp", "left_semi")
        if attributes is not None:
            prior = prior.join(attributes, "node", "left")
        prior_stats = prior.groupBy(F.col("comp").alias("node")).agg(*caps.count())
        contrib = cut(prior_stats.unionByName(new_stats))

        def merged(cmap: DataFrame, contrib: DataFrame = contrib) -> DataFrame:
            """component -> summed stats and violation reason."""
            return (
                cmap.join(contrib, "node")
                .groupBy("component")
                .agg(*caps.combine())
                .withColumn("_why", caps.violation())
            )

        cmap = cc(edges)
        bad = cut(merged(cmap).where(F.col("_why").isNotNull()))
        if bad.limit(1).count():
            whys = {
                r["_why"]: r["n"]
                for r in bad.groupBy("_why").agg(F.count("*").alias("n")).collect()
            }
            result.oversized += whys.pop("oversized", 0)
            result.conflict_hits += sum(n for w, n in whys.items() if w.startswith("conflict:"))
            result.limit_hits += sum(n for w, n in whys.items() if w.startswith("limit:"))
            drops: DataFrame | None = None
            for step in ("own", "bridges", "all"):
                found = _repair_step(step, edges, cmap, bad, contrib, caps)
                found = cut(found)
                drops = found if drops is None else drops.unionByName(found)
                edges = edges.join(found, ["rule", "unit"], "left_anti")
                cmap = cc(edges)
                bad = cut(merged(cmap).where(F.col("_why").isNotNull()))
                if not bad.limit(1).count():
                    break
            assert drops is not None
            rejected.append(
                tier_links.join(drops, ["rule", "unit"])
                .groupBy("rule", "id_type", "unit_value", F.col("_why").alias("reason"))
                .agg(F.count(F.lit(1)).alias("links"))
            )
        # Relabel prior components, add the tier's new value nodes.
        comp_of = cmap.select(F.col("node").alias("comp"), F.col("component").alias("_new"))
        relabelled = labels.join(comp_of, "comp", "left").select(
            "node", F.coalesce("_new", "comp").alias("comp"), "id_type"
        )
        added_edges = edges
        added = (
            added_edges.where("unit_new")
            .select(F.col("unit").alias("node"), F.col("unit_type").alias("id_type"))
            .unionByName(
                added_edges.where("other_new").select(
                    F.col("other").alias("node"), F.col("other_type").alias("id_type")
                )
            )
            .distinct()
            .join(cmap.select("node", F.col("component").alias("comp")), "node")
            .select("node", "comp", "id_type")
        )
        labels = cut(relabelled.unionByName(added))
        log.info("identity tier %d done", tier)

    return labels, rejected
