"""``cdp source check NAME``: what silver would make of a declared source, before any table
is written.

A few rows of the source's files go through the same code a run uses: the declaration check
(:func:`cdp.bronze.validate.validate_source`), the bronze reader and malformed-record split
(:mod:`cdp.bronze.readers`, :mod:`cdp.bronze.transform`), the mapping
(:func:`cdp.silver.canonical.map_to_canonical`), the standardizers
(:func:`cdp.silver.stage.standardize`) and the data-quality rules (:mod:`cdp.silver.rules`).
Nothing is written. Only statuses and counts are reported, never a value: the rows are
personal data, and the console is not a place for them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import reduce

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp.bronze.ledger import list_landed_files
from cdp.bronze.readers import case_sensitive, read_source_files
from cdp.bronze.transform import align_to_schema, mark_rejects, split_good_and_quarantined
from cdp.bronze.validate import validate_source
from cdp.config import CdpConfig
from cdp.errors import ConfigError
from cdp.privacy.redact import safe_uri
from cdp.silver.canonical import TABLE_FOR_KIND, map_to_canonical
from cdp.silver.field_limits import length_rules
from cdp.silver.model import TABLES
from cdp.silver.rules import BLOCKED, VIOLATIONS, Rule, apply_rules, load_rules
from cdp.silver.stage import BUILTIN_RULES, standardize
from cdp.sources import SourceSpec, load_sources

__all__ = ["CheckReport", "FieldStatus", "check_source_rows", "format_check"]

DEFAULT_ROWS = 20
# Why a standardizer says "invalid", per field (its rule; the value is never shown).
INVALID_BECAUSE: dict[str, str] = {
    "email": "not an e-mail address (syntax)",
    "phone": "not a valid number for its region (phonenumbers; defaults.phone_region)",
    "birth_date": "matches none of the date formats (defaults.date_formats)",
    "first_name": "not a name (digits or symbols)",
    "last_name": "not a name (digits or symbols)",
    "full_name": "not a name (digits or symbols)",
    "amount": "not a number (defaults.decimal_comma?)",
    "currency": "not a known currency code or symbol",
    "country": "not a known country",
    "postcode": "does not fit the country's postcode rule",
    "gender": "not a known gender value",
}
_TIME_BECAUSE = "matches none of the time formats (event_time_format first)"


@dataclass
class FieldStatus:
    """One canonical field over the checked rows."""

    field: str
    mapped_from: str | None
    ok: int = 0
    invalid: int = 0
    missing: int = 0
    reason: str = ""


@dataclass
class CheckReport:
    source: str
    kind: str
    table: str
    files: int
    rows: int
    malformed: int
    fields: list[FieldStatus] = field(default_factory=list)
    not_mapped: list[str] = field(default_factory=list)
    rules: dict[str, tuple[int, bool]] = field(default_factory=dict)  # rule -> (rows, blocking)
    blocked: int = 0
    unreadable: list[str] = field(default_factory=list)  # file and value-free reason


def _silver_rules(config: CdpConfig, table: str, columns: list[str]) -> list[Rule]:
    name = config.silver.rules_file
    declared = load_rules(config.conf_path(name), tables=set(TABLES)) if name else {}
    return [*BUILTIN_RULES, *length_rules(config.silver, columns), *declared.get(table, [])]


def _read_rows(
    spark: SparkSession, config: CdpConfig, spec: SourceSpec, rows: int, report: CheckReport
) -> DataFrame | None:
    """Up to ``rows`` bronze rows of the source's first files, as ingest would land them."""
    files = [f for f in list_landed_files(spark, spec.glob_for(config.landing_uri)) if f.size > 0]
    report.files = len(files)
    if not files:
        return None
    got = read_source_files(spark, spec, files[:5])
    report.unreadable = [f"{safe_uri(f.uri)}: {why}" for f, why in got.unreadable]
    if not got.frames:
        return None
    parsed = reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), got.frames)
    with case_sensitive(spark, got.case_collision):
        aligned, _schema = align_to_schema(parsed.limit(rows), None, mode=spec.schema_evolution)
        marked = mark_rejects(
            aligned, fmt=spec.format, max_record_chars=config.ingest.max_record_chars
        )
        report.rows = marked.count()
        report.malformed = marked.where(F.col("_reject_reason").isNotNull()).count()
        good, _bad = split_good_and_quarantined(
            marked,
            source=spec.name,
            fmt=spec.format,
            run_id="source-check",
            ingested_at=datetime.now(timezone.utc),
            raw_max_chars=config.ingest.quarantine_raw_max_chars,
        )
    return good


def check_source_rows(
    spark: SparkSession, config: CdpConfig, name: str, *, rows: int = DEFAULT_ROWS
) -> CheckReport:
    """Run ``rows`` rows of source ``name`` through bronze, mapping, standardizers and rules."""
    (spec,) = load_sources(config, only=[name])
    table = TABLE_FOR_KIND[spec.kind]
    report = CheckReport(
        source=spec.name, kind=spec.kind.value, table=table.table, files=0, rows=0, malformed=0
    )
    if validate_source(spark, spec, config.landing_uri) is None:
        raise ConfigError(
            f"source {name}: no readable file matches {spec.glob_for(config.landing_uri)} "
            "(put the files in the landing zone first)"
        )
    good = _read_rows(spark, config, spec, rows, report)
    if good is None:
        return report
    silver = good.transform(map_to_canonical(spec)).transform(standardize(spec, table))
    checked = silver.transform(apply_rules(_silver_rules(config, table.name, silver.columns)))
    statuses = [f"{f}_status" for f in table.fields if f"{f}_status" in checked.columns]
    collected = checked.select(
        *[F.col(f).isNotNull().alias(f) for f in table.fields],
        *statuses,
        F.transform(F.col(VIOLATIONS), lambda v: v["rule"]).alias("_rules"),
        F.transform(F.col(VIOLATIONS), lambda v: v["blocking"]).alias("_blocking"),
        F.col(BLOCKED),
    ).collect()
    rule_rows: Counter[str] = Counter()
    blocking: dict[str, bool] = {}
    for row in collected:
        for rule, blocks in zip(row["_rules"] or [], row["_blocking"] or [], strict=True):
            rule_rows[rule] += 1
            blocking[rule] = bool(blocks)
        report.blocked += bool(row[BLOCKED])
    report.rules = {r: (n, blocking[r]) for r, n in sorted(rule_rows.items())}
    for f in table.fields:
        source_col = spec.mapping.get(f)
        if source_col is None and f == table.time_field:
            source_col = spec.event_time
        if source_col is None and f == "source_record_id" and spec.primary_key:
            source_col = ", ".join(spec.primary_key)
        status = FieldStatus(field=f, mapped_from=source_col)
        for row in collected:
            if f"{f}_status" in statuses:
                value = row[f"{f}_status"]
                status.ok += value == "ok"
                status.invalid += value == "invalid"
                status.missing += value not in ("ok", "invalid")
            else:
                status.ok += bool(row[f])
                status.missing += not row[f]
        if status.invalid:
            status.reason = INVALID_BECAUSE.get(
                f, _TIME_BECAUSE if f == table.time_field else "not standardized"
            )
        if source_col is None and not status.ok:
            report.not_mapped.append(f)
        else:
            report.fields.append(status)
    return report


def format_check(report: CheckReport) -> list[str]:
    """The report as lines for the console: counts and statuses, never a value."""
    lines = [
        f"source {report.source}: {report.kind} -> {report.table}; {report.rows} rows checked "
        f"from {report.files} file(s), {report.malformed} malformed (bronze would quarantine "
        "them)"
    ]
    lines += [f"  unreadable file: {u}" for u in report.unreadable]
    width = max([len(f.mapped_from or "-") for f in report.fields] + [12])
    lines.append(f"{'field':18} {'from':{width}} {'ok':>4} {'invalid':>7} {'missing':>7}  why")
    for f in report.fields:
        lines.append(
            f"{f.field:18} {(f.mapped_from or '-'):{width}} {f.ok:>4} {f.invalid:>7} "
            f"{f.missing:>7}  {f.reason}".rstrip()
        )
    if report.not_mapped:
        lines.append(f"not mapped: {', '.join(report.not_mapped)}")
    for rule, (n, blocks) in report.rules.items():
        effect = "quarantined by silver" if blocks else "kept, counted as a warning"
        lines.append(f"rule {rule}: {n} of {report.rows - report.malformed} rows fail ({effect})")
    lines.append(
        f"silver would quarantine {report.blocked} of {report.rows - report.malformed} rows; "
        "nothing was written"
    )
    return lines
