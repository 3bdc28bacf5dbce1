"""Which configuration files are read, in what order, and what their relative paths mean.

:mod:`cdp.config` validates the merged result; this module only finds and layers the files:

* a conf directory: ``base.yaml`` then ``<env>.yaml``;
* a site's conf directory (``cdp init``; its base.yaml says ``extends: shipped``): the shipped
  ``base.yaml`` and ``<env>.yaml`` first, then the site's, so the site holds only overrides.
  The shipped files' rule files and declaration folders stay the shipped ones (made absolute),
  and a relative ``data_root`` / ``landing_root`` is taken from the site directory;
* a ``--conf`` file names its ``sources_dirs`` / ``activation.audiences_dirs`` relative to
  itself, and they replace the lists below it (the demo profile, ``conf/demo.yaml``, is one).

Kept apart from the settings models so that each of the two stays readable on its own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cdp.errors import ConfigError
from cdp.yamlio import read_yaml

__all__ = [
    "CONF_RELATIVE_KEYS",
    "DECLARATION_KEYS",
    "DEMO_OVERLAY",
    "EXTENDS_SHIPPED",
    "SITE_RELATIVE_KEYS",
    "default_conf_dir",
    "demo_overlay",
    "merge_conf_dirs",
    "merge_layer",
    "rebase",
    "shipped_conf_dir",
]


def _is_uri(path: str) -> bool:
    return "://" in path


# Settings that name a file or a directory relative to the conf directory.
CONF_RELATIVE_KEYS = (
    "sources_dirs",
    "activation.audiences_dirs",
    "silver.rules_file",
    "identity.rules_file",
    "identity.matching_file",
    "identity.decisions_file",
    "profile.rules_file",
)
# The declaration directories, which a ``--conf`` file names relative to itself.
DECLARATION_KEYS = ("sources_dirs", "activation.audiences_dirs")
# Locations that a site's files (and the shipped ones under them) name relative to the site
# directory (the conf directory's parent), so that a site's data stays with it wherever
# ``cdp`` is started.
SITE_RELATIVE_KEYS = ("data_root", "landing_root")
# The one value of a site base.yaml's ``extends`` key.
EXTENDS_SHIPPED = "shipped"
# The demo profile: the shipped sources and audiences (``cdp demo``, ``--conf conf/demo.yaml``).
DEMO_OVERLAY = "demo.yaml"


def shipped_conf_dir() -> Path | None:
    """The ``conf/`` beside the source tree (the shipped defaults and the demo profile);
    None where the package is installed without it."""
    repo_conf = Path(__file__).resolve().parents[2] / "conf"
    return repo_conf if (repo_conf / "base.yaml").exists() else None


def default_conf_dir() -> Path | None:
    """``$CDP_CONF_DIR``, else ``./conf``, else the ``conf/`` beside the source tree."""
    env_dir = os.environ.get("CDP_CONF_DIR")
    if env_dir:
        return Path(env_dir)
    cwd_conf = Path.cwd() / "conf"
    if (cwd_conf / "base.yaml").exists():
        return cwd_conf
    return shipped_conf_dir()


def demo_overlay(conf_dir: str | Path | None = None) -> Path:
    """The demo profile's overlay: ``demo.yaml`` of the conf directory, else the shipped one."""
    directory = Path(conf_dir) if conf_dir else default_conf_dir()
    for candidate in (directory, shipped_conf_dir()):
        if candidate is not None and (candidate / DEMO_OVERLAY).is_file():
            return candidate / DEMO_OVERLAY
    raise ConfigError(
        f"no {DEMO_OVERLAY} (the demo profile) in {directory} or in the shipped conf directory"
    )


def rebase(layer: dict[str, Any], keys: Sequence[str], base: Path) -> None:
    """Make the relative paths under ``keys`` of ``layer`` absolute from ``base`` (in place):
    a layer read from one directory keeps meaning its own files when layered under another."""

    def one(value: Any) -> Any:
        if not isinstance(value, str) or _is_uri(value) or Path(value).is_absolute():
            return value
        return str((base / value).resolve())

    for dotted in keys:
        *parents, leaf = dotted.split(".")
        node: Any = layer
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict) or leaf not in node:
            continue
        value = node[leaf]
        node[leaf] = [one(v) for v in value] if isinstance(value, list) else one(value)


def merge_layer(
    base: dict[str, Any],
    layer: Mapping[str, Any],
    origin: str,
    provenance: dict[str, str],
    prefix: str = "",
) -> None:
    for key, value in layer.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(base.get(key), dict) and key != "conf":
            merge_layer(base[key], value, origin, provenance, prefix=f"{dotted}.")
        elif isinstance(value, Mapping) and key != "conf":
            base[key] = {}
            merge_layer(base[key], value, origin, provenance, prefix=f"{dotted}.")
        else:
            base[key] = value
            provenance[dotted] = origin


def merge_conf_dirs(
    directory: Path,
    env_name: str | None,
    env: str | None,
    environ: Mapping[str, str],
    merged: dict[str, Any],
    provenance: dict[str, str],
    origins: list[str],
) -> str:
    """Merge ``base.yaml`` and ``<env>.yaml`` of ``directory`` (under the shipped ones first
    when its base.yaml says ``extends: shipped``); returns the environment chosen."""
    base_path = directory / "base.yaml"
    site_base = read_yaml(base_path, "conf") if base_path.exists() else {}
    extends = site_base.pop("extends", None)
    # (directory, its base.yaml, is it the site layered over the shipped conf)
    layers: list[tuple[Path, dict[str, Any] | None, bool]] = []
    if extends is not None:
        if extends != EXTENDS_SHIPPED:
            raise ConfigError(
                f"invalid value for 'extends' (set in {base_path}): "
                f"expected {EXTENDS_SHIPPED!r}, got {extends!r}"
            )
        shipped = shipped_conf_dir()
        # Installed without the shipped conf/, the model's defaults are the shipped ones.
        if shipped is not None and shipped.resolve() != directory.resolve():
            layers.append((shipped, read_yaml(shipped / "base.yaml", "conf"), False))
    layers.append((directory, site_base if base_path.exists() else None, extends is not None))

    under = layers[0][1] if len(layers) > 1 else None
    name = env_name or site_base.get("env") or (under or {}).get("env") or "local"
    found_env_file = False
    for where, base, is_site in layers:
        files = [(where / "base.yaml", base)] if base is not None else []
        env_path = where / f"{name}.yaml"
        if env_path.exists():
            files.append((env_path, read_yaml(env_path, "env")))
            found_env_file = True
        for path, layer in files:
            if len(layers) > 1 and not is_site:
                # The shipped files name their rule files and folders from their own directory.
                rebase(layer, CONF_RELATIVE_KEYS, where)
            if extends is not None:
                rebase(layer, SITE_RELATIVE_KEYS, directory.resolve().parent)
            merge_layer(merged, layer, str(path), provenance)
            origins.append(str(path))
    if not found_env_file and (env is not None or "CDP_ENV" in environ):
        raise ConfigError(f"env: no file {directory / f'{name}.yaml'} for environment {name!r}")
    # The environment is the one chosen, whatever base.yaml says by default.
    merged["env"] = name
    return name
