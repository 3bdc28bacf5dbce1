"""Helpers shared by the standardizer tests: run a transform on inline rows and compare."""

from __future__ import annotations

import datetime as dt
from typing import Any

from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession

from cdp.silver import standardize as S

UTC = dt.timezone.utc
OUT_DDL = "id int, v string, v_raw string, v_status string"


def run(spark: SparkSession, transform: S.Transform, rows: list[tuple], ddl: str) -> DataFrame:
    return spark.createDataFrame(rows, ddl).transform(transform)


def check(actual: DataFrame, expected: DataFrame) -> None:
    assert_df_equality(actual, expected, ignore_row_order=False, ignore_nullable=True)


def expect(spark: SparkSession, rows: list[tuple[Any, ...]], ddl: str = OUT_DDL) -> DataFrame:
    return spark.createDataFrame(rows, ddl)


def raw_of(rows: list[tuple]) -> dict[int, Any]:
    return {r[0]: r[1] for r in rows}
