"""Field length limits: an overlong value is ``invalid``, never cut short and called ``ok``.

A standardized field ``<f>`` whose original text (``<f>_raw``) is longer than its limit
(``silver.max_field_chars``, or ``silver.field_max_chars[<f>]``) gets ``<f> = null`` and
``<f>_status = "invalid"``; ``<f>_raw`` keeps the text as delivered (bronze's
``ingest.max_record_chars`` already bounds it). A non-blocking rule ``<f>_length`` per field
puts the reason in the row's ``_dq_warnings`` and the run log; like every DQ reason it names
the field and the limit, never the value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdp.silver.rules import Rule, RuleType
from cdp.silver.settings import SilverConfig
from cdp.silver.std_common import STATUS_INVALID


def limited_fields(columns: Sequence[str]) -> list[str]:
    """Fields that carry a standardization status (``<f>``, ``<f>_raw``, ``<f>_status``)."""
    present = set(columns)
    return [
        c[: -len("_status")]
        for c in columns
        if c.endswith("_status")
        and {c[: -len("_status")], c[: -len("_status")] + "_raw"} <= present
    ]


def _over(field: str, limit: int) -> str:
    return f"coalesce(length(`{field}_raw`) > {limit}, false)"


def limit_field_lengths(config: SilverConfig) -> Callable[[DataFrame], DataFrame]:
    """``df`` with every overlong standardized value null and its status ``invalid``."""

    def transform(df: DataFrame) -> DataFrame:
        # One projection for every field: a withColumn per field re-analysed the whole plan
        # each time (48 of them per silver run on the demo, 2 s of driver time).
        replaced: dict[str, Column] = {}
        for field in limited_fields(df.columns):
            over = F.expr(_over(field, config.max_chars(field)))
            replaced[field] = F.when(~over, F.col(f"`{field}`"))
            replaced[f"{field}_status"] = F.when(over, F.lit(STATUS_INVALID)).otherwise(
                F.col(f"`{field}_status`")
            )
        return df.withColumns(replaced) if replaced else df

    return transform


def length_rules(config: SilverConfig, columns: Sequence[str]) -> list[Rule]:
    """One non-blocking rule per limited field: its reason says which field was too long."""
    return [
        Rule(
            name=f"{field}_length",
            type=RuleType.EXPRESSION,
            column=f"NOT {_over(field, config.max_chars(field))}",
            description=f"{field} is at most {config.max_chars(field):,} characters",
        )
        for field in limited_fields(columns)
    ]
