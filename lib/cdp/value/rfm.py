"""The per-customer summary BTYD models read, computed in Spark before ``as_of``.

The same definitions as PyMC-Marketing's ``rfm_summary`` (and ``lifetimes`` before it), with
whole days as the time unit and the day before ``as_of`` as the end of the observation
period:

* a *purchase day* is a UTC day with at least one purchase of the customer; a day's amount
  is the sum of its purchases;
* ``frequency``: purchase days after the first one (repeat purchases);
* ``recency``: days from the first to the last purchase day;
* ``T``: days from the first purchase day to the end of the observation period;
* ``monetary_value``: the mean amount of the repeat purchase days (0 without any).

What counts as a purchase, documented because real logs hold all of it:

* only facts strictly before ``as_of`` (midnight UTC): a future-dated order is not seen;
* rows with a null, zero or negative amount (refunds, cancellations, free orders) are not
  purchases: they neither start a customer nor add a purchase day;
* a customer with a single purchase day has frequency 0, recency 0 and monetary value 0; the
  models still score them (P(alive) 1 by definition of BG/NBD, spend from the population).
"""

from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

KEY = "customer_id"
RFM_COLUMNS = (KEY, "frequency", "recency", "T", "monetary_value")


def observation_end(as_of: date) -> date:
    """The last whole day before ``as_of``: the end of the observation period."""
    return as_of - timedelta(days=1)


def purchase_days(transactions: DataFrame, as_of: date) -> DataFrame:
    """customer_id, day, amount (the day's total) of every purchase day before ``as_of``.

    ``transactions``: customer_id, order_time (timestamp), amount: attributed orders
    (:func:`cdp.models.features.attributed_orders`, an order line counts with its order)."""
    cutoff = F.lit(as_of.isoformat()).cast("timestamp")
    amount = F.col("amount").cast("double")
    return (
        transactions.where(
            F.col(KEY).isNotNull()
            & F.col("order_time").isNotNull()
            & (F.col("order_time") < cutoff)
            & amount.isNotNull()
            & (amount > 0)
        )
        .groupBy(KEY, F.to_date("order_time").alias("day"))
        .agg(F.sum(amount).alias("amount"))
    )


def rfm_summary(transactions: DataFrame, as_of: date) -> DataFrame:
    """One row per customer with a purchase before ``as_of``: :data:`RFM_COLUMNS` (doubles)."""
    end = F.lit(observation_end(as_of).isoformat()).cast("date")
    days = purchase_days(transactions, as_of)
    per = days.groupBy(KEY).agg(
        F.min("day").alias("_first"),
        F.max("day").alias("_last"),
        F.count(F.lit(1)).alias("_days"),
        F.sum("amount").alias("_total"),
        # The first day's amount, to take it out of the mean (min_by needs Spark 3.3+).
        F.min_by("amount", "day").alias("_first_amount"),
    )
    frequency = F.col("_days") - 1
    return per.select(
        F.col(KEY).cast("string").alias(KEY),
        frequency.cast("double").alias("frequency"),
        F.datediff("_last", "_first").cast("double").alias("recency"),
        F.datediff(end, "_first").cast("double").alias("T"),
        F.when(frequency > 0, (F.col("_total") - F.col("_first_amount")) / frequency)
        .otherwise(F.lit(0.0))
        .cast("double")
        .alias("monetary_value"),
    )
