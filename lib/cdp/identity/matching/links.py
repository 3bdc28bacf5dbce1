"""Scored pairs and a steward's decisions -> links of the one identity graph (pure functions
but for :func:`load_decisions`, which reads the decisions file).

A pair becomes a *pair node* (``unit``, typed by the matching rule) linked to both of its
records, so merge protection treats it like any identifier value: dropped as a unit, by tier,
with a reason. Must-link decisions become pair nodes of the strongest tier; cannot-link
decisions remove the pair from the scored pairs and give both records one token each, so a
component holding both breaks ``conflict:cannot_link`` and is split like any limit.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp.config import ConfigError
from cdp.identity.nodes import RECORD

MUST_LINK_RULE = "steward_must_link"
MUST_LINK_PRIORITY = 1000  # above every rule: a steward's word outranks the data
STEWARD_TYPE = "steward"
DECISION_COLUMNS = ("decision", "left_source", "left_record_id", "right_source", "right_record_id")
DECISIONS = ("must_link", "cannot_link")


@dataclass(frozen=True)
class Decision:
    decision: str
    left_source: str
    left_record_id: str
    right_source: str
    right_record_id: str


def load_decisions(path: str | Path) -> list[Decision]:
    """A steward's decisions: a CSV with the header ``decision, left_source, left_record_id,
    right_source, right_record_id`` (extra columns such as ``note`` or ``decided_by`` are
    kept out); ``decision`` is ``must_link`` or ``cannot_link``. A missing file is none; a bad
    row fails naming the file and the line."""
    p = Path(path)
    if not p.exists():
        return []
    out = []
    with p.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in DECISION_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(
                f"{p}: missing column(s) {missing}; expected {list(DECISION_COLUMNS)}"
            )
        for line, row in enumerate(reader, start=2):
            values = {c: (row.get(c) or "").strip() for c in DECISION_COLUMNS}
            if not any(values.values()):
                continue
            if values["decision"] not in DECISIONS:
                raise ConfigError(
                    f"{p}:{line}: decision {values['decision']!r} is not one of {list(DECISIONS)}"
                )
            empty = [c for c, v in values.items() if not v]
            if empty:
                raise ConfigError(f"{p}:{line}: empty {empty}")
            out.append(Decision(**values))
    return out


def decisions_frame(spark: SparkSession, decisions: list[Decision]) -> DataFrame:
    rows = [
        (i, d.decision, d.left_source, d.left_record_id, d.right_source, d.right_record_id)
        for i, d in enumerate(decisions)
    ]
    return spark.createDataFrame(
        rows,
        "decision_id long, decision string, left_source string, left_record_id string, "
        "right_source string, right_record_id string",
    )


def decided_pairs(decisions: DataFrame, records: DataFrame) -> DataFrame:
    """``decision_id, decision, node_l, node_r, key_l, key_r`` of decisions whose both
    records are live (``records``: :func:`cdp.identity.nodes.record_nodes`)."""
    left = records.select(
        F.col("source").alias("left_source"),
        F.col("source_record_id").alias("left_record_id"),
        F.col("node").alias("_a"),
        F.col("member_key").alias("_ka"),
    )
    right = records.select(
        F.col("source").alias("right_source"),
        F.col("source_record_id").alias("right_record_id"),
        F.col("node").alias("_b"),
        F.col("member_key").alias("_kb"),
    )
    joined = decisions.join(left, ["left_source", "left_record_id"]).join(
        right, ["right_source", "right_record_id"]
    )
    first = F.col("_a") < F.col("_b")
    return joined.select(
        "decision_id",
        "decision",
        F.when(first, F.col("_a")).otherwise(F.col("_b")).alias("node_l"),
        F.when(first, F.col("_b")).otherwise(F.col("_a")).alias("node_r"),
        F.when(first, F.col("_ka")).otherwise(F.col("_kb")).alias("key_l"),
        F.when(first, F.col("_kb")).otherwise(F.col("_ka")).alias("key_r"),
    )


def pair_unit(node_l: Column, node_r: Column) -> Column:
    """Node id of a pair (``node_l < node_r``)."""
    return F.xxhash64(F.lit("m"), node_l, node_r)


def pair_links(pairs: DataFrame, *, rule: str, id_type: str, priority: int) -> DataFrame:
    """Two links (one per record) of each pair ``node_l, node_r, key_l, key_r`` in the
    :data:`cdp.identity.links.LINK_COLUMNS` layout; the pair's value is ``key_l~key_r``."""
    unit = pair_unit(F.col("node_l"), F.col("node_r"))
    value = F.concat_ws("~", "key_l", "key_r")
    sides = [("node_l", "key_l"), ("node_r", "key_r")]
    parts = [
        pairs.select(
            F.lit(rule).alias("rule"),
            F.lit(id_type).alias("id_type"),
            F.lit(priority).alias("priority"),
            unit.alias("unit"),
            F.lit(id_type).alias("unit_type"),
            value.alias("unit_value"),
            F.col(node).alias("other"),
            F.lit(RECORD).alias("other_type"),
            F.col(key).alias("other_value"),
            F.lit(None).cast("string").alias("reason"),
        )
        for node, key in sides
    ]
    return parts[0].unionByName(parts[1])


def without_decided(pairs: DataFrame, decided: DataFrame) -> DataFrame:
    """Scored pairs (``node_l, node_r``) no decision speaks about: a steward overrides the
    model both ways."""
    return pairs.join(decided.select("node_l", "node_r"), ["node_l", "node_r"], "left_anti")


def cannot_link_tokens(decided: DataFrame) -> DataFrame:
    """``node, _v__cannot``: the cannot-link decisions each record is part of, as tokens; a
    customer holding a token twice holds both records of a cannot-link pair."""
    cannot = decided.where(F.col("decision") == "cannot_link")
    token = F.col("decision_id").cast("string")
    sides = cannot.select(F.col("node_l").alias("node"), token.alias("t")).unionByName(
        cannot.select(F.col("node_r").alias("node"), token.alias("t"))
    )
    return sides.groupBy("node").agg(F.sort_array(F.collect_set("t")).alias("_v__cannot"))
