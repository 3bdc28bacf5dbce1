"""Orders and purchases: what a row of ``silver/transactions`` counts for.

A transaction source may deliver one row per order (a web shop's orders, a till's receipts)
or one row per order *line* (an invoice over several rows, as retail exports such as the
UCI "Online Retail" log are written). Counting rows would make every line an order: a
20-line invoice would be 20 purchases on one afternoon, its average "order" a twentieth of
the basket and the days between its "orders" zero. So every reader that counts orders first
rolls rows up into orders:

* an **order** is (customer, source, ``order_id``), else the record itself
  (``source_record_id``) where the source gives no order id; its time is its earliest row's,
  its amount the sum of its rows' amounts (null when no row has one);
* a **purchase** is an order whose amount is positive or unknown (a log without amounts still
  records purchases). Refunds and cancellations (their own invoice with a negative amount,
  as in the same retail logs) and free orders are orders that are not purchases: they count
  in net spend, never as a purchase, a last purchase or a repeat.

The customer-lifetime-value summary (:mod:`cdp.value.rfm`) is stricter about amounts (its
spend model needs them): it takes the purchases with a known positive amount.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

KEY = "customer_id"
ORDER = "_order"
IS_PURCHASE = "is_purchase"


def order_key(rows: DataFrame) -> Column:
    """A row's order within its source: ``order_id``, else its own ``source_record_id``."""
    own = F.col("source_record_id").cast("string")
    if "order_id" not in rows.columns:
        return own
    return F.coalesce(F.col("order_id").cast("string"), own)


def is_purchase(amount: Column) -> Column:
    """True for an order whose (net) amount is positive or unknown."""
    return amount.isNull() | (amount > 0)


def roll_up_orders(
    rows: DataFrame,
    *,
    time_column: str,
    amount: Column,
    extra: dict[str, Column] | None = None,
) -> DataFrame:
    """One row per order of attributed transaction ``rows`` (``customer_id``, ``source``,
    ``source_record_id``, ``order_id`` when present, ``time_column``).

    Output: ``customer_id``, ``time_column`` (the order's earliest), ``amount`` (double, the
    sum of ``amount`` over the order's rows; null when every row's is null),
    :data:`IS_PURCHASE`, and the ``extra`` aggregates by name (``F.min("channel")``...).
    Rows of one order that reached different customers stay apart (each is that customer's).
    """
    aggregates = [
        F.min(time_column).alias(time_column),
        F.sum(amount.cast("double")).alias("amount"),
        *[column.alias(name) for name, column in (extra or {}).items()],
    ]
    orders = rows.groupBy(KEY, "source", order_key(rows).alias(ORDER)).agg(*aggregates)
    return orders.select(
        KEY,
        time_column,
        "amount",
        is_purchase(F.col("amount")).alias(IS_PURCHASE),
        *(extra or {}),
    )
