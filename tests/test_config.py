"""Configuration: layering order, environment overrides, clear errors naming key and file."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdp.config import ConfigError, StorageBackend, load_config, parse_overrides


@pytest.fixture()
def conf_dir(tmp_path: Path) -> Path:
    d = tmp_path / "conf"
    d.mkdir()
    (d / "base.yaml").write_text(
        "env: local\ndata_root: /base\nspark:\n  master: 'local[*]'\n  shuffle_partitions: 8\n"
        "storage:\n  backend: auto\n  commit_retries: 5\n"
    )
    (d / "local.yaml").write_text("data_root: /local\nspark:\n  shuffle_partitions: 4\n")
    (d / "cluster.yaml").write_text("env: cluster\ndata_root: /cluster\n")
    return d


def test_layers_apply_in_order(conf_dir: Path, tmp_path: Path) -> None:
    user = tmp_path / "user.yaml"
    user.write_text("data_root: /user\nstorage:\n  commit_retries: 9\n")
    cfg = load_config(conf_dir=conf_dir, environ={})
    assert (cfg.env, cfg.data_root, cfg.spark.shuffle_partitions) == ("local", "/local", 4)
    assert cfg.spark.master == "local[*]"  # untouched keys come from base

    cfg = load_config(conf_dir=conf_dir, conf_files=[user], environ={})
    assert cfg.data_root == "/user" and cfg.storage.commit_retries == 9
    assert cfg.spark.shuffle_partitions == 4

    env = {"CDP_DATA_ROOT": "/from-env", "CDP__STORAGE__COMMIT_RETRIES": "3"}
    cfg = load_config(conf_dir=conf_dir, conf_files=[user], environ=env)
    assert cfg.data_root == "/from-env" and cfg.storage.commit_retries == 3

    cfg = load_config(
        conf_dir=conf_dir,
        conf_files=[user],
        environ=env,
        overrides=parse_overrides(["data_root=/cli", "storage.backend=delta-rs"]),
    )
    assert cfg.data_root == "/cli" and cfg.storage.backend is StorageBackend.DELTA_RS
    assert cfg.origins == [str(conf_dir / "base.yaml"), str(conf_dir / "local.yaml"), str(user)]


def test_environment_file_is_chosen_by_env(conf_dir: Path) -> None:
    assert load_config(env="cluster", conf_dir=conf_dir, environ={}).data_root == "/cluster"
    assert load_config(conf_dir=conf_dir, environ={"CDP_ENV": "cluster"}).data_root == "/cluster"
    with pytest.raises(ConfigError, match="no file .*staging.yaml"):
        load_config(env="staging", conf_dir=conf_dir, environ={})


def test_mlflow_uri_from_environment(conf_dir: Path) -> None:
    cfg = load_config(conf_dir=conf_dir, environ={})
    assert cfg.mlflow_tracking_uri == "sqlite:////local/mlflow/mlflow.db"
    cfg = load_config(conf_dir=conf_dir, environ={"MLFLOW_TRACKING_URI": "http://mlflow:5000"})
    assert cfg.mlflow_tracking_uri == "http://mlflow:5000"


def test_bad_value_names_key_and_file(conf_dir: Path, tmp_path: Path) -> None:
    user = tmp_path / "mine.yaml"
    user.write_text("storage:\n  backend: postgres\n")
    with pytest.raises(ConfigError) as err:
        load_config(conf_dir=conf_dir, conf_files=[user], environ={})
    assert "storage.backend" in str(err.value) and str(user) in str(err.value)

    (conf_dir / "local.yaml").write_text("spark:\n  shuffle_partitions: -1\n")
    with pytest.raises(ConfigError, match=r"spark\.shuffle_partitions.*local\.yaml"):
        load_config(conf_dir=conf_dir, environ={})


def test_unknown_key_names_key_and_file(conf_dir: Path, tmp_path: Path) -> None:
    user = tmp_path / "typo.yaml"
    user.write_text("storage:\n  bakend: delta-rs\n")
    with pytest.raises(
        ConfigError, match=r"unknown configuration key 'storage\.bakend' \(set in .*typo\.yaml\)"
    ):
        load_config(conf_dir=conf_dir, conf_files=[user], environ={})


def test_bad_environment_value_names_the_variable(conf_dir: Path) -> None:
    with pytest.raises(ConfigError, match="CDP_STORAGE_BACKEND"):
        load_config(conf_dir=conf_dir, environ={"CDP_STORAGE_BACKEND": "nope"})
    with pytest.raises(ConfigError, match="command line"):
        load_config(conf_dir=conf_dir, environ={}, overrides={"storage.commit_retries": "many"})


def test_missing_user_file_and_bad_yaml(conf_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(conf_dir=conf_dir, conf_files=[tmp_path / "absent.yaml"], environ={})
    broken = tmp_path / "broken.yaml"
    broken.write_text("spark: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_config(conf_dir=conf_dir, conf_files=[broken], environ={})


def test_repository_conf_files_are_valid() -> None:
    root = Path(__file__).resolve().parents[1] / "conf"
    for env in ("local", "cluster", "test"):
        cfg = load_config(env=env, conf_dir=root, environ={})
        assert cfg.env == env
    assert cfg.config_hash() == load_config(env="test", conf_dir=root, environ={}).config_hash()


def test_rule_file_contents_are_part_of_the_config_hash(conf_dir: Path) -> None:
    rules = conf_dir / "rules"
    rules.mkdir()
    (rules / "identity.yaml").write_text(
        "rules: []\nname_conflicts:\n  first_name:\n    nicknames_file: nicknames.yaml\n"
    )
    (rules / "nicknames.yaml").write_text("robert: [bob]\n")
    cfg = load_config(conf_dir=conf_dir, environ={})
    first = cfg.config_hash()
    files = cfg.file_hashes()
    assert files["identity.rules_file"] != "absent"
    assert files["identity.rules_file[0]"] != "absent"  # the nicknames file it names
    assert files["profile.rules_file"] == "absent"

    (rules / "nicknames.yaml").write_text("robert: [bob, rob]\n")
    second = cfg.config_hash()
    (rules / "identity.yaml").write_text("rules: []\n")
    third = cfg.config_hash()
    assert len({first, second, third}) == 3
    # The same contents give the same hash.
    assert load_config(conf_dir=conf_dir, environ={}).config_hash() == third


def test_rule_files_resolve_from_the_conf_directory_through_one_resolver(conf_dir: Path) -> None:
    cfg = load_config(
        conf_dir=conf_dir,
        environ={},
        overrides={"silver.rules_file": "mine/silver.yaml", "profile.rules_file": "/abs/p.yaml"},
    )
    files = cfg.rule_files()
    assert files["silver.rules_file"] == (conf_dir / "mine" / "silver.yaml").resolve()
    assert files["profile.rules_file"] == Path("/abs/p.yaml")
    assert cfg.source_dirs_resolved() == [str((conf_dir / "sources").resolve())]
    off = load_config(conf_dir=conf_dir, environ={}, overrides={"silver.rules_file": None})
    assert "silver.rules_file" not in off.rule_files()


def test_git_commit_comes_from_the_environment_through_the_config(conf_dir: Path) -> None:
    assert load_config(conf_dir=conf_dir, environ={}).git_commit is None
    cfg = load_config(conf_dir=conf_dir, environ={"GIT_COMMIT": "abc", "CDP_GIT_COMMIT": "def"})
    assert cfg.git_commit == "def"
    # The code's commit is not configuration: it leaves the hash alone.
    assert cfg.config_hash() == load_config(conf_dir=conf_dir, environ={}).config_hash()


def test_source_defaults_are_typed_and_unknown_keys_name_file_and_key(tmp_path: Path) -> None:
    from cdp.sources import load_sources

    conf = tmp_path / "conf"
    (conf / "sources").mkdir(parents=True)
    (conf / "base.yaml").write_text("env: local\n")
    source = conf / "sources" / "crm.yaml"
    body = "name: crm\nkind: profile\nformat: csv\npath: crm/*.csv\nmapping: {email: e}\n"
    source.write_text(body + "defaults:\n  phone_region: US\n  decimal_comma: true\n")
    (spec,) = load_sources(load_config(conf_dir=conf, environ={}))
    assert (spec.defaults.phone_region, spec.defaults.decimal_comma) == ("US", True)
    assert spec.defaults.timezone == "UTC"  # what is not said keeps its default

    source.write_text(body + "defaults:\n  phone_regoin: US\n")
    with pytest.raises(ConfigError, match=r"crm.yaml: unknown field 'defaults.phone_regoin'"):
        load_sources(load_config(conf_dir=conf, environ={}))
    source.write_text(body + "defaults:\n  phone_region: britain\n")
    with pytest.raises(ConfigError, match=r"crm.yaml: field 'defaults.phone_region'"):
        load_sources(load_config(conf_dir=conf, environ={}))


def test_a_configured_rule_file_that_is_missing_fails_naming_the_key(conf_dir: Path) -> None:
    from cdp.silver.rules import load_rules

    cfg = load_config(conf_dir=conf_dir, environ={})
    with pytest.raises(ConfigError, match=r"silver.rules_file: no file .*rules/silver.yaml"):
        load_rules(cfg.rule_files()["silver.rules_file"], tables={"events"})
