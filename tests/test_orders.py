"""Rows of silver/transactions rolled up into orders (``cdp.orders.roll_up_orders``)."""

from __future__ import annotations

from datetime import datetime

from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from cdp.orders import roll_up_orders

ROWS = "customer_id string, source string, source_record_id string, order_id string, "
ROWS += "order_time timestamp, amount double, channel string"
T1, T2, T3 = datetime(2024, 3, 1, 9, 0), datetime(2024, 3, 1, 9, 5), datetime(2024, 4, 2, 17, 0)


def test_lines_roll_up_into_orders_and_refunds_are_orders_but_no_purchase(
    spark: SparkSession,
) -> None:
    rows = spark.createDataFrame(
        [
            # An invoice over three lines (the second scanned a few minutes later).
            ("c1", "pos", "l1", "536365", T1, 2.5, "store"),
            ("c1", "pos", "l2", "536365", T2, 3.25, "store"),
            ("c1", "pos", "l3", "536365", T1, 4.25, "store"),
            # Its cancellation: an invoice of its own with a negative amount.
            ("c1", "pos", "l4", "C536379", T3, -3.25, "store"),
            # The same order id in another source is another order.
            ("c1", "web", "w1", "536365", T3, 9.0, "web"),
            # No order id: the record is the order; no amount: a purchase all the same.
            ("c1", "web", "w2", None, T3, None, "web"),
            # A free order is no purchase; one invoice that reached two customers stays apart.
            ("c2", "pos", "l5", "536400", T1, 0.0, "store"),
            ("c2", "pos", "l6", "536401", T1, 1.0, "store"),
            ("c3", "pos", "l7", "536401", T2, 2.0, "store"),
        ],
        ROWS,
    )
    orders = roll_up_orders(
        rows, time_column="order_time", amount=F.col("amount"), extra={"lines": F.count("*")}
    )
    expected = spark.createDataFrame(
        [
            ("c1", T1, 10.0, True, 3),
            ("c1", T3, -3.25, False, 1),
            ("c1", T3, 9.0, True, 1),
            ("c1", T3, None, True, 1),
            ("c2", T1, 0.0, False, 1),
            ("c2", T1, 1.0, True, 1),
            ("c3", T2, 2.0, True, 1),
        ],
        "customer_id string, order_time timestamp, amount double, is_purchase boolean, lines long",
    )
    # Amounts that sum exactly in binary, so the comparison can be exact.
    assert_df_equality(orders, expected, ignore_row_order=True, ignore_nullable=True)


def test_a_source_without_order_ids_has_one_order_per_record(spark: SparkSession) -> None:
    rows = spark.createDataFrame(
        [("c1", "till", "r1", T1, 5.0), ("c1", "till", "r2", T1, 5.0)],
        "customer_id string, source string, source_record_id string, order_time timestamp, "
        "amount double",
    )
    orders = roll_up_orders(rows, time_column="order_time", amount=F.col("amount"))
    expected = spark.createDataFrame(
        [("c1", T1, 5.0, True), ("c1", T1, 5.0, True)],
        "customer_id string, order_time timestamp, amount double, is_purchase boolean",
    )
    assert_df_equality(orders, expected, ignore_row_order=True, ignore_nullable=True)
