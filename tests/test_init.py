"""Sites and the demo profile: `cdp init`, a site's conf layered over the shipped defaults,
and declarations that a site's files replace instead of adding to the demo's. No Spark."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cdp import cli
from cdp.audiences.spec import load_audiences
from cdp.config import CdpConfig, ConfigError, demo_overlay, load_config
from cdp.site import init_site
from cdp.sources import load_sources

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "conf"
DEMO_SOURCES = {
    "consents",
    "crm_contacts",
    "ecommerce_orders",
    "email_engagement",
    "loyalty_members",
    "person_register",
    "pos_transactions",
    "support_tickets",
    "web_events",
}
SOURCE = "name: {name}\nkind: profile\nformat: csv\npath: {name}/*.csv\nmapping: {{email: e}}\n"


@pytest.fixture(autouse=True)
def _no_conf_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CDP_CONF_DIR", "CDP_ENV", "CDP_DATA_ROOT", "CDP_LANDING_ROOT"):
        monkeypatch.delenv(var, raising=False)


def _names(config: CdpConfig) -> set[str]:
    return {s.name for s in load_sources(config)}


def test_the_shipped_defaults_declare_nothing_and_the_demo_profile_declares_the_demo() -> None:
    plain = load_config(conf_dir=SHIPPED, environ={})
    assert plain.sources_dirs == [] and plain.activation.audiences_dirs == []
    assert _names(plain) == set() and load_audiences(plain) == []

    demo = load_config(conf_dir=SHIPPED, conf_files=[demo_overlay(SHIPPED)], environ={})
    assert _names(demo) == DEMO_SOURCES
    assert {a.name for a in load_audiences(demo)} == {
        "churn_risk_loyal",
        "engaged_non_buyers",
        "lapsed_high_intent",
    }
    # The test environment is the demo's (tests and notebooks run on generated data).
    assert _names(load_config(env="test", conf_dir=SHIPPED, environ={})) == DEMO_SOURCES


def test_a_conf_files_declarations_replace_the_lists_below_it(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "mine").mkdir(parents=True)
    (site / "mine" / "shop.yaml").write_text(SOURCE.format(name="shop"))
    (site / "auds").mkdir()
    (site / "auds" / "a.yaml").write_text(
        "name: a\npurpose: marketing\nchannel: email\nrule: frequency > 0\n"
    )
    user = site / "site.yaml"
    user.write_text("sources_dirs: [mine]\nactivation:\n  audiences_dirs: [auds]\n")
    # Over the demo's declarations (the test environment has them), relative to the file.
    config = load_config(env="test", conf_dir=SHIPPED, conf_files=[user], environ={})
    assert config.source_dirs_resolved() == [str((site / "mine").resolve())]
    assert _names(config) == {"shop"}
    assert [a.name for a in load_audiences(config)] == ["a"]
    # After the demo overlay, still only the site's.
    both = load_config(conf_dir=SHIPPED, conf_files=[demo_overlay(SHIPPED), user], environ={})
    assert _names(both) == {"shop"}


def test_init_scaffolds_a_site_layered_over_the_shipped_defaults(tmp_path: Path) -> None:
    site = tmp_path / "acme"
    report = init_site(site)
    conf = site / "conf"
    assert {"conf/base.yaml", "conf/local.yaml", "conf/cluster.yaml", "README.md"} <= set(
        report.written
    )
    for rule in (SHIPPED / "rules").iterdir():
        assert (conf / "rules" / rule.name).read_bytes() == rule.read_bytes()
    assert "Bronze" in (site / "README.md").read_text()

    config = load_config(conf_dir=conf, environ={})
    # Shipped base and environment first, then the site's: the site's files hold overrides.
    assert config.origins == [
        str(SHIPPED / "base.yaml"),
        str(SHIPPED / "local.yaml"),
        str(conf / "base.yaml"),
        str(conf / "local.yaml"),
    ]
    assert config.spark.app_name == "cdp" and config.models.labels.horizon_days == 90
    assert _names(config) == set() and load_audiences(config) == []
    assert config.source_dirs_resolved() == [str((conf / "sources").resolve())]
    # The site's copies of the rule files, and its data under the site directory.
    assert config.rule_files()["silver.rules_file"] == (conf / "rules" / "silver.yaml").resolve()
    assert config.data_root_uri == str(site.resolve() / "data")
    assert config.landing_uri == str(site.resolve() / "data" / "landing")

    cluster = load_config(env="cluster", conf_dir=conf, environ={})
    assert cluster.storage.backend.value == "auto" and cluster.spark.shuffle_partitions == 400
    assert cluster.origins[1] == str(SHIPPED / "cluster.yaml")

    # A site override wins over the shipped defaults; the site's own env file over its base.
    (conf / "local.yaml").write_text("spark:\n  driver_memory: 9g\ndata_root: ./elsewhere\n")
    tuned = load_config(conf_dir=conf, environ={})
    assert tuned.spark.driver_memory == "9g"
    assert tuned.data_root_uri == str(site.resolve() / "elsewhere")


def test_the_sites_examples_are_inert_until_renamed_and_valid_then(tmp_path: Path) -> None:
    site = tmp_path / "acme"
    init_site(site)
    conf = site / "conf"
    assert _names(load_config(conf_dir=conf, environ={})) == set()
    shutil.copy(conf / "sources" / "example.yaml.disabled", conf / "sources" / "crm.yaml")
    shutil.copy(conf / "audiences" / "example.yaml.disabled", conf / "audiences" / "x.yaml")
    config = load_config(conf_dir=conf, environ={})
    assert _names(config) == {"crm_contacts"}
    assert [a.name for a in load_audiences(config)] == ["engaged_non_buyers"]


def test_init_refuses_a_non_empty_conf_unless_forced(tmp_path: Path) -> None:
    site = tmp_path / "acme"
    (site / "conf").mkdir(parents=True)
    (site / "conf" / "keep.yaml").write_text("x: 1\n")
    (site / "README.md").write_text("my project\n")
    with pytest.raises(ConfigError, match="not empty.*--force"):
        init_site(site)
    assert not (site / "conf" / "base.yaml").exists()

    report = init_site(site, force=True)
    assert (site / "conf" / "base.yaml").exists() and (site / "conf" / "keep.yaml").exists()
    # An existing README is never written over.
    assert "README.md" not in report.written
    assert (site / "README.md").read_text() == "my project\n"


def test_extends_names_only_the_shipped_defaults(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "base.yaml").write_text("extends: elsewhere\n")
    with pytest.raises(ConfigError, match=r"'extends' \(set in .*base\.yaml\).*'shipped'"):
        load_config(conf_dir=conf, environ={})


def test_cdp_init_then_sources_inside_the_site_shows_no_demo_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    site = tmp_path / "acme"
    assert cli.main(["init", str(site)]) == 0
    assert "site ready" in capsys.readouterr().out

    monkeypatch.chdir(site)
    assert cli.main(["sources"]) == 0
    out = capsys.readouterr().out
    assert "no sources declared" in out and "cdp init" in out
    assert not any(name in out for name in DEMO_SOURCES)
    assert f"conf: {SHIPPED / 'base.yaml'}" in out and str(site / "conf" / "base.yaml") in out

    assert cli.main(["stages"]) == 0
    assert cli.main(["init", str(site)]) == 2  # the conf is no longer empty
    assert "--force" in capsys.readouterr().err

    # With the demo overlay, the demo's sources are listed.
    assert cli.main(["sources", "--conf", str(SHIPPED / "demo.yaml")]) == 0
    out = capsys.readouterr().out
    assert all(f"source {name} " in out for name in DEMO_SOURCES)


def test_cdp_demo_applies_the_demo_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[CdpConfig] = []

    def fake_demo(config: CdpConfig, persons: int, seed: int) -> int:
        seen.append(config)
        return 0

    monkeypatch.setattr(cli, "demo", fake_demo)
    monkeypatch.chdir(tmp_path)  # no ./conf: the shipped conf directory
    assert cli.main(["demo", "--data-root", str(tmp_path / "data")]) == 0
    (config,) = seen
    assert config.env == "local" and _names(config) == DEMO_SOURCES
    assert len(load_audiences(config)) == 3


def test_the_built_in_defaults_are_the_shipped_base_yaml(tmp_path: Path) -> None:
    """Where cdp is installed without its conf/ (a wheel on a cluster), `extends: shipped`
    falls back to the settings' defaults: they must say what the shipped base.yaml says."""
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "base.yaml").write_text("env: local\n")
    skip = {"origins", "conf_dir", "sources_dirs", "activation"}
    built_in = load_config(conf_dir=conf, environ={})
    shipped = load_config(conf_dir=SHIPPED, environ={})
    assert built_in.model_dump(mode="json", exclude=skip) == shipped.model_dump(
        mode="json", exclude=skip
    )
    assert built_in.activation.export == shipped.activation.export
