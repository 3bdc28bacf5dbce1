"""The identity graph's nodes, and the record fields that link them.

Nodes are silver records (``person_records``, ``transactions``, ``consents``; tombstones
excluded) and typed identifier values. Node ids are 64-bit ``xxhash64`` hashes of a kind tag
and the node's text (``r|table|source|id`` for records, ``v|id_type|value`` for values), so
the same record or value gets the same id in every run; a collision between two of
``2^64`` hashes is the (accepted) theoretical risk.

A record's fields are read here once for every consumer (links, merge protection, matching):
what counts as a usable value (:func:`field_value`), as evidence of who a record is
(:func:`evidence`), and the attributes that tell people apart (:func:`record_attributes`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdp.identity.checkpoint import cut
from cdp.identity.rules import NAME_FIELDS, RECORD_TABLES, IdentityRules
from cdp.silver.std_common import fold_key

RECORD = "_record"  # id_type of record nodes in label frames
KEY_SEP = "|"


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
    input of ``attribute_limits`` (see :func:`cdp.identity.resolution.resolve`)."""
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
        # Which order a transaction row belongs to (order_lines: an invoice's lines count once).
        keep_order = {"order_id"} if table == ORDER_TABLE and "order_id" in d.columns else set()
        # A table written before its canonical model gained a field (orders' billing names)
        # lacks the column until silver next rewrites it: the field is empty, not an error.
        for f in sorted(fields - set(d.columns)):
            if table in RECORD_TABLES and f in RECORD_TABLES[table].fields:
                d = d.withColumn(f, F.lit(None).cast("string"))
            elif f not in ALL_RECORD_FIELDS:
                # A custom identifier (a source's ``identifiers``): from ``attributes``.
                d = d.withColumn(f, custom_identifier(d, f))
        keep = [c for c in d.columns if c in wanted | keep_order]
        folded = [
            field_value(d, f).alias(f"_fold_{f}")
            for f in sorted(fields & NAME_FIELDS)
            if f in d.columns
        ]
        out[table] = cut(d.select(*keep, *folded))
    return out


ALL_RECORD_FIELDS = frozenset().union(*(t.fields for t in RECORD_TABLES.values()))
ORDER_TABLE = "transactions"


def order_lines(frames: Mapping[str, DataFrame]) -> DataFrame | None:
    """``other, _order``: each transaction record that is one line of an order with several
    live lines (an invoice over several rows of a line-level export), and its order's id;
    None where no transaction table has an ``order_id``.

    Counting records per identifier value (``shared_values.max_records``) counts such an
    order once: a buyer's thousands of invoice lines are not thousands of people.
    """
    tx = frames.get(ORDER_TABLE)
    if tx is None or "order_id" not in tx.columns:
        return None
    lines = tx.where(F.col("order_id").isNotNull()).select(
        record_node(ORDER_TABLE).alias("other"),
        F.xxhash64(F.lit("o"), "source", F.col("order_id").cast("string")).alias("_order"),
    )
    several = lines.groupBy("_order").count().where(F.col("count") > 1).select("_order")
    return lines.join(several, "_order", "left_semi")


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


def _attribute_value(df: DataFrame, name: str) -> Column:
    """A record's value of an attribute that tells people apart, as text; a first name is
    ``first|last`` so that a record with its names swapped is not taken for another person
    (see :func:`cdp.identity.conflicts.names_conflict`)."""
    value = evidence(df, name).cast("string")
    if name == "first_name" and "last_name" in df.columns:
        last = F.coalesce(evidence(df, "last_name").cast("string"), F.lit(""))
        return F.when(value.isNotNull(), F.concat_ws(KEY_SEP, value, last))
    return value


def evidence(df: DataFrame, name: str) -> Column:
    """A field's value as evidence of who a record is; an explicit "unknown" is none."""
    if name not in df.columns:
        return F.lit(None).cast("string")
    value = field_value(df, name)
    return F.when(F.lower(value.cast("string")) != "unknown", value)
