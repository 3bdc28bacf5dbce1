"""Identity evaluation inputs (``cdp.identity.evaluate``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from cdp.identity.evaluate import load_truth


def test_a_missing_truth_file_says_where_the_generator_puts_it(
    spark: SparkSession, tmp_path: Path
) -> None:
    missing = tmp_path / "data" / "landing" / "_ground_truth" / "identity"
    with pytest.raises(FileNotFoundError) as err:
        load_truth(spark, missing)
    assert str(missing) in str(err.value)
    assert "--truth FILE" in str(err.value) and "--set landing_root=DIR" in str(err.value)


def test_a_truth_csv_is_read_as_source_record_and_entity(
    spark: SparkSession, tmp_path: Path
) -> None:
    truth = tmp_path / "truth.csv"
    truth.write_text("source,source_record_id,entity_id\npeople,1,a\npeople,2,a\n")
    got = sorted(tuple(r) for r in load_truth(spark, truth).collect())
    assert got == [("people", "1", "a"), ("people", "2", "a")]
