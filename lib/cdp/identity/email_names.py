"""Merge protection: e-mail addresses whose local part names another person.

``shared:email_name``: "jennifer.moore@" on Harry Wilson's record is someone else's address
(a partner's, a parent's), and linking through it would merge two people. The names an
address may spell come from the record holding it (or from the record a stronger
identifier on it names), with nicknames, initials and typos allowed; the names it must not
spell are those the data itself knows as first or last names (:func:`name_vocabulary`).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdp.identity.blocklist import blocked
from cdp.identity.checkpoint import cut
from cdp.identity.conflicts import name_groups, same_name
from cdp.identity.links import rule_value
from cdp.identity.nodes import evidence, field_value, live, value_node
from cdp.identity.rules import IdentifierRule, IdentityRules, NameConflict
from cdp.silver.std_common import map_literal


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
    return evidence(df, "first_name"), evidence(df, "last_name")


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
        out[table] = cut(d.select(*keep, fn.alias("_fn"), ln.alias("_ln")))
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

    def accepted_value(rule: IdentifierRule, table: str, df: DataFrame) -> Column | None:
        if table not in rule.applies_to() or not set(rule.fields) <= set(df.columns):
            return None
        value = rule_value([field_value(df, f) for f in rule.fields])
        return F.when(blocked(rule.id_type, value, rules).isNull(), value)

    direct, carriers, named = [], [], []
    for table, frame in sorted(frames.items()):
        df = live(frame)
        has_names = _has_names(df)
        fn, ln = _names(df)
        strong = [(r, v) for r in strong_rules if (v := accepted_value(r, table, df)) is not None]
        # The stronger identifiers of a record as value nodes, read in one pass of the table.
        via_nodes = F.array(
            *[F.when(v.isNotNull(), value_node(F.lit(r.id_type), v)) for r, v in strong]
        )
        for rule in email_rules:
            value = accepted_value(rule, table, df)
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
    holding them (``shared_values.email_names``, see :class:`~cdp.identity.rules.EmailNames`); None when the
    check is off. Value nodes are those of :func:`cdp.identity.links.identifier_links`."""
    cfg = rules.shared_values.email_names
    if cfg is None:
        return None
    first_names = rules.name_conflicts.get("first_name", NameConflict())
    same = same_name(first_names)
    # Every initial a first name may be written with ("Bill" is also a W.): those of its forms.
    initials: dict[str, str] = {}
    for group in name_groups(first_names.nicknames):
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
