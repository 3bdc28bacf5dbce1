"""``cdp source draft PATH --name NAME``: a source declaration proposed from a sample.

The YAML is written by hand rather than dumped, so that each proposal keeps its evidence as a
comment beside it, and it is checked with the project's own loader (:class:`SourceSpec` and
:func:`cdp.sources.check_source`) before it is written: a draft that ``cdp`` would refuse is
a bug here, never the user's to find. No Spark: the sample is read in plain Python.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from cdp.config import CdpConfig
from cdp.errors import ConfigError
from cdp.onboarding.profile_columns import profile_sample
from cdp.onboarding.propose import Proposal, propose
from cdp.onboarding.sample import DEFAULT_LIMIT, Sample, read_sample
from cdp.sources import SourceFormat, SourceSpec, check_source

__all__ = ["Draft", "draft_source", "render_yaml", "source_glob"]

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./*\-]*")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}
_COMMENT_COLUMN = 40


@dataclass
class Draft:
    """What was drafted: the declaration's text, where it went, and what it proposes."""

    text: str
    out: Path
    proposal: Proposal
    sample: Sample
    spec: SourceSpec
    note: str | None = None  # a step the user must take (files outside the landing root)


def _scalar(value: str) -> str:
    if _PLAIN.fullmatch(value) and value.lower() not in _YAML_WORDS:
        return value
    return json.dumps(value, ensure_ascii=False)


def _line(indent: int, key: str, value: str, comment: str = "") -> str:
    text = f"{' ' * indent}{key}: {value}"
    if comment:
        text = f"{text.ljust(_COMMENT_COLUMN - 1)} # {comment}"
    return text


def _extension(files: list[Path]) -> str:
    """The suffixes the files share (``.csv.gz``), for the glob."""
    counts = Counter(
        "".join(p.suffixes[-2:])
        if len(p.suffixes) > 1 and p.suffix in (".gz", ".bz2")
        else p.suffix
        for p in files
    )
    return counts.most_common(1)[0][0]


def source_glob(path: Path, sample: Sample, landing_root: str, name: str) -> tuple[str, str | None]:
    """The declaration's ``path`` (a glob relative to the landing root) for the files of
    ``path``, and a step for the user when they lie outside the landing root."""
    ext = _extension(sample.files)
    landing = Path(landing_root.removeprefix("file://")).resolve()
    target = path.resolve()
    try:
        rel = target.relative_to(landing)
    except ValueError:
        return f"{name}/*{ext}", (
            f"{path} is outside the landing root {landing}: copy its files to "
            f"{landing / name}/ (the declaration's path is relative to the landing root)"
        )
    if target.is_file():
        folder = rel.parent
        return (f"{folder.as_posix()}/*{ext}" if str(folder) != "." else rel.as_posix()), None
    depths = Counter(len(p.resolve().relative_to(target).parts) for p in sample.files)
    depth = depths.most_common(1)[0][0]
    stars = "/".join(["*"] * (depth - 1) + [f"*{ext}"])
    return f"{rel.as_posix()}/{stars}", None


def _options(sample: Sample) -> list[tuple[str, str, str]]:
    """(option, value, evidence) of the Spark reader for these files."""
    notes = sample.notes
    out: list[tuple[str, str, str]] = []
    if sample.format is SourceFormat.CSV:
        out.append(("header", "true" if sample.header else "false", notes.get("header", "")))
        out.append(("delimiter", sample.delimiter or ",", notes.get("delimiter", "")))
        if any(v and "\n" in v for row in sample.rows for v in row.values()):
            out.append(("multiLine", "true", "some sampled values span several lines"))
    if sample.format is SourceFormat.JSON and sample.multiline:
        out.append(("multiLine", "true", notes.get("format", "")))
    if sample.format is SourceFormat.XLSX and sample.sheet:
        out.append(("sheet", sample.sheet, notes.get("sheet", "")))
    if sample.format is SourceFormat.XML and sample.row_tag:
        out.append(("rowTag", sample.row_tag, notes.get("row_tag", "")))
        out.append(("inferSchema", "false", "ids, phones and dates stay text; silver parses them"))
    if sample.encoding and (sample.encoding != "UTF-8" or sample.format is SourceFormat.CSV):
        key = "charset" if sample.format is SourceFormat.XML else "encoding"
        out.append((key, sample.encoding, notes.get("encoding", "")))
    return out


def render_yaml(name: str, sample: Sample, proposal: Proposal, glob: str, source_path: Path) -> str:
    """The declaration, one evidence comment per proposal."""
    n_files = len(sample.files)
    lines = [
        f"# Drafted by `cdp source draft` from {len(sample.rows):,} sampled records in "
        f"{n_files} file{'s' if n_files != 1 else ''} of {source_path.name}.",
        f"# Each proposal says why. Check what silver makes of it with `cdp source check {name}`,",
        '# edit what is wrong, and keep the rest. Every field: cdp README, section "Bronze".',
        _line(0, "name", name),
        _line(0, "description", _scalar(f"Drafted from {source_path.name}")),
        _line(0, "kind", proposal.kind.value, proposal.kind_evidence),
        _line(0, "format", sample.format.value, sample.notes.get("format", "")),
        _line(0, "path", _scalar(glob), sample.notes.get("compression", "")),
    ]
    options = _options(sample)
    if options:
        lines.append("options:")
        lines += [
            _line(2, k, _scalar(v) if v not in ("true", "false") else f'"{v}"', why)
            for k, v, why in options
        ]
    else:
        lines.append("options: {}")
    if proposal.primary_key:
        keys = "[" + ", ".join(_scalar(k) for k in proposal.primary_key) + "]"
        lines.append(_line(0, "primary_key", keys, proposal.primary_key_evidence))
    else:
        lines.append("# primary_key: no sampled column is unique and always present")
    if proposal.event_time:
        lines.append(
            _line(0, "event_time", _scalar(proposal.event_time), proposal.event_time_evidence)
        )
        formats = proposal.event_time_format
        if formats:
            # One pattern as a string; several (tried in order) as a list.
            value = json.dumps(formats[0] if len(formats) == 1 else formats)
            lines.append(_line(0, "event_time_format", value))
    else:
        lines.append("# event_time: no column of dates or times found")
    if proposal.delete_flag is not None:
        flag = proposal.delete_flag
        lines.append(_line(0, "delete_flag", _scalar(flag.value), flag.evidence))
    if proposal.identifiers:
        lines.append(
            _line(0, "identifiers", f"[{', '.join(proposal.identifiers)}]",
                  "mapped fields the canonical model does not list")
        )  # fmt: skip
    lines.append(f"{'mapping:'.ljust(_COMMENT_COLUMN - 1)} # canonical field: source column")
    for fld, choice in proposal.mapping.items():
        lines.append(_line(2, fld, _scalar(choice.value), choice.evidence))
    if proposal.defaults:
        lines.append("defaults:")
        for key, choice in proposal.defaults.items():
            value = choice.value if key == "date_formats" else _scalar(choice.value)
            lines.append(_line(2, key, value, choice.evidence))
    if proposal.unmapped:
        lines.append(
            "# Not mapped (kept in silver's `attributes`): " + ", ".join(proposal.unmapped)
        )
    return "\n".join(lines) + "\n"


def _validated(text: str, origin: Path, config: CdpConfig) -> SourceSpec:
    """The draft read back as the loader reads it; a refusal is this module's bug."""
    data = yaml.safe_load(text)
    data["origin"] = str(origin)
    try:
        spec = SourceSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"the drafted declaration does not load (a bug in cdp): {exc}") from None
    check_source(spec, config)
    return spec


def default_out(config: CdpConfig, name: str) -> Path:
    dirs = config.source_dirs_resolved()
    if not dirs:
        raise ConfigError(
            "no sources directory is configured (sources_dirs): run inside a site made by "
            "`cdp init`, or pass --out FILE"
        )
    return Path(dirs[0]) / f"{name}.yaml"


def draft_source(
    config: CdpConfig,
    path: str | Path,
    name: str,
    *,
    out: str | Path | None = None,
    force: bool = False,
    limit: int = DEFAULT_LIMIT,
) -> Draft:
    """Sample ``path``, propose a declaration named ``name`` and write it to ``out`` (by
    default the first sources directory of the configuration). Refuses to write over an
    existing file unless ``force``."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ConfigError(f"--name {name!r}: a source name is lower_snake_case (a-z, 0-9, _)")
    target = Path(out) if out else default_out(config, name)
    if target.exists() and not force:
        raise ConfigError(f"{target} exists: pass --force to write over it, or --out FILE")
    source_path = Path(path)
    sample = read_sample(source_path, limit=limit)
    if not sample.rows:
        raise ConfigError(f"{path}: no records found in the sampled files")
    proposal = propose(profile_sample(sample))
    glob, note = source_glob(source_path, sample, config.landing_uri, name)
    text = render_yaml(name, sample, proposal, glob, source_path)
    spec = _validated(text, target, config)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return Draft(text=text, out=target, proposal=proposal, sample=sample, spec=spec, note=note)


def summary_lines(drafted: Draft) -> list[str]:
    """What the draft proposes, for the console: names and counts, never a value."""
    p, s = drafted.proposal, drafted.sample
    lines = [
        f"sampled {len(s.rows):,} records from {len(s.files)} file(s): {s.format.value}"
        + (f", {s.compression}" if s.compression else "")
        + (f", {s.encoding}" if s.encoding else "")
        + (f", delimiter {s.delimiter!r}" if s.delimiter else "")
        + (f", row tag {s.row_tag!r}" if s.row_tag else ""),
        f"kind: {p.kind.value} ({p.kind_evidence})",
        f"primary_key: {', '.join(p.primary_key) or '(none found)'}",
        f"event_time: {p.event_time or '(none found)'}",
        f"mapped: {', '.join(p.mapping)}",
    ]
    if p.unmapped:
        lines.append(f"not mapped (kept in attributes): {', '.join(p.unmapped)}")
    if drafted.note:
        lines.append(f"next: {drafted.note}")
    return lines
