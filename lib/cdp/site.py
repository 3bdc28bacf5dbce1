"""``cdp init DIR``: scaffold a site, the configuration of one company's deployment.

The shipped ``conf/`` holds the defaults and the demo profile (``conf/demo.yaml``: the sources
``cdp generate`` writes and the audiences built on them). A site must not inherit the demo's
declarations, and it should not copy the shipped defaults either (they would go stale with the
next release). So a site's ``conf/base.yaml`` says ``extends: shipped``: the shipped
``base.yaml`` and ``<env>.yaml`` are read first, the site's files hold only what it changes
(see :mod:`cdp.conf_layers`). The rule files are the exception: they are copied, since a site
tunes them, and its base.yaml names its copies.

Layout written under ``DIR``::

    conf/base.yaml          extends: shipped; sources/, audiences/ and rules/ of the site
    conf/local.yaml         commented overrides for a workstation
    conf/cluster.yaml       commented overrides for a cluster (object-store data_root ...)
    conf/sources/           one YAML per source (example.yaml.disabled is never loaded)
    conf/audiences/         one YAML per audience (example.yaml.disabled likewise)
    conf/rules/             copies of the shipped rule files
    README.md               the next steps
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from cdp.conf_layers import EXTENDS_SHIPPED, shipped_conf_dir
from cdp.errors import ConfigError

__all__ = ["SiteReport", "init_site"]

# Not *.yaml: the loaders read only *.yaml / *.yml, so the examples stay inert until renamed.
DISABLED_SUFFIX = ".disabled"

BASE_YAML = f"""\
# This site's configuration: only what differs from cdp's shipped defaults.
# `extends: {EXTENDS_SHIPPED}` reads cdp's conf/base.yaml and conf/<env>.yaml first, then this
# file and this folder's <env>.yaml (local.yaml, cluster.yaml ...); --conf FILE, CDP_*
# environment variables and command-line flags come on top, as always.
extends: {EXTENDS_SHIPPED}

# Where the tables go. A relative path is taken from the site directory (the folder that
# holds conf/), wherever `cdp` is started: by default the tables go to ./data there.
# data_root: ./data
# landing_root: ./landing     # where sources deliver their files (default: <data_root>/landing)

# Declarations, relative to this conf folder: one YAML file per source / per audience.
sources_dirs: [sources]
activation:
  audiences_dirs: [audiences]

# The rule files are this site's copies (made by `cdp init`): edit them here.
silver:
  rules_file: rules/silver.yaml
identity:
  rules_file: rules/identity.yaml
  matching_file: rules/matching.yaml
  decisions_file: rules/identity_decisions.csv   # steward decisions (absent until written)
profile:
  rules_file: rules/profile.yaml

# Any other key of cdp's conf/base.yaml may be overridden here, for example:
# spark:
#   driver_memory: 8g
# models:
#   labels: {{horizon_days: 60}}
"""

LOCAL_YAML = """\
# Overrides for `--env local` (the default): one workstation, embedded Spark and Delta.
# Everything is commented: the site's base.yaml and cdp's shipped local.yaml apply.
# spark:
#   master: "local[4]"
#   driver_memory: 8g
# storage:
#   backend: delta-rs
"""

CLUSTER_YAML = """\
# Overrides for `--env cluster` (spark-submit, Airflow, Databricks). cdp's shipped
# cluster.yaml names placeholder buckets: set this site's locations here (or CDP_DATA_ROOT /
# CDP_LANDING_ROOT in the job's environment).
# data_root: s3a://your-bucket/cdp
# landing_root: s3a://your-landing-bucket/exports
# spark:
#   shuffle_partitions: 400
# mlflow:
#   tracking_uri: http://mlflow:5000
"""

SOURCE_EXAMPLE = """\
# An example source declaration. Files ending in .disabled are not loaded: copy this file to
# <name>.yaml (one file per source) and edit it. Every field: README, section "Bronze".
name: crm_contacts
description: Nightly CRM contact export
kind: profile                 # profile | event | transaction | consent | other
format: csv                   # csv | json | ndjson | parquet | orc | xml | text
path: crm_contacts/*/*.csv    # glob, relative to the landing root
options: {header: "true", delimiter: ",", encoding: UTF-8}
primary_key: [contact_id]
event_time: updated_at
mapping:                      # canonical field: source column or Spark SQL expression
  source_record_id: contact_id
  crm_id: contact_id
  email: email
  phone: phone
  first_name: first_name
  last_name: last_name
  updated_at: updated_at
defaults:
  phone_region: GB            # national phone numbers are read as this country's
"""

AUDIENCE_EXAMPLE = """\
# An example audience. Files ending in .disabled are not loaded: copy this file to
# <name>.yaml and edit it. Every field: README, section "Audiences and export".
name: engaged_non_buyers
description: Opened an e-mail in the last 30 days, never purchased, e-mail consent
purpose: marketing
channel: email
rule: coalesce(frequency, 0) = 0 AND email_opens_30d > 0   # Spark SQL over profile columns
"""

SOURCES_README = """\
One YAML file per source (`<name>.yaml`); see `example.yaml.disabled` and the main README,
section "Bronze". `cdp sources` lists what is declared.
"""

README = """\
# A cdp site

Made by `cdp init`. Run `cdp` from this directory (or set `CDP_CONF_DIR={conf}`): it reads
`conf/`, layered over cdp's shipped defaults, and keeps its tables under `data/`.

Next steps:

1. Put each source's files in a folder of the landing zone (`data/landing/<source>/`, or set
   `landing_root` in `conf/base.yaml`).
2. Declare each source: `cdp source draft data/landing/<source> --name <source>` proposes
   `conf/sources/<source>.yaml` from the files (kind, keys, mapping, formats, each with its
   evidence); `cdp source check <source>` shows what silver makes of a few rows. Or write
   it by hand from `conf/sources/example.yaml.disabled` (every field is in the cdp README,
   section "Bronze"). `cdp sources` lists what is declared.
3. `cdp run ingest silver`, then `cdp run all` for the whole pipeline; `cdp tables` and
   `cdp report` show what was written.
4. Tune the rules in `conf/rules/` (data quality, identity, matching, profile) and declare
   audiences in `conf/audiences/` (see `example.yaml.disabled`).
5. For a cluster, set the locations in `conf/cluster.yaml` and run with `--env cluster`.

The demo's sources are not part of a site; to try cdp on generated data instead, run
`cdp demo` elsewhere (it uses cdp's `conf/demo.yaml`).
"""


@dataclass
class SiteReport:
    """What ``init_site`` wrote (paths relative to the site directory)."""

    root: Path
    written: list[str] = field(default_factory=list)


def init_site(target: str | Path, *, force: bool = False) -> SiteReport:
    """Write a site's skeleton under ``target``.

    Refuses (``ConfigError``) when ``target/conf`` exists and holds anything, unless ``force``:
    then the skeleton's files are written over, and files it does not write are left alone.
    """
    root = Path(target).resolve()
    conf = root / "conf"
    if conf.is_dir() and any(conf.iterdir()) and not force:
        raise ConfigError(
            f"{conf} is not empty: cdp init writes a new site (use --force to write the "
            "skeleton over it; files it does not write are kept)"
        )
    shipped = shipped_conf_dir()
    if shipped is None or not (shipped / "rules").is_dir():
        raise ConfigError(
            "cdp init copies the shipped rule files, but cdp's conf/ is not installed here "
            "(run cdp from a checkout of its repository)"
        )
    report = SiteReport(root=root)

    def write(relative: str, text: str) -> None:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        report.written.append(relative)

    write("conf/base.yaml", BASE_YAML)
    write("conf/local.yaml", LOCAL_YAML)
    write("conf/cluster.yaml", CLUSTER_YAML)
    write(f"conf/sources/example.yaml{DISABLED_SUFFIX}", SOURCE_EXAMPLE)
    write("conf/sources/README.md", SOURCES_README)
    write(f"conf/audiences/example.yaml{DISABLED_SUFFIX}", AUDIENCE_EXAMPLE)
    for rule in sorted(p for p in (shipped / "rules").iterdir() if p.is_file()):
        (conf / "rules").mkdir(parents=True, exist_ok=True)
        shutil.copy2(rule, conf / "rules" / rule.name)
        report.written.append(f"conf/rules/{rule.name}")
    # A folder that already has a README (an existing repository) keeps it, even with force.
    if not (root / "README.md").exists():
        write("README.md", README.format(conf=conf))
    return report
