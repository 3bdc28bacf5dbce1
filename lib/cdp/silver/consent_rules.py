"""Consent statements fail closed in silver.

Quarantining a withdrawal that silver cannot read (an unknown status or purpose, a time that
does not parse) would leave the older grant as the latest statement, and the person would still
be exported. So a consent statement that fails a ``fail_closed`` rule of ``conf/rules/
silver.yaml``, or whose time is missing or does not parse, is kept in ``silver/consents`` as a
statement with status ``unknown`` (see :mod:`cdp.privacy.consent`), which every reader takes as
a withdrawal:

* status ``unknown`` whatever the source said;
* a purpose or channel that failed its rule becomes ``all``: the statement may have been about
  anything, so it withdraws everything on that axis;
* a missing status, purpose or channel counts as unreadable too (the missing purpose or
  channel becomes ``all``);
* a time that is missing or does not parse becomes the time silver processed the statement.
  We chose processing time (not "infinitely new") so that the person can consent again: a valid
  grant dated after the statement arrived is newer and counts, as the issue asks; one dated
  before it does not.

What the source said stays in ``purpose_raw``, ``channel_raw`` and ``status_raw`` (after
trimming and lower-casing), ``consent_time_raw`` (the standardizer's), and the rules that failed
in ``_dq_warnings``. A statement without any identifier is kept too; it links to nobody and so
withdraws nothing, exactly as it would have granted nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdp.privacy.consent import ANY, UNKNOWN
from cdp.silver.rules import VIOLATIONS, Rule

STATED = ("purpose", "channel", "status")
TIME = "consent_time"


def _failed(names: Sequence[str]) -> Column:
    if not names:
        return F.lit(False)
    return F.exists(F.col(VIOLATIONS), lambda v: v["rule"].isin(*names))


def fail_closed(rules: Sequence[Rule], now: datetime) -> Callable[[DataFrame], DataFrame]:
    """Rewrite the consent statements (after :func:`cdp.silver.rules.apply_rules`) that failed
    a ``fail_closed`` rule or carry no readable time into withdrawals, as the module says.
    Rows already blocked are left alone: they go to the quarantine anyway."""
    closing = [r for r in rules if r.fail_closed]

    def on(column: str) -> list[str]:
        return [r.name for r in closing if r.column.strip() == column]

    def transform(df: DataFrame) -> DataFrame:
        untimed = F.col(TIME).isNull()
        # A statement without a status, purpose or channel says nothing we can honour either.
        missing = F.col("status").isNull() | F.col("purpose").isNull() | F.col("channel").isNull()
        unreadable = _failed([r.name for r in closing]) | untimed | missing
        out = df.withColumns({f"{c}_raw": F.col(c) for c in STATED})
        updates: dict[str, Column] = {
            "status": F.when(unreadable, F.lit(UNKNOWN)).otherwise(F.col("status")),
            TIME: F.when(untimed, F.lit(now).cast("timestamp")).otherwise(F.col(TIME)),
        }
        for column in ("purpose", "channel"):
            wide = _failed(on(column)) | F.col(column).isNull()
            # Only a statement already unreadable widens: a readable grant keeps its scope.
            updates[column] = F.when(unreadable & wide, F.lit(ANY)).otherwise(F.col(column))
        return out.withColumns(updates)

    return transform
