"""The row-level plan of a MERGE as one Spark DataFrame (used by the embedded backend).

Given the target rows that may be affected and the source rows, a full outer join on the keys
decides for every row one action: ``keep``, ``update``, ``delete``, ``insert`` or ``skip``
(a source row whose insert condition is false). The output projects the target's columns
(plus new source columns when the schema evolves).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

T_MARK = "_cdp_in_target"
S_MARK = "_cdp_in_source"
ACTION = "_cdp_action"


def _q(alias: str, name: str) -> Column:
    # Bronze column names come from files: a backtick inside one is doubled.
    quoted = name.replace("`", "``")
    return F.col(f"{alias}.`{quoted}`")


def merge_output_schema(target: StructType, source: StructType, *, evolve: bool) -> StructType:
    """Target columns, followed by the source's new columns when the schema may evolve."""
    fields = list(target.fields)
    if evolve:
        known = {f.name for f in target.fields}
        fields += [f for f in source.fields if f.name not in known]
    return StructType(fields)


def plan_merge(
    target: DataFrame,
    source: DataFrame,
    *,
    keys: Sequence[str],
    output_schema: StructType,
    update: bool | Mapping[str, str] = True,
    update_condition: str | None = None,
    delete_condition: str | None = None,
    insert: bool | Mapping[str, str] = True,
    insert_condition: str | None = None,
) -> DataFrame:
    """Every output row of the merge, with its action in column ``_cdp_action``.

    Rows with action ``delete`` or ``skip`` are kept in the plan (so the caller can count
    them) and must be filtered out before writing.
    """
    src_cols = set(source.columns)
    tgt_cols = set(target.columns)
    t = target.withColumn(T_MARK, F.lit(True)).alias("t")
    s = source.withColumn(S_MARK, F.lit(True)).alias("s")
    cond = None
    for key in keys:
        eq = _q("t", key) == _q("s", key)
        cond = eq if cond is None else cond & eq
    joined = t.join(s, on=cond, how="full_outer")

    in_t = F.coalesce(_q("t", T_MARK), F.lit(False))
    in_s = F.coalesce(_q("s", S_MARK), F.lit(False))
    matched = in_t & in_s

    def holds(expr: str | None) -> Column:
        return F.lit(True) if expr is None else F.coalesce(F.expr(expr), F.lit(False))

    action = F.when(
        matched & F.lit(delete_condition is not None) & holds(delete_condition), "delete"
    )
    if update is not False:
        action = action.when(matched & holds(update_condition), "update")
    action = action.when(in_t, "keep")
    if insert is not False:
        action = action.when(in_s & holds(insert_condition), "insert")
    action = action.otherwise("skip")
    planned = joined.withColumn(ACTION, action)

    update_map = dict(update) if isinstance(update, Mapping) else {}
    insert_map = dict(insert) if isinstance(insert, Mapping) else {}
    projections: list[Column] = []
    for field in output_schema.fields:
        name = field.name
        keep_expr = _q("t", name) if name in tgt_cols else F.lit(None)
        if name in update_map:
            upd_expr = F.expr(update_map[name])
        elif update is True and name in src_cols:
            upd_expr = _q("s", name)
        else:
            upd_expr = keep_expr
        if name in insert_map:
            ins_expr = F.expr(insert_map[name])
        elif name in src_cols and (insert is True or not insert_map):
            ins_expr = _q("s", name)
        else:
            ins_expr = F.lit(None)
        value = (
            F.when(F.col(ACTION) == "update", upd_expr)
            .when(F.col(ACTION) == "insert", ins_expr)
            .otherwise(keep_expr)
        )
        projections.append(value.cast(field.dataType).alias(name))
    return planned.select(*projections, F.col(ACTION))


def merge_metrics_columns() -> list[Column]:
    """Aggregates for ``DataFrame.observe`` over a planned merge."""
    act = F.col(ACTION)
    return [
        F.sum(F.when(act == "update", 1).otherwise(0)).alias("num_updated"),
        F.sum(F.when(act == "insert", 1).otherwise(0)).alias("num_inserted"),
        F.sum(F.when(act == "delete", 1).otherwise(0)).alias("num_deleted"),
        F.sum(F.when(act == "keep", 1).otherwise(0)).alias("num_copied"),
        F.sum(F.when(act == "skip", 1).otherwise(0)).alias("num_skipped"),
    ]
