"""Data-quality rules declared in YAML per silver table (``conf/rules/silver.yaml``).

    transactions:
      - {name: amount_present, type: not_null, column: amount, blocking: true}
      - {name: amount_range, type: range, column: amount, min: -100000, max: 1000000}
      - {name: currency_code, type: regex, column: currency, pattern: "^[A-Z]{3}$"}
      - {name: status_known, type: allowed_values, column: status, values: [granted, withdrawn]}
      - {name: crm_known, type: referential, column: crm_id,
         ref_table: silver/person_records, ref_column: crm_id}

A row failing a blocking rule goes to ``silver/_quarantine`` with the rule's name and reason
(the reason names the rule and the column, never the value: see :func:`_reason`);
non-blocking failures are only counted. On ``consents`` a rule may instead be
``fail_closed: true``: a statement failing it is kept as an *unknown* statement, which reads as
a withdrawal (:mod:`cdp.silver.consent_rules`), because quarantining it would leave an older
grant standing as the latest word. ``column`` may be any Spark SQL expression that passes the
allow-list of :mod:`cdp.expressions` (checked at load and again where it becomes a column). A null
value passes every rule except ``not_null`` (so optional fields are not punished for being
absent).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp.errors import ConfigError
from cdp.expressions import check_at_load, checked_expr, quote_identifier
from cdp.yamlio import read_yaml

VIOLATIONS = "_violations"
BLOCKED = "_blocked"


class RuleType(str, Enum):
    NOT_NULL = "not_null"
    REGEX = "regex"
    RANGE = "range"
    ALLOWED_VALUES = "allowed_values"
    REFERENTIAL = "referential"
    EXPRESSION = "expression"


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    type: RuleType
    column: str
    blocking: bool = False
    # consents only: keep a failing statement as a withdrawal ("unknown") instead.
    fail_closed: bool = False
    description: str = ""
    pattern: str | None = None
    min: float | None = None
    max: float | None = None
    values: list[str] | None = None
    ref_table: str | None = None
    ref_column: str | None = None

    @model_validator(mode="after")
    def _arguments_for_type(self) -> Rule:
        need = {
            RuleType.REGEX: ["pattern"],
            RuleType.ALLOWED_VALUES: ["values"],
            RuleType.REFERENTIAL: ["ref_table", "ref_column"],
        }.get(self.type, [])
        missing = [n for n in need if getattr(self, n) is None]
        if self.type is RuleType.RANGE and self.min is None and self.max is None:
            missing.append("min or max")
        if missing:
            raise ValueError(f"rule type {self.type.value} needs {', '.join(missing)}")
        if self.fail_closed and self.blocking:
            raise ValueError("a rule is either blocking or fail_closed, not both")
        return self


# The only table whose rows are statements that can fail closed.
FAIL_CLOSED_TABLES = frozenset({"consents"})


def load_rules(path: str | Path, *, tables: set[str]) -> dict[str, list[Rule]]:
    """Rules per silver table from one YAML file; unknown tables and bad rules fail fast."""
    p = Path(path)
    data = read_yaml(p, "silver.rules_file")
    out: dict[str, list[Rule]] = {}
    for table, rules in data.items():
        if table not in tables:
            raise ConfigError(f"{p}: unknown silver table '{table}' (known: {sorted(tables)})")
        parsed = []
        for i, raw in enumerate(rules or []):
            try:
                parsed.append(Rule.model_validate(raw))
            except ValidationError as exc:
                first = exc.errors()[0]
                loc = ".".join(str(x) for x in first["loc"]) or "rule"
                raise ConfigError(f"{p}: {table}[{i}].{loc}: {first['msg']}") from None
            check_at_load(parsed[-1].column, where=str(p), key=f"{table}[{i}].column")
        if table not in FAIL_CLOSED_TABLES and any(r.fail_closed for r in parsed):
            raise ConfigError(
                f"{p}: {table}: fail_closed applies only to {', '.join(sorted(FAIL_CLOSED_TABLES))}"
            )
        names = [r.name for r in parsed]
        if len(names) != len(set(names)):
            raise ConfigError(f"{p}: {table}: rule names must be unique")
        out[table] = parsed
    return out


def _reason(rule: Rule, what: str) -> Column:
    """The reason text: the rule's name, its column and what it checks, never the value.

    Reasons are counted and listed in the run report, read by people who may not see
    personal data; the failing value itself stays only in the quarantined record.
    """
    return F.lit(f"{rule.name}: {rule.column} {what}")


def _column(rule: Rule, spark: SparkSession | None = None) -> Column:
    """The rule's ``column`` expression, through the allow-list."""
    return checked_expr(rule.column, where=f"silver rule '{rule.name}'", key="column", spark=spark)


def _violation(
    rule: Rule, refs: Mapping[str, DataFrame], spark: SparkSession | None = None
) -> tuple[Column, Column]:
    """(does the row violate the rule, the reason text) for a rule that needs no join."""
    value = _column(rule, spark)
    if rule.type is RuleType.NOT_NULL:
        return value.isNull(), _reason(rule, "is null")
    if rule.type is RuleType.REGEX:
        bad = value.isNotNull() & ~value.cast("string").rlike(rule.pattern or "")
        return bad, _reason(rule, f"does not match {rule.pattern}")
    if rule.type is RuleType.RANGE:
        num = value.cast("double")
        bad = F.lit(False)
        if rule.min is not None:
            bad = bad | (num < F.lit(rule.min))
        if rule.max is not None:
            bad = bad | (num > F.lit(rule.max))
        bad = value.isNotNull() & (num.isNull() | bad)
        return bad, _reason(rule, f"outside [{rule.min}, {rule.max}]")
    if rule.type is RuleType.ALLOWED_VALUES:
        bad = value.isNotNull() & ~value.cast("string").isin(*(rule.values or []))
        return bad, _reason(rule, f"not in {rule.values}")
    if rule.type is RuleType.EXPRESSION:
        return ~F.coalesce(value.cast("boolean"), F.lit(True)), _reason(rule, "is false")
    raise AssertionError(rule.type)


def apply_rules(
    rules: list[Rule], *, refs: Mapping[str, DataFrame] | None = None
) -> Callable[[DataFrame], DataFrame]:
    """Add ``_violations`` (array of {rule, reason, blocking}) and ``_blocked`` (bool).

    ``refs`` maps a referential rule's ``ref_table`` to a frame holding ``ref_column``; a rule
    whose reference table does not exist yet is skipped (nothing to check against).
    """
    refs = dict(refs or {})

    def transform(df: DataFrame) -> DataFrame:
        checks: list[Column] = []
        out = df
        for rule in rules:
            if rule.type is RuleType.REFERENTIAL:
                ref = refs.get(rule.ref_table or "")
                if ref is None:
                    continue
                flag = f"_ref_ok_{rule.name}"
                keys = ref.select(
                    F.col(quote_identifier(rule.ref_column or "")).cast("string").alias("_ref_key")
                ).distinct()
                keys = keys.withColumn(flag, F.lit(True))
                out = out.join(
                    keys, _column(rule, df.sparkSession).cast("string") == F.col("_ref_key"), "left"
                ).drop("_ref_key")
                bad = _column(rule, df.sparkSession).isNotNull() & F.col(flag).isNull()
                reason = _reason(rule, f"not found in {rule.ref_table}.{rule.ref_column}")
            else:
                bad, reason = _violation(rule, refs, df.sparkSession)
            checks.append(
                F.when(
                    F.coalesce(bad, F.lit(False)),
                    F.struct(
                        F.lit(rule.name).alias("rule"),
                        reason.alias("reason"),
                        F.lit(rule.blocking).alias("blocking"),
                    ),
                )
            )
        if checks:
            violations = F.filter(F.array(*checks), lambda v: v.isNotNull())
        else:
            violations = F.array().cast("array<struct<rule:string,reason:string,blocking:boolean>>")
        out = out.withColumn(VIOLATIONS, violations)
        out = out.drop(*[c for c in out.columns if c.startswith("_ref_ok_")])
        return out.withColumn(BLOCKED, F.exists(F.col(VIOLATIONS), lambda v: v["blocking"]))

    return transform


def rule_count_columns(table: str, rules: list[Rule]) -> list[Column]:
    """Aggregates (for ``DataFrame.observe``) counting each rule's violations."""

    def broke(name: str) -> Column:
        return F.exists(F.col(VIOLATIONS), lambda v: v["rule"] == F.lit(name))

    cols = [
        F.sum(F.when(broke(rule.name), 1).otherwise(0)).alias(f"{table}.{rule.name}")
        for rule in rules
    ]
    return cols or [F.count(F.lit(1)).alias(f"{table}._rows")]


def rules_summary(counts: Mapping[str, Any]) -> dict[str, int]:
    return {k: int(v or 0) for k, v in counts.items()}
