"""Survivorship: one best value per attribute and customer, with the record that supplied it.

Rules are declared per attribute in ``conf/rules/profile.yaml``::

    source_priority: [crm_contacts, loyalty_members, ecommerce_orders]   # default order
    tie_breakers: [most_recent, source_priority]                         # default tie-breakers
    attributes:
      first_name: {strategy: source_priority}
      email: {strategy: most_frequent, tables: [person_records, transactions]}
      address:
        fields: [address_line1, city, postcode, country]   # survive together, as one unit
        strategy: most_complete
        required: [address_line1]
      gender: {strategy: source_priority, sources: [crm_contacts], only_listed: true}

Strategies (each is also usable as a tie-breaker):

* ``source_priority``: the first source in ``sources`` (or the global ``source_priority``);
  unlisted sources come after every listed one (or are not candidates with ``only_listed``);
* ``most_recent``: the newest record (its table's time field; unknown times come last);
* ``most_frequent``: the value carried by the most of the customer's records;
* ``most_complete``: the candidate with the most non-null ``fields`` (for multi-field units).

After the strategy and its tie-breakers, source name and then source record id (ascending)
decide, so the choice is a total order and the result is deterministic.

A candidate is a linked record whose table is in ``tables`` and whose ``required`` fields
are all present (by default: at least one of ``fields``). Values are silver's standardized
ones, which are null when a value was empty or invalid, so invalid input never survives.

Implementation: every attribute is chosen in one ``groupBy(customer_id)`` by taking the
minimum of a struct (sort keys, source, record id, values); ``most_frequent`` first counts
values with one window per attribute.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from cdp.errors import ConfigError
from cdp.silver.canonical import CONSENTS, PERSON_RECORDS, TRANSACTIONS
from cdp.yamlio import read_yaml

# The silver tables whose records are linked to customers in gold/identity_map.
RECORD_TABLES = {t.name: t for t in (PERSON_RECORDS, TRANSACTIONS, CONSENTS)}
# Columns every candidate frame carries besides the attribute fields.
CANDIDATE_KEYS = ("customer_id", "record_table", "source", "source_record_id", "record_time")

_NAME = r"^[a-z][a-z0-9_]*$"
_LAST = 2**63 - 1  # sort key of "unknown": after every real value


class Strategy(str, Enum):
    SOURCE_PRIORITY = "source_priority"
    MOST_RECENT = "most_recent"
    MOST_FREQUENT = "most_frequent"
    MOST_COMPLETE = "most_complete"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AttributeRule(_Strict):
    """How one attribute (one field, or several surviving together) is chosen."""

    name: str = Field(pattern=_NAME)
    fields: list[str] = Field(min_length=1)
    strategy: Strategy
    sources: list[str] = Field(default_factory=list)
    only_listed: bool = False
    tie_breakers: list[Strategy] = Field(default_factory=list)
    tables: list[str] = Field(default_factory=lambda: ["person_records"])
    # Fields that must all be present for a record to be a candidate (empty: any one field).
    required: list[str] = Field(default_factory=list)

    @property
    def order(self) -> list[Strategy]:
        """The strategy, then its tie-breakers, each once."""
        out: list[Strategy] = []
        for s in [self.strategy, *self.tie_breakers]:
            if s not in out:
                out.append(s)
        return out

    @property
    def output_columns(self) -> list[str]:
        return [*self.fields, f"{self.name}_source", f"{self.name}_source_record_id"]


class _AttributeSpec(_Strict):
    """An attribute as written in YAML (its name is the key; defaults come from the file)."""

    fields: list[str] | None = None
    strategy: Strategy
    sources: list[str] | None = None
    only_listed: bool = False
    tie_breakers: list[Strategy] | None = None
    tables: list[str] = Field(default_factory=lambda: ["person_records"])
    required: list[str] = Field(default_factory=list)


class RfmSegment(_Strict):
    """A named segment: every score range given (inclusive) must hold; first match wins."""

    name: str = Field(pattern=_NAME)
    r: tuple[int, int] | None = None
    f: tuple[int, int] | None = None
    m: tuple[int, int] | None = None


DEFAULT_SEGMENTS = [
    RfmSegment(name="champions", r=(4, 5), f=(4, 5), m=(4, 5)),
    RfmSegment(name="loyal", r=(3, 5), f=(3, 5)),
    RfmSegment(name="new", r=(4, 5), f=(1, 1)),
    RfmSegment(name="promising", r=(3, 5), f=(1, 2)),
    RfmSegment(name="at_risk", r=(1, 2), f=(3, 5)),
    RfmSegment(name="hibernating", r=(1, 2), f=(1, 2)),
]


class ProfileRules(_Strict):
    """The whole rules file."""

    source_priority: list[str] = Field(default_factory=list)
    tie_breakers: list[Strategy] = Field(
        default_factory=lambda: [Strategy.MOST_RECENT, Strategy.SOURCE_PRIORITY]
    )
    attributes: dict[str, _AttributeSpec] = Field(min_length=1)
    rfm_segments: list[RfmSegment] = Field(default_factory=lambda: list(DEFAULT_SEGMENTS))
    # Segment of a buyer that matches none of rfm_segments.
    rfm_default_segment: str = "needs_attention"

    @model_validator(mode="after")
    def _check(self) -> ProfileRules:
        seen: dict[str, str] = {}
        for rule in self.resolved():
            for f in rule.fields:
                for table in rule.tables:
                    if table not in RECORD_TABLES:
                        raise ValueError(
                            f"attributes.{rule.name}.tables: unknown table '{table}' "
                            f"(known: {sorted(RECORD_TABLES)})"
                        )
                    if f not in RECORD_TABLES[table].fields:
                        raise ValueError(
                            f"attributes.{rule.name}: field '{f}' is not a column of silver/{table}"
                        )
            bad_required = [r for r in rule.required if r not in rule.fields]
            if bad_required:
                raise ValueError(
                    f"attributes.{rule.name}.required: {bad_required} not among its fields"
                )
            for column in rule.output_columns:
                if column in seen:
                    raise ValueError(
                        f"attributes.{rule.name}: output column '{column}' also comes from "
                        f"attribute '{seen[column]}'"
                    )
                seen[column] = rule.name
        return self

    def resolved(self) -> list[AttributeRule]:
        """Every attribute with the file's defaults filled in, in declaration order."""
        return [
            AttributeRule(
                name=name,
                fields=spec.fields or [name],
                strategy=spec.strategy,
                sources=spec.sources if spec.sources is not None else self.source_priority,
                only_listed=spec.only_listed,
                tie_breakers=(
                    spec.tie_breakers if spec.tie_breakers is not None else self.tie_breakers
                ),
                tables=spec.tables,
                required=spec.required,
            )
            for name, spec in self.attributes.items()
        ]


def load_profile_rules(path: str | Path) -> ProfileRules:
    """Parse and check the rules file; any mistake fails with the file and key named."""
    p = Path(path)
    data: Any = read_yaml(p, "profile.rules_file")
    try:
        return ProfileRules.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        msg = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{p}: {loc + ': ' if loc else ''}{msg}") from None


# --------------------------------------------------------------------------------------------
# Transformations
# --------------------------------------------------------------------------------------------


def _candidate(rule: AttributeRule) -> Column:
    """Is this row a candidate for ``rule``?"""
    in_table = F.col("record_table").isin(*rule.tables)
    if rule.required:
        present = F.lit(True)
        for f in rule.required:
            present = present & F.col(f).isNotNull()
    else:
        present = F.lit(False)
        for f in rule.fields:
            present = present | F.col(f).isNotNull()
    ok = in_table & present
    if rule.only_listed:
        ok = ok & F.col("source").isin(*rule.sources)
    return ok


def _freq_column(rule: AttributeRule) -> str:
    return f"__freq_{rule.name}"


def _sort_key(strategy: Strategy, rule: AttributeRule) -> Column:
    """A non-null long; smaller is better."""
    if strategy is Strategy.SOURCE_PRIORITY:
        if not rule.sources:
            return F.lit(0).cast("long")
        position = F.array_position(F.array(*[F.lit(s) for s in rule.sources]), F.col("source"))
        return F.when(position == 0, F.lit(len(rule.sources) + 1)).otherwise(position).cast("long")
    if strategy is Strategy.MOST_RECENT:
        return F.coalesce(-F.unix_micros(F.col("record_time")), F.lit(_LAST))
    if strategy is Strategy.MOST_FREQUENT:
        return -F.col(_freq_column(rule)).cast("long")
    if strategy is Strategy.MOST_COMPLETE:
        filled = sum((F.col(f).isNotNull().cast("long") for f in rule.fields), F.lit(0))
        return -filled.cast("long")
    raise AssertionError(strategy)


def survive(
    candidates: DataFrame,
    rules: Sequence[AttributeRule],
    *,
    extra_aggregates: Sequence[Column] = (),
) -> DataFrame:
    """One row per ``customer_id`` with each attribute's best value and its provenance.

    ``candidates``: linked records with :data:`CANDIDATE_KEYS` and every rule's fields
    (null where the record's table has no such field). Output per rule: its ``fields``, then
    ``<name>_source`` and ``<name>_source_record_id`` (all null when no record qualifies).
    ``extra_aggregates`` are computed in the same ``groupBy`` (one pass over the records).
    """
    df = candidates
    for rule in rules:
        if Strategy.MOST_FREQUENT in rule.order:
            # How many of the customer's candidate records carry this value.
            same_value = Window.partitionBy("customer_id", *rule.fields)
            df = df.withColumn(
                _freq_column(rule),
                F.sum(F.when(_candidate(rule), F.lit(1)).otherwise(F.lit(0))).over(same_value),
            )
    best: list[Column] = []
    for rule in rules:
        keys = [_sort_key(s, rule).alias(f"k{i}") for i, s in enumerate(rule.order)]
        values = [F.col(f).alias(f"v{j}") for j, f in enumerate(rule.fields)]
        chosen = F.struct(
            *keys,
            F.col("source").alias("src"),
            F.col("source_record_id").alias("rid"),
            *values,
        )
        best.append(F.min(F.when(_candidate(rule), chosen)).alias(f"__best_{rule.name}"))
    grouped = df.groupBy("customer_id").agg(*best, *extra_aggregates)
    out: list[Column | str] = ["customer_id"]
    for rule in rules:
        b = F.col(f"__best_{rule.name}")
        out += [b[f"v{j}"].alias(f) for j, f in enumerate(rule.fields)]
        out += [
            b["src"].alias(f"{rule.name}_source"),
            b["rid"].alias(f"{rule.name}_source_record_id"),
        ]
    out += [c for c in grouped.columns if c != "customer_id" and not c.startswith("__best_")]
    return grouped.select(*out)
