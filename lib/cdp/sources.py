"""Declarative sources: one YAML file per source, validated when loaded.

A source says where its files land, how to read them, what identifies a record, and how its
columns map to the canonical fields that silver uses. Onboarding a source needs no code::

    name: crm_contacts
    kind: profile                 # profile | event | transaction | consent | other
    format: csv                   # csv | json | ndjson | parquet | orc | xml | text
    path: crm_contacts/*/*.csv    # glob, relative to the landing root (absolute / URI: inside it)
    options: {header: "true", delimiter: ","}
    primary_key: [contact_id]
    event_time: updated_at
    mapping: {source_record_id: contact_id, email: email}

A declaration is checked when loaded: its ``path`` must stay inside the landing root unless
``ingest.allow_paths_outside_landing`` says otherwise (:func:`path_problem`), and its mapping
expressions must pass the allow-list of :mod:`cdp.expressions`.
"""

from __future__ import annotations

import datetime as dt
import glob as globlib
import os
import posixpath
import re
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from cdp import tables as T
from cdp.config import CdpConfig, ConfigError
from cdp.expressions import check_at_load
from cdp.silver.model import TABLE_FOR_KIND_NAME
from cdp.yamlio import read_yaml


class SourceKind(str, Enum):
    PROFILE = "profile"
    EVENT = "event"
    TRANSACTION = "transaction"
    CONSENT = "consent"
    OTHER = "other"


class SourceFormat(str, Enum):
    CSV = "csv"
    JSON = "json"
    NDJSON = "ndjson"
    PARQUET = "parquet"
    ORC = "orc"
    XML = "xml"
    TEXT = "text"
    # Spreadsheets (.xlsx, .xlsm, .xlsb, .xls, .ods), parsed by calamine on the executors
    # (cdp.bronze.spreadsheet).
    XLSX = "xlsx"


class SchemaEvolution(str, Enum):
    # New columns become table columns (Auto Loader's addNewColumns).
    ADD_NEW_COLUMNS = "add_new_columns"
    # New columns go to the rescued-data column and the table schema stays fixed.
    RESCUE = "rescue"


class SourceDefaults(BaseModel):
    """How silver reads this source's values where the values themselves do not say."""

    model_config = ConfigDict(extra="forbid")

    # ISO region of national-format phone numbers ("020 7946 0000" read as GB).
    phone_region: str = Field(default="GB", pattern=r"^[A-Z]{2}$")
    # E-mail folding for addresses whose provider ignores dots / "+tag" (Gmail).
    gmail_dots: bool = False
    plus_addressing: bool = False
    # Date patterns (Spark datetime patterns) tried in order; None: silver's own list.
    date_formats: list[str] | None = Field(default=None, min_length=1)
    # The earliest birth date silver takes as real; earlier ones are invalid (a typo for a
    # living customer). A register of people born long ago (a historical or genealogical
    # source) sets it earlier; `cdp source draft` proposes that when its sample says so.
    birth_date_min: dt.date = dt.date(1900, 1, 1)
    # Time zone of timestamps that carry no offset.
    timezone: str = "UTC"
    # Amounts written "12,50" rather than "12.50".
    decimal_comma: bool = False


class SourceSpec(BaseModel):
    """One declared source."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    kind: SourceKind
    format: SourceFormat
    path: str
    options: dict[str, str] = Field(default_factory=dict)
    primary_key: list[str] = Field(default_factory=list)
    event_time: str | None = None
    # Spark datetime pattern(s) of event_time, tried in order before silver's ISO defaults:
    # one, or a list where the file writes times in several ways ("dd.MM.yyyy HH:mm" and,
    # where a spreadsheet dropped a midnight's time, "dd.MM.yyyy").
    event_time_format: str | list[str] | None = None
    delete_flag: str | None = None
    mapping: dict[str, str] = Field(default_factory=dict)
    # Custom identifiers: mapping keys the canonical model does not list (a national id, a
    # tax or membership number) that identity rules and matching comparisons may use. Their
    # values travel in silver's ``attributes`` map.
    identifiers: list[str] = Field(default_factory=list)
    defaults: SourceDefaults = Field(default_factory=SourceDefaults)
    schema_evolution: SchemaEvolution = SchemaEvolution.ADD_NEW_COLUMNS
    # A file name (``_SUCCESS``) the producer writes into a folder once the folder is
    # complete; files in a folder without it wait for a later run. None: no marker.
    completion_marker: str | None = Field(default=None, pattern=r"^[^/\\]+$")
    enabled: bool = True
    # Where the declaration came from (set by the loader, for messages).
    origin: str = ""

    @field_validator("options", mode="before")
    @classmethod
    def _options_as_strings(cls, value: Any) -> Any:
        # YAML turns `header: true` into a bool; Spark reader options are strings.
        if isinstance(value, Mapping):
            return {
                str(k): (str(v).lower() if isinstance(v, bool) else str(v))
                for k, v in value.items()
            }
        return value

    @field_validator("path")
    @classmethod
    def _non_empty_path(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be a non-empty glob")
        return value

    @model_validator(mode="after")
    def _identifiers_mapped(self) -> SourceSpec:
        for name in self.identifiers:
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise ValueError(f"identifiers: {name!r} is not a lower_snake_case name")
            if name not in self.mapping:
                raise ValueError(
                    f"identifiers: {name!r} has no entry in mapping (map it to a source column)"
                )
        return self

    @property
    def table(self) -> str:
        return T.BRONZE_SOURCE.named(source=self.name)

    def glob_for(self, landing_root: str) -> str:
        if "://" in self.path or os.path.isabs(self.path):
            return self.path
        return f"{landing_root.rstrip('/')}/{self.path}"


def _parse_source_file(path: Path) -> SourceSpec:
    data = read_yaml(path, "sources_dirs")
    data.setdefault("origin", str(path))
    try:
        return SourceSpec.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            if err["type"] == "extra_forbidden":
                problems.append(f"unknown field '{key}'")
            elif err["type"] == "missing":
                problems.append(f"missing field '{key}'")
            else:
                problems.append(f"field '{key}': {err['msg']} (got {err.get('input')!r})")
        raise ConfigError(f"{path}: {'; '.join(problems)}") from None


def _split_location(location: str) -> tuple[str, str, str]:
    """(scheme, authority, normalized path) of a local path or URI (``file:`` for a path)."""
    if "://" in location:
        scheme, rest = location.split("://", 1)
        authority, _, path = rest.partition("/")
        scheme = scheme.lower()
        if scheme == "file":
            authority = ""
    else:
        scheme, authority, path = "file", "", location
    return scheme, authority, posixpath.normpath("/" + path.lstrip("/"))


def path_problem(path: str, landing_root: str) -> str | None:
    """Why the source glob ``path`` leaves ``landing_root``, or None when it stays inside.

    A relative glob is taken from the root; ``..`` may be used only where the result provably
    stays inside: a ``..`` inside a ``{a,b}`` alternative or next to a backslash escape
    (Hadoop globs unescape ``\\.\\.`` to ``..``) is refused outright. An absolute path or URI
    must lie under the root (same scheme and bucket)."""
    plain = path.replace("\\", "")
    parts = re.split(r"[/{},]", plain)
    if ".." in parts and (any(c in path for c in "{}\\") or "," in path):
        return "'..' inside a glob alternative or escape is not allowed"
    absolute = "://" in path or os.path.isabs(path)
    full = path if absolute else f"{landing_root.rstrip('/')}/{plain}"
    scheme, authority, where = _split_location(full)
    r_scheme, r_authority, root = _split_location(landing_root)
    inside = (scheme, authority) == (r_scheme, r_authority) and (
        where == root or where.startswith(root.rstrip("/") + "/")
    )
    if inside:
        return None
    what = "an absolute path or URI" if absolute else "a relative path with '..'"
    return (
        f"{what} outside the landing root {landing_root} "
        "(set ingest.allow_paths_outside_landing: true to allow it)"
    )


def check_source(spec: SourceSpec, config: CdpConfig) -> None:
    """Load-time checks that need the run's configuration: the path stays in the landing root,
    the mapping expressions pass the allow-list (:mod:`cdp.expressions`)."""
    if not config.ingest.allow_paths_outside_landing:
        problem = path_problem(spec.path, config.landing_uri)
        if problem:
            raise ConfigError(f"{spec.origin}: path: {spec.path!r}: {problem}")
    for canonical, expr in spec.mapping.items():
        check_at_load(expr, where=spec.origin, key=f"mapping.{canonical}")


def load_sources(config: CdpConfig, *, only: list[str] | None = None) -> list[SourceSpec]:
    """Every enabled source declared in the configured source directories, by name."""
    found: dict[str, SourceSpec] = {}
    for directory in config.source_dirs_resolved():
        base = Path(directory)
        if not base.is_dir():
            continue
        for path in sorted([*base.glob("*.yaml"), *base.glob("*.yml")]):
            spec = _parse_source_file(path)
            check_source(spec, config)
            if spec.name in found:
                raise ConfigError(
                    f"{path}: source '{spec.name}' is already declared in {found[spec.name].origin}"
                )
            found[spec.name] = spec
    if only:
        unknown = [n for n in only if n not in found]
        if unknown:
            raise ConfigError(f"unknown sources {unknown}; declared: {sorted(found)}")
        return [found[n] for n in only]
    return [s for s in found.values() if s.enabled]


def mapped_fields(sources: list[SourceSpec]) -> dict[str, set[str]]:
    """Silver record/event table name (``person_records`` ...) -> the fields that at least one
    enabled source maps onto it, custom identifiers included."""
    out: dict[str, set[str]] = {}
    for spec in sources:
        table = TABLE_FOR_KIND_NAME[spec.kind.value]
        fields = {k for k in spec.mapping if k in table.fields} | set(spec.identifiers)
        if spec.event_time:
            fields.add(table.time_field)
        out.setdefault(table.name, set()).update(fields)
    return out


def custom_identifiers(sources: list[SourceSpec]) -> dict[str, set[str]]:
    """Custom identifier -> the silver tables whose sources declare it."""
    out: dict[str, set[str]] = {}
    for spec in sources:
        for name in spec.identifiers:
            out.setdefault(name, set()).add(TABLE_FOR_KIND_NAME[spec.kind.value].name)
    return out


def local_matches(pattern: str) -> list[str]:
    """Files matching a local glob, sorted (directories and hidden/marker files skipped)."""
    if pattern.startswith("file://"):
        pattern = pattern[len("file://") :]
    out = []
    for match in globlib.glob(pattern, recursive=True):
        name = os.path.basename(match)
        if os.path.isfile(match) and not name.startswith((".", "_")):
            out.append(os.path.abspath(match))
    return sorted(out)


def event_time_formats(spec: SourceSpec) -> list[str]:
    """The source's own event_time patterns, in the order it lists them (none: ``[]``)."""
    value = spec.event_time_format
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)
