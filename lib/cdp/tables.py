"""The table catalog: every table of the platform, named once.

Each entry says where the table sits (its layer), what identifies a row (its keys), how it is
partitioned, and which code defines its columns (the *schema owner*, ``module:name``), so a
reader can go from a table to the code that shapes it. The stage graph (``cdp.pipeline``)
declares per stage which of these tables it reads and writes, the runner fails a stage that
writes a table it did not declare (``cdp.writecheck``), and every other module takes table
names from here instead of spelling them.

Per-source tables (``bronze/<source>``) are one *pattern* entry: :meth:`Table.named` gives a
concrete name, :meth:`Table.matches` recognises one. ``ANY_TABLE`` stands for every table, for
stages such as maintenance that touch whatever exists.

Plain data and the standard library only: the CLI, the Airflow DAG file and ``cdp stages``
import it without Spark.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class Layer(str, Enum):
    BRONZE = "bronze"
    SILVER = "silver"
    GOLD = "gold"
    OPS = "ops"
    ANY = "*"


_PLACEHOLDER = re.compile(r"<([a-z_]+)>")


@dataclass(frozen=True)
class Table:
    """One table (or one family of tables, when ``name`` holds a ``<placeholder>``)."""

    name: str  # "<layer>/<table>": "gold/identity_map"; a pattern: "bronze/<source>"
    keys: tuple[str, ...]  # what identifies a row; () for append-only logs without one
    schema_owner: str  # "module:name" of the schema constant or the function that shapes it
    partition_by: tuple[str, ...] = ()
    description: str = ""

    def __str__(self) -> str:
        return self.name

    @property
    def layer(self) -> Layer:
        """The layer, which is the first segment of the name (one spelling, never two)."""
        return Layer(layer_of(self.name))

    @property
    def is_pattern(self) -> bool:
        return self is ANY_TABLE or bool(_PLACEHOLDER.search(self.name))

    def named(self, **parts: str) -> str:
        """The concrete name of a pattern entry: ``BRONZE_SOURCE.named(source="crm")``."""
        missing = set(_PLACEHOLDER.findall(self.name)) - set(parts)
        if missing:
            raise ValueError(f"{self.name}: no value for {sorted(missing)}")
        return _PLACEHOLDER.sub(lambda m: parts[m.group(1)], self.name)

    def matches(self, name: str) -> bool:
        """True when the concrete table ``name`` is this table (or one of this pattern's)."""
        if self is ANY_TABLE:
            return True
        if not self.is_pattern:
            return name == self.name
        want, got = self.name.split("/"), name.split("/")
        if len(want) != len(got) or name in _FIXED_NAMES:
            return False
        return all(
            w == g or (_PLACEHOLDER.fullmatch(w) and g) for w, g in zip(want, got, strict=True)
        )


SOURCE_KEYS = ("_source", "_file_path", "_row_number")  # bronze lineage: file and row
RECORD_KEYS = ("source", "source_record_id")  # silver and the identity map

# Bronze ---------------------------------------------------------------------------------------
BRONZE_SOURCE = Table(
    "bronze/<source>",
    SOURCE_KEYS,
    "cdp.bronze.ingest:run_ingest",
    description="one source's rows as landed (declared or inferred columns + lineage)",
)
BRONZE_QUARANTINE = Table(
    "bronze/_quarantine",
    SOURCE_KEYS,
    "cdp.bronze.tables:QUARANTINE_SCHEMA",
    description="rows of landed files that could not be parsed, with the reason",
)
INGESTED_FILES = Table(
    "ops/ingested_files",
    ("source", "file_path", "file_size", "file_modified_ms"),
    "cdp.bronze.tables:INGESTED_FILES_SCHEMA",
    description="the file ledger: every landed file once, so reruns skip it",
)

# Silver ---------------------------------------------------------------------------------------
PERSON_RECORDS = Table(
    "silver/person_records",
    RECORD_KEYS,
    "cdp.silver.model:PERSON_RECORDS",
    description="standardized person records of every profile source",
)
EVENTS = Table("silver/events", RECORD_KEYS, "cdp.silver.model:EVENTS", description="events")
TRANSACTIONS = Table(
    "silver/transactions",
    RECORD_KEYS,
    "cdp.silver.model:TRANSACTIONS",
    description="orders and payments",
)
CONSENTS = Table(
    "silver/consents",
    RECORD_KEYS,
    "cdp.silver.model:CONSENTS",
    description="consent grants and withdrawals",
)
SILVER_QUARANTINE = Table(
    "silver/_quarantine",
    ("table", *RECORD_KEYS),
    "cdp.silver.stage:run_silver",
    description="records that failed a validation rule, with the reasons",
)
SILVER_CHANGES = Table(
    "silver/_changes",
    ("table", *RECORD_KEYS),
    "cdp.silver.stage:run_silver",
    description="what each silver upsert inserted and updated, one slice per canonical "
    "table version it was computed against (base_version), replaced on rerun",
)
SILVER_PROGRESS = Table(
    "ops/silver_progress",
    ("source", "bronze_version"),
    "cdp.silver.stage:PROGRESS_SCHEMA",
    description="the bronze version each source was processed up to",
)
CANONICAL_TABLES = (PERSON_RECORDS, EVENTS, TRANSACTIONS, CONSENTS)

# Gold: identity -------------------------------------------------------------------------------
IDENTITY_MAP = Table(
    "gold/identity_map",
    RECORD_KEYS,
    "cdp.identity.stable:MAP_SCHEMA",
    description="every silver record's stable customer_id",
)
IDENTITY_IDENTIFIERS = Table(
    "gold/identity_identifiers",
    ("customer_id", "id_type", "id_value"),
    "cdp.identity.stage:IDENTIFIER_COLUMNS",
    description="every accepted identifier value of every customer",
)
IDENTITY_HISTORY = Table(
    "gold/identity_history",
    ("run_id", "old_id", "new_id", "event"),
    "cdp.identity.stable:HISTORY_SCHEMA",
    description="created / joined / merged / split / retired ids",
)
IDENTITY_REJECTED_LINKS = Table(
    "gold/identity_rejected_links",
    (),
    "cdp.identity.stage:run_identity",
    description="links merge protection rejected, one slice per identity map version "
    "they were computed from (base_map_version), replaced on rerun",
)
IDENTITY_MATCH_PAIRS = Table(
    "gold/identity_match_pairs",
    ("left_key", "right_key"),
    "cdp.identity.stage:_write_matching",
    description="accepted scored pairs of probabilistic matching, and why",
)
IDENTITY_REVIEW_QUEUE = Table(
    "gold/identity_review_queue",
    ("left_key", "right_key"),
    "cdp.identity.stage:_write_matching",
    description="scored pairs in the grey zone, for a data steward",
)
IDENTITY_LINKS = Table(
    "gold/identity_links",
    ("rule", "left_key", "right_key"),
    "cdp.identity.stage:_write_matching",
    description="every accepted record link: which rule joined which records",
)

# Gold: profile, models, audiences -------------------------------------------------------------
CUSTOMER_PROFILE = Table(
    "gold/customer_profile",
    ("customer_id",),
    "cdp.profile.aggregates:assemble_profile",
    description="one row per customer: survivorship, identifiers, consents, RFM, engagement",
)
CUSTOMER_FEATURES = Table(
    "gold/customer_features",
    ("customer_id", "as_of"),
    "cdp.models.features:build_features",
    # Not partitioned: each as_of slice is replaced with replace_where (cdp.models.features_stage).
    description="point-in-time model features, one slice per as_of",
)
CUSTOMER_VALUE = Table(
    "gold/customer_value",
    ("customer_id", "as_of"),
    "cdp.value.stage:VALUE_SCHEMA",
    # Not partitioned, like the features: each as_of slice is replaced with replace_where.
    description="customer lifetime value (BG/NBD + Gamma-Gamma), one slice per as_of",
)
PROPENSITY_SCORES = Table(
    "gold/propensity_scores",
    ("customer_id", "model_name", "as_of"),
    "cdp.models.score:SCORES_SCHEMA",
    description="each model champion's score and decile per customer and date",
)
MODEL_BACKTESTS = Table(
    "gold/model_backtests",
    ("model_name", "train_as_of", "score_as_of"),
    "cdp.models.backtest_stage:BACKTEST_SCHEMA",
    description="out-of-time backtest results",
)
AUDIENCE_MEMBERSHIP = Table(
    "gold/audience_membership",
    ("audience", "customer_id", "entered_at"),
    "cdp.audiences.members:MEMBERSHIP_SCHEMA",
    partition_by=("audience",),
    description="who is in which audience, from when to when",
)
AUDIENCE_RUNS = Table(
    "gold/audience_runs",
    ("audience", "run_id"),
    "cdp.audiences.stage:RUNS_SCHEMA",
    description="one row per audience evaluation: date, rule, counts, models used",
)

# Operations -----------------------------------------------------------------------------------
RUN_LOG = Table(
    "ops/run_log",
    ("run_id",),
    "cdp.runlog:RUN_LOG_SCHEMA",
    description="one row per stage run, failed runs included (written by the runner)",
)

AUDIT_LOG = Table(
    "ops/audit_log",
    (),
    "cdp.privacy.audit:AUDIT_SCHEMA",
    description="who exported, erased or looked up what, from which table versions",
)

PRIVACY_REQUESTS = Table(
    "ops/privacy_requests",
    ("request_id",),
    "cdp.privacy.requests:REQUESTS_SCHEMA",
    description="erasure / suppression requests: keyed pseudonyms only, status per layer",
)
SUPPRESSION_LIST = Table(
    "ops/suppression_list",
    ("id_type", "pseudonym"),
    "cdp.privacy.suppression:SUPPRESSION_SCHEMA",
    description="keyed pseudonyms of suppressed identifiers, applied at ingest and export",
)
ERASURE_PROOF = Table(
    "ops/erasure_proof",
    ("request_id", "table"),
    "cdp.privacy.erase:PROOF_SCHEMA",
    description="per request and table: versions before/after, rows deleted, vacuum, post-check",
)

ANY_TABLE = Table("*", (), "cdp.tables:ANY_TABLE", description="every table")

CATALOG: tuple[Table, ...] = (
    BRONZE_SOURCE,
    BRONZE_QUARANTINE,
    INGESTED_FILES,
    *CANONICAL_TABLES,
    SILVER_QUARANTINE,
    SILVER_CHANGES,
    SILVER_PROGRESS,
    IDENTITY_MAP,
    IDENTITY_IDENTIFIERS,
    IDENTITY_HISTORY,
    IDENTITY_REJECTED_LINKS,
    IDENTITY_MATCH_PAIRS,
    IDENTITY_REVIEW_QUEUE,
    IDENTITY_LINKS,
    CUSTOMER_PROFILE,
    CUSTOMER_FEATURES,
    CUSTOMER_VALUE,
    PROPENSITY_SCORES,
    MODEL_BACKTESTS,
    AUDIENCE_MEMBERSHIP,
    AUDIENCE_RUNS,
    RUN_LOG,
    AUDIT_LOG,
    PRIVACY_REQUESTS,
    SUPPRESSION_LIST,
    ERASURE_PROOF,
)
# Concrete names a pattern must not claim (``bronze/_quarantine`` is no source's table).
_FIXED_NAMES = frozenset(t.name for t in CATALOG if not _PLACEHOLDER.search(t.name))


def silver_table(name: str) -> str:
    """``silver/<name>`` of a canonical table (``person_records`` ...), checked."""
    for table in CANONICAL_TABLES:
        if table.name == f"silver/{name}":
            return table.name
    raise KeyError(f"no canonical silver table {name!r}")


def lookup(name: str) -> Table:
    """The catalog entry of a concrete table name (a pattern's entry for its instances)."""
    for table in CATALOG:
        if table.matches(name):
            return table
    raise KeyError(f"table {name!r} is not in the catalog (cdp.tables)")


def layer_of(name: str) -> str:
    """The layer a concrete table name sits in (its first path segment)."""
    return name.split("/", 1)[0]
