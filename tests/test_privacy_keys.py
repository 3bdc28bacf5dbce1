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
