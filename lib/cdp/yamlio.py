"""The one YAML reader of configuration and rule files.

Every file a run reads (``conf/*.yaml``, sources, rules, audiences, nicknames) goes through
:func:`read_yaml`, so a missing file or bad YAML always fails the same way: a
:class:`~cdp.errors.ConfigError` naming the config key that pointed at the file and the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cdp.errors import ConfigError


def read_yaml(path: str | Path, what: str, *, mapping: bool = True) -> Any:
    """The parsed contents of ``path`` (an empty file reads as ``{}``).

    ``what`` names the setting that pointed at the file (``identity.rules_file``); it starts
    the message when the file is missing. ``mapping``: the top level must be a mapping.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what}: no file {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if mapping and not isinstance(data, dict):
        raise ConfigError(
            f"{p}: the top level must be a mapping of keys, got {type(data).__name__}"
        )
    return data


def parse_scalar(text: str) -> Any:
    """A command-line or environment value read as a YAML scalar ('true', '4', 'null')."""
    try:
        return yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text
