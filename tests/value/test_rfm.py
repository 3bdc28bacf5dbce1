"""The RFM summary BTYD models read (cdp.value.rfm): hand-computed on a tiny log, and the same
as PyMC-Marketing's own ``rfm_summary`` on the purchases it keeps."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession

from cdp.value.rfm import RFM_COLUMNS, observation_end, rfm_summary

AS_OF = date(2024, 3, 1)  # observation period ends 2024-02-29 (a leap day)
TX_DDL = "customer_id string, order_time timestamp, amount double"
ROWS = [
    # A: two orders on 01-01 make one purchase day worth 15, then 01-11 (20) and 02-10 (40).
    ("A", datetime(2024, 1, 1, 10), 10.0),
    ("A", datetime(2024, 1, 1, 15), 5.0),
    ("A", datetime(2024, 1, 11, 9), 20.0),
    ("A", datetime(2024, 2, 10, 18), 40.0),
    ("A", datetime(2024, 2, 15, 12), -20.0),  # a refund: not a purchase
    ("A", datetime(2024, 3, 1, 0), 7.0),  # at the cutoff: not before as_of
    ("A", datetime(2024, 3, 5, 12), 100.0),  # future-dated
    # B: one purchase on the last day of the period.
    ("B", datetime(2024, 2, 29, 23), 12.0),
    # C: a refund and a free order only: no purchase, no row.
    ("C", datetime(2024, 1, 3, 12), -5.0),
    ("C", datetime(2024, 1, 4, 12), 0.0),
    # D: an order without an amount, then one purchase.
    ("D", datetime(2024, 1, 5, 12), None),
    ("D", datetime(2024, 1, 20, 12), 8.0),
]


def test_rfm_summary_hand_computed(spark: SparkSession) -> None:
    got = rfm_summary(spark.createDataFrame(ROWS, TX_DDL), AS_OF)
    expected = spark.createDataFrame(
        [
            # frequency: repeat purchase days; recency 01-01 -> 02-10; T 01-01 -> 02-29;
            # monetary: mean of the repeat days (20 + 40) / 2.
            ("A", 2.0, 40.0, 59.0, 30.0),
            ("B", 0.0, 0.0, 0.0, 0.0),
            ("D", 0.0, 0.0, 40.0, 0.0),
        ],
        "customer_id string, frequency double, recency double, T double, monetary_value double",
    )
    assert tuple(got.columns) == RFM_COLUMNS
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_rfm_summary_matches_the_library(spark: SparkSession) -> None:
    pd = pytest.importorskip("pandas")
    clv_utils = pytest.importorskip("pymc_marketing.clv.utils")
    kept = [r for r in ROWS if r[2] is not None and r[2] > 0 and r[1] < datetime(2024, 3, 1)]
    library = clv_utils.rfm_summary(
        pd.DataFrame(kept, columns=["customer_id", "order_time", "amount"]),
        "customer_id",
        "order_time",
        monetary_value_col="amount",
        observation_period_end=observation_end(AS_OF).isoformat(),
        time_unit="D",
    ).set_index("customer_id")
    ours = rfm_summary(spark.createDataFrame(ROWS, TX_DDL), AS_OF).toPandas()
    ours = ours.set_index("customer_id").sort_index()
    library = library.loc[ours.index, list(RFM_COLUMNS[1:])]
    pd.testing.assert_frame_equal(ours, library, check_dtype=False)
