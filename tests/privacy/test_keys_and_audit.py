"""Keyed pseudonyms: the key's origin and refusal, and Spark's HMAC equal to Python's."""

from __future__ import annotations

import hashlib
import hmac
import stat
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from cdp.errors import ConfigError
from cdp.privacy.columns import hmac_sha256
from cdp.privacy.keys import derive_key, load_key, pseudonym
from cdp.privacy.settings import PrivacyConfig

KEY = "k" * 40


def test_key_from_environment_then_file_and_refused_outside_local(tmp_path: Path) -> None:
    cfg = PrivacyConfig()
    env = {"CDP_PRIVACY_KEY": KEY}
    assert load_key(cfg, env="prod", data_root=str(tmp_path), environ=env) == KEY.encode()
    key_file = tmp_path / "key"
    key_file.write_bytes(b"f" * 32 + b"\n")
    from_file = PrivacyConfig(key_file=str(key_file))
    assert load_key(from_file, env="prod", data_root=str(tmp_path), environ={}) == b"f" * 32
    with pytest.raises(ConfigError, match="no pseudonymisation key for environment 'prod'"):
        load_key(cfg, env="prod", data_root=str(tmp_path), environ={})
    with pytest.raises(ConfigError, match="shorter than 32 bytes"):
        load_key(cfg, env="prod", data_root=str(tmp_path), environ={"CDP_PRIVACY_KEY": "short"})


def test_local_key_is_generated_once_owner_only_and_stable(tmp_path: Path) -> None:
    first = load_key(PrivacyConfig(), env="local", data_root=str(tmp_path), environ={})
    again = load_key(PrivacyConfig(), env="local", data_root=str(tmp_path), environ={})
    other = load_key(PrivacyConfig(), env="local", data_root=str(tmp_path / "b"), environ={})
    assert first == again and len(first) >= 32 and first != other
    mode = (tmp_path / "_secrets" / "privacy.key").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_spark_hmac_equals_python_hmac(spark: SparkSession) -> None:
    values = ["ann@example.com", "+447700900123", "", "é ü ß", None]
    df = spark.createDataFrame([(v,) for v in values], "v string")
    for key in (KEY.encode(), derive_key(KEY.encode(), "export:s3://b"), b"x" * 100):
        got = [r.h for r in df.select(hmac_sha256(df.v, key).alias("h")).collect()]
        want = [
            None if v is None else hmac.new(key, v.encode(), hashlib.sha256).hexdigest()
            for v in values
        ]
        assert got == want
        assert got[0] == pseudonym(key, values[0])
    # A keyed digest is not the plain SHA-256 an outsider could compute from the address.
    assert pseudonym(KEY.encode(), values[0]) != hashlib.sha256(values[0].encode()).hexdigest()


def test_audit_rows_name_actor_tables_and_versions(
    spark: SparkSession, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from cdp.config import load_config
    from cdp.privacy.audit import AUDIT_TABLE, record_audit
    from cdp.storage import open_store

    monkeypatch.setenv("CDP_ACTOR", "scheduler@acme")
    store = open_store(spark, load_config(env="test", overrides={"data_root": str(data_root)}))
    record_audit(
        store,
        action="export",
        run_id="r1",
        tables={"gold/audience_membership": 3},
        rows=12,
        destination="s3://bucket/loyal",
    )
    (row,) = store.read(AUDIT_TABLE).collect()
    assert (row.actor, row.action, row.run_id, row.rows) == ("scheduler@acme", "export", "r1", 12)
    assert json.loads(row.tables) == {"gold/audience_membership": 3}
    assert row.destination == "s3://bucket/loyal" and json.loads(row.detail) == {}
