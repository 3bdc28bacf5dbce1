"""Error texts and URIs without personal data or credentials (issue 23, item 5)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from pyspark.sql import SparkSession

from cdp.errors import ConfigError
from cdp.privacy.redact import EMAIL, LITERAL, PHONE, error_text, message_text, redact, safe_uri


def _ansi_cast_error(spark: SparkSession) -> Exception:
    """The error Spark raises for ``cast('ann@example.com' as int)`` under ANSI mode."""
    before = spark.conf.get("spark.sql.ansi.enabled")
    spark.conf.set("spark.sql.ansi.enabled", "true")
    try:
        with pytest.raises(Exception) as caught:
            spark.sql("select cast('ann@example.com' as int)").collect()
    finally:
        spark.conf.set("spark.sql.ansi.enabled", before or "true")
    assert isinstance(caught.value, Exception)
    return caught.value


def test_spark_ansi_cast_error_loses_the_value_keeps_the_diagnosis(spark: SparkSession) -> None:
    exc = _ansi_cast_error(spark)
    assert "ann@example.com" in str(exc)  # what Spark itself says
    text = error_text(exc)
    assert "ann@example.com" not in text and "example.com" not in text
    # What a person needs to act on stays: the error class, the types, the SQL shape.
    assert "CAST_INVALID_INPUT" in text and '"STRING"' in text and '"INT"' in text
    assert f"The value {LITERAL} of the type" in text
    assert redact(text) == text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("contact ann.smith+x@mail.example.co.uk now", f"contact {EMAIL} now"),
        ("call +44 20 7946 0958 today", f"call {PHONE} today"),
        ("call (212) 555-0134, 02079460958 or 00442079460958", f"call {PHONE}, {PHONE} or {PHONE}"),
        ("no such key 'Ann Smith'", f"no such key {LITERAL}"),
        ('value "O\'Brien" rejected', f"value {LITERAL} rejected"),
        ("The value 12345678901 of the type", f"The value {LITERAL} of the type"),
    ],
)
def test_redact_replaces_values(raw: str, expected: str) -> None:
    assert redact(raw) == expected


def test_redact_keeps_what_is_not_a_value() -> None:
    kept = (
        'File "/work/lib/cdp/runner.py", line 123, in run_stage\n'
        'cannot cast "STRING" to "INT"; can\'t parse; run at 2026-12-04 10:11:12.123 '
        "wrote 1000000 rows in 12.3456789 s from 127.0.0.1, spark 4.1.1"
    )
    assert redact(kept) == kept


def test_config_errors_keep_their_literals_but_not_contacts() -> None:
    # A config error quotes the key and value the engineer must fix; a contact is still masked.
    err = ConfigError("rules.yaml: blocking[0] ['city'] would generate 15 pairs (ann@example.com)")
    assert (
        message_text(err) == f"rules.yaml: blocking[0] ['city'] would generate 15 pairs ({EMAIL})"
    )
    assert message_text(ValueError("bad 'ann'")) == f"bad {LITERAL}"
    assert error_text(err).startswith("ConfigError: rules.yaml: blocking[0] ['city']")


def test_failed_stage_stores_and_logs_the_redacted_error(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cdp import runner
    from cdp.config import load_config
    from cdp.runner import StageFailed, run_stage
    from cdp.storage import open_store

    def boom(ctx: object) -> None:
        raise _ansi_cast_error(spark)

    monkeypatch.setattr(runner, "get_stage", lambda name: SimpleNamespace(load=lambda: boom))
    config = load_config(env="test", overrides={"data_root": str(tmp_path / "data")})
    with pytest.raises(StageFailed) as failed:
        run_stage("ingest", spark=spark, config=config)
    assert "ann@example.com" not in str(failed.value)
    row = open_store(spark, config).read("ops/run_log").collect()[0]
    assert row.status == "failed" and "CAST_INVALID_INPUT" in row.error
    assert "ann@example.com" not in row.error
    log_text = Path(failed.value.log_path).read_text(encoding="utf-8")
    assert "CAST_INVALID_INPUT" in log_text and "ann@example.com" not in log_text


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("https://alice:s3cret@mlflow.example.com:5000/api", "https://mlflow.example.com:5000/api"),
        ("https://mlflow.example.com/?token=abc123#x", "https://mlflow.example.com/"),
        ("http://token@host/path?user=a&pass=b", "http://host/path"),
        ("s3://bucket/exports/a@b/file.csv", "s3://bucket/exports/a@b/file.csv"),
        ("sqlite:////data/mlruns/mlflow.db", "sqlite:////data/mlruns/mlflow.db"),
        ("databricks", "databricks"),
        ("/data/exports/audience.csv", "/data/exports/audience.csv"),
    ],
)
def test_safe_uri_drops_credentials_keeps_the_target(uri: str, shown: str) -> None:
    assert safe_uri(uri) == shown
